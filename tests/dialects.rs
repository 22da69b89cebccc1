//! The importer in the real API's dialect (`api-dialect = cloud`), the real
//! component in the real host against the in-process mock: it puts its
//! schema-and-mapping document in place before the first execution, sends
//! real-form chunks, reports progress and closes with `completed: true` —
//! and the objects that arrive are the ones the seed dialect delivers.

mod common;

use assets_platform::assets::model::AssetObject;
use assets_platform::assets::Outcome;
use assets_platform::clock::VirtualClock;
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::{self, RunStatus, TriggerOutcome};
use common::World;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A world whose import source follows the real API's rule: no execution
/// before a mapping is set.
fn cloud_world() -> World {
    let world = World::new();
    world.assets.require_mapping(&world.source_id).unwrap();
    world
}

fn run(world: &World, source: SyntheticSource, config: &[(&str, &str)]) -> TriggerOutcome {
    let app = world.app(source, config);
    let mut event = trigger::manual_event(&world.workspace, &world.source_id);
    event.scheduled = true;
    trigger::deliver(&app, &world.assets, &event)
}

fn source() -> SyntheticSource {
    SyntheticSource {
        objects: 1300,
        page_size: 200,
        object_types: vec!["server".into(), "laptop".into()],
        attributes: 8,
        ..Default::default()
    }
}

/// The objects an execution stored, by (object type, external id).
fn stored(world: &World, outcome: &TriggerOutcome) -> HashMap<(String, String), AssetObject> {
    let state = world.assets.state();
    state
        .execution_by_id(outcome.execution_id.as_deref().unwrap())
        .unwrap()
        .objects
        .clone()
}

fn api(world: &World, method: &str, rest: &str) -> (u16, Value) {
    let path = format!(
        "/jsm/assets/workspace/{}/v1/importsource/{}/{rest}",
        world.workspace, world.source_id
    );
    let answer = world.assets.handle(method, &path, b"");
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
}

#[test]
fn the_cloud_dialect_imports_exactly_what_the_seed_dialect_imports() {
    let seed_world = World::new();
    let seed = run(&seed_world, source(), &[("chunk-max-objects", "100")]);
    assert_eq!(seed.status, RunStatus::Completed, "{seed:?}");

    let world = cloud_world();
    assert_eq!(api(&world, "GET", "configstatus").1["status"], "MISSING_MAPPING");
    let cloud = run(
        &world,
        source(),
        &[("chunk-max-objects", "100"), ("api-dialect", "cloud")],
    );
    assert_eq!(cloud.status, RunStatus::Completed, "{cloud:?}");
    assert_eq!((cloud.objects, cloud.chunks), (seed.objects, seed.chunks));

    // The mapping the importer derived from its source's first page.
    let (status, mapping) = api(&world, "GET", "schema-and-mapping");
    assert_eq!(status, 200, "{mapping}");
    let selectors: Vec<&str> = mapping["mapping"]["objectTypeMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["selector"].as_str().unwrap())
        .collect();
    assert_eq!(selectors, ["laptop", "server"]);

    // The same objects, labels and attribute values; the cloud ones also
    // hold the mapping's own External ID and Name attributes.
    let (seed_objects, cloud_objects) = (stored(&seed_world, &seed), stored(&world, &cloud));
    assert_eq!(seed_objects.len(), 1300);
    assert_eq!(cloud_objects.len(), 1300);
    for (key, expected) in &seed_objects {
        let got = cloud_objects.get(key).unwrap_or_else(|| panic!("{key:?} missing"));
        assert_eq!(got.label, expected.label);
        let mut attributes: BTreeMap<String, Vec<String>> = got.attributes.clone();
        assert_eq!(
            attributes.remove("External ID"),
            Some(vec![expected.external_id.clone()])
        );
        assert_eq!(attributes.remove("Name"), Some(vec![expected.label.clone()]));
        assert_eq!(attributes, expected.attributes, "{key:?}");
    }

    // Progress was reported as it went: the last report counts every chunk.
    let history = world.assets.history(&world.source_id).unwrap();
    let progress = history[0].progress.as_ref().expect("progress was reported").value();
    assert_eq!(progress["chunksSent"], cloud.chunks);
    assert_eq!(progress["objectsSent"], 1300);
    assert_eq!(history[0].status, Outcome::Completed);

    // A second run finds its mapping in place and does not set it again.
    let before = world
        .assets
        .state()
        .source_by_id(&world.source_id)
        .unwrap()
        .mapping_resource_id
        .clone();
    let again = run(&world, source(), &[("api-dialect", "cloud")]);
    assert_eq!(again.status, RunStatus::Completed, "{again:?}");
    let after = world
        .assets
        .state()
        .source_by_id(&world.source_id)
        .unwrap()
        .mapping_resource_id
        .clone();
    assert_eq!(before, after, "the mapping was not set again");
}

#[test]
fn a_cloud_run_shows_processing_then_done_under_a_virtual_clock() {
    let start = chrono::Utc::now();
    let clock = Arc::new(VirtualClock::new(start));
    let assets = Arc::new(assets_platform::assets::AssetsService::new(clock.clone()));
    let workspace = assets.create_workspace();
    let source_id = assets
        .create_import_source(&workspace, assets_platform::assets::SourceType::External, None)
        .unwrap();
    assets.require_mapping(&source_id).unwrap();
    let world = World {
        assets,
        workspace,
        source_id,
    };
    let outcome = run(&world, source(), &[("api-dialect", "cloud")]);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    let id = outcome.execution_id.unwrap();
    // 1,300 objects at 10,000 a second: 130 ms of processing.
    let (_, status) = api(&world, "GET", &format!("executions/{id}/status"));
    assert_eq!(status["status"], "PROCESSING", "{status}");
    assert_eq!(api(&world, "GET", "configstatus").1["status"], "RUNNING");
    clock.advance(chrono::Duration::milliseconds(129));
    assert_eq!(
        api(&world, "GET", &format!("executions/{id}/status")).1["status"],
        "PROCESSING"
    );
    clock.advance(chrono::Duration::milliseconds(1));
    assert_eq!(
        api(&world, "GET", &format!("executions/{id}/status")).1["status"],
        "DONE"
    );
    assert_eq!(api(&world, "GET", "configstatus").1["status"], "IDLE");
}

#[test]
fn a_given_mapping_that_drops_an_attribute_fails_the_run_naming_it() {
    let world = cloud_world();
    // The operator's mapping locates only the hostname of servers.
    let mapping = serde_json::json!({
        "schema": {"objectSchema": {"name": "CMDB", "description": "", "objectTypes": [{
            "name": "server", "description": "",
            "attributes": [
                {"name": "Key", "description": "", "type": "text", "label": false},
                {"name": "Name", "description": "", "type": "text", "label": true},
                {"name": "Host", "description": "", "type": "text", "label": false},
            ]}]}},
        "mapping": {"objectTypeMappings": [{
            "objectTypeName": "server", "selector": "servers", "description": "",
            "attributesMapping": [
                {"attributeName": "Key", "attributeLocators": ["externalId"], "externalIdPart": true},
                {"attributeName": "Name", "attributeLocators": ["label"]},
                {"attributeName": "Host", "attributeLocators": ["attributes.hostname"]},
            ]}]},
    })
    .to_string();
    let servers = |attributes| SyntheticSource {
        objects: 10,
        page_size: 10,
        object_types: vec!["server".into()],
        attributes,
        ..Default::default()
    };
    let ok = run(
        &world,
        servers(1),
        &[("api-dialect", "cloud"), ("cloud-mapping", &mapping)],
    );
    assert_eq!(ok.status, RunStatus::Completed, "{ok:?}");
    let objects = stored(&world, &ok);
    let first = objects.values().next().unwrap();
    assert!(first.attributes.contains_key("Host"), "{first:?}");
    let (_, stored_mapping) = api(&world, "GET", "schema-and-mapping");
    assert_eq!(stored_mapping["schema"]["objectSchema"]["name"], "CMDB");

    // Two attributes per object: the second is not mapped, and would be lost.
    let failed = run(
        &world,
        servers(2),
        &[("api-dialect", "cloud"), ("cloud-mapping", &mapping)],
    );
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    let history = world.assets.history(&world.source_id).unwrap();
    let reason = history.last().unwrap().failure_reason.clone().unwrap();
    assert!(
        reason.contains("\"ipAddress\"") && reason.contains("not in the import source's mapping"),
        "{reason}"
    );
}

#[test]
fn a_seed_app_on_a_source_that_requires_a_mapping_is_told_why_it_cannot_start() {
    let world = cloud_world();
    let outcome = run(&world, source(), &[]);
    assert_eq!(outcome.status, RunStatus::NotStarted, "{outcome:?}");
    let reason = outcome.failure_reason.unwrap();
    assert!(reason.contains("MISSING_MAPPING") && reason.contains("PUT"), "{reason}");
}
