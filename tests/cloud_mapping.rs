//! The cloud dialect's mapping against the in-process mock of the real API
//! (native lifecycle, no wasm): a key first seen after the first page is
//! left out of that run and named, then mapped by the next run; a mapping
//! the importer did not write is used as it is and never replaced.

use assets_platform::assets::{AssetsService, Outcome as HistoryOutcome, SourceType};
use assets_platform::clock::SystemClock;
use assets_scheduled_import::api::{ApiResponse, AssetsApi, CallError, Method};
use assets_scheduled_import::lifecycle::{run_import, KeyValue, Outcome, RunError, Trigger};
use assets_scheduled_import::model::{AssetObject, DataSource, ObjectBatch, Page, SourceError};
use assets_scheduled_import::retry::Timer;
use assets_scheduled_import::settings::{ChunkLimits, Dialect, Settings};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The mock, reached as the guest reaches the API: paths under the workspace.
struct World {
    assets: Arc<AssetsService>,
    workspace: String,
    source_id: String,
}

impl World {
    /// One external import source that, as in the real API, starts no
    /// execution before it has a mapping.
    fn new() -> World {
        let assets = Arc::new(AssetsService::new(Arc::new(SystemClock)));
        let workspace = assets.create_workspace();
        let source_id = assets
            .create_import_source(&workspace, SourceType::External, Some("importer".into()))
            .unwrap();
        assets.require_mapping(&source_id).unwrap();
        World {
            assets,
            workspace,
            source_id,
        }
    }

    fn call(&self, method: &str, rest: &str, body: &str) -> (u16, String) {
        let path = format!("/jsm/assets/workspace/{}/v1/{rest}", self.workspace);
        let answer = self.assets.handle(method, &path, body.as_bytes());
        (answer.status, answer.body)
    }

    fn mapping(&self) -> Value {
        let (status, body) = self.call(
            "GET",
            &format!("importsource/{}/schema-and-mapping", self.source_id),
            "",
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn put_mapping(&self, document: &Value) {
        let (status, body) = self.call(
            "PUT",
            &format!("importsource/{}/mapping", self.source_id),
            &document.to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// What execution `id` stored: (object type, external id) → attributes.
    fn stored(&self, id: &str) -> HashMap<(String, String), Vec<String>> {
        let state = self.assets.state();
        let execution = state.execution_by_id(id).unwrap();
        execution
            .objects
            .iter()
            .map(|(k, o)| (k.clone(), o.attributes.keys().cloned().collect()))
            .collect()
    }

    /// The progress note of the history line of execution `id`.
    fn note(&self, id: &str) -> Option<String> {
        let history = self.assets.history(&self.source_id).unwrap();
        let entry = history.iter().find(|e| e.execution_id.as_deref() == Some(id)).unwrap();
        assert_eq!(entry.status, HistoryOutcome::Completed);
        let progress = entry.progress.as_ref()?.value();
        progress["note"].as_str().map(str::to_owned)
    }
}

struct Api<'w>(&'w World);

impl AssetsApi for Api<'_> {
    fn call(&mut self, method: Method, path: &str, body: Option<&str>) -> Result<ApiResponse, CallError> {
        let method = match method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        };
        let (status, body) = self.0.call(method, path, body.unwrap_or_default());
        Ok(ApiResponse {
            status,
            headers: vec![],
            body,
        })
    }
}

/// Pages behind cursors `p2`, `p3`, ….
struct Pages(Vec<Vec<(&'static str, AssetObject)>>);

impl DataSource for Pages {
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let index = cursor.map_or(0, |c| c[1..].parse::<usize>().unwrap() - 1);
        let mut batches: Vec<ObjectBatch> = Vec::new();
        for (object_type, object) in &self.0[index] {
            match batches.iter_mut().find(|b| b.object_type_id == *object_type) {
                Some(batch) => batch.objects.push(object.clone()),
                None => batches.push(ObjectBatch {
                    object_type_id: object_type.to_string(),
                    objects: vec![object.clone()],
                }),
            }
        }
        Ok(Page {
            batches,
            next_cursor: (index + 1 < self.0.len()).then(|| format!("p{}", index + 2)),
        })
    }
}

fn device(id: &str, keys: &[&str]) -> (&'static str, AssetObject) {
    (
        "device",
        AssetObject {
            external_id: id.into(),
            label: format!("Device {id}"),
            attributes: keys
                .iter()
                .map(|k| (k.to_string(), vec![format!("{k} of {id}")]))
                .collect(),
        },
    )
}

/// A clock whose invocation runs out of time after `pages_left` page
/// checks; never out of time without it.
#[derive(Default)]
struct Clock {
    pages_left: Option<u32>,
}

impl Timer for Clock {
    fn now_ms(&mut self) -> u64 {
        0
    }
    fn sleep_ms(&mut self, _ms: u64) {}
    fn time_left_ms(&mut self) -> u64 {
        match &mut self.pages_left {
            Some(0) => 0,
            Some(n) => {
                *n -= 1;
                u64::MAX
            }
            None => u64::MAX,
        }
    }
}

/// App storage, kept across runs.
#[derive(Default)]
struct Storage(HashMap<String, String>);

impl KeyValue for Storage {
    fn get(&mut self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.0.insert(key.into(), value.into());
        Ok(())
    }
}

fn cloud(mapping: Option<Value>) -> Settings {
    Settings {
        chunk: ChunkLimits {
            max_objects: 2,
            max_bytes: 1 << 20,
        },
        dialect: Dialect::Cloud,
        mapping,
        ..Settings::default()
    }
}

fn run(
    world: &World,
    storage: &mut Storage,
    clock: &mut Clock,
    pages: &Pages,
    occurrence: &str,
    settings: Settings,
) -> Result<Outcome, RunError> {
    let trigger = Trigger {
        import_source_id: &world.source_id,
        scheduled: true,
        occurrence_id: occurrence,
    };
    let mut source = Pages(pages.0.clone());
    run_import(trigger, Ok(settings), &mut Api(world), &mut source, clock, storage)
}

fn completed(outcome: Result<Outcome, RunError>) -> String {
    match outcome {
        Ok(Outcome::Completed(report)) => report.execution_id,
        other => panic!("expected a completed run, got {other:?}"),
    }
}

fn located(mapping: &Value, object_type: &str) -> Vec<String> {
    let m = mapping["mapping"]["objectTypeMappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["objectTypeName"] == object_type)
        .unwrap_or_else(|| panic!("no mapping for {object_type}: {mapping}"));
    m["attributesMapping"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["attributeLocators"].as_array().unwrap().iter())
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// A late attribute (`rack`, first on page 3): the run completes without
/// its values and says so; the next run maps it and imports them.
#[test]
fn a_late_attribute_is_named_by_the_run_and_mapped_by_the_next() {
    let world = World::new();
    let pages = Pages(vec![
        vec![device("d1", &["serial"]), device("d2", &["serial"])],
        vec![device("d3", &["serial"]), device("d4", &["serial"])],
        vec![device("d5", &["serial", "rack"]), device("d6", &["serial"])],
    ]);
    let mut storage = Storage::default();
    let first = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    let stored = world.stored(&first);
    assert_eq!(stored.len(), 6, "every device is stored");
    assert_eq!(
        stored[&("device".into(), "d5".into())],
        ["External ID", "Name", "serial"]
    );
    let note = world.note(&first).expect("the run names what it left out");
    assert!(note.contains(r#"attribute "rack" of object type "device""#), "{note}");
    assert!(note.contains("next run"), "{note}");

    let second = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-2",
        cloud(None),
    ));
    assert!(located(&world.mapping(), "device").contains(&"attributes.rack".to_string()));
    assert_eq!(
        world.stored(&second)[&("device".into(), "d5".into())],
        ["External ID", "Name", "rack", "serial"]
    );
    assert_eq!(world.note(&second), None, "nothing left out");
}

/// A late object type (`switch`, first on page 3), with the run paused
/// after that page: the delivery that finishes it still names the type,
/// and the next run maps it and imports its objects.
#[test]
fn a_late_object_type_is_named_across_deliveries_and_mapped_by_the_next_run() {
    let world = World::new();
    let switch = AssetObject {
        external_id: "sw1".into(),
        label: "Core switch".into(),
        attributes: vec![("ports".into(), vec!["48".into()])],
    };
    let pages = Pages(vec![
        vec![device("d1", &["serial"])],
        vec![device("d2", &["serial"])],
        vec![device("d3", &["serial"]), ("switch", switch)],
        vec![device("d4", &["serial"])],
    ]);
    let mut storage = Storage::default();
    let paused = run(
        &world,
        &mut storage,
        &mut Clock { pages_left: Some(2) },
        &pages,
        "occ-1",
        cloud(None),
    );
    assert!(matches!(paused, Ok(Outcome::Paused(_))), "{paused:?}");
    // Why the run cannot map the switch itself: the mapping changes only
    // between imports.
    let (status, body) = world.call(
        "PUT",
        &format!("importsource/{}/mapping", world.source_id),
        &operators_mapping().to_string(),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("IN_PROGRESS"), "{body}");
    let first = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    assert_eq!(world.stored(&first).len(), 4, "the four devices");
    let note = world.note(&first).expect("the run names what it left out");
    assert!(note.contains(r#"object type "switch""#), "{note}");

    let second = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-2",
        cloud(None),
    ));
    assert_eq!(
        located(&world.mapping(), "switch"),
        ["externalId", "label", "attributes.ports"]
    );
    let stored = world.stored(&second);
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stored[&("switch".into(), "sw1".into())],
        ["External ID", "Name", "ports"]
    );
    assert_eq!(world.note(&second), None);
}

/// A mapping an operator put on the import source, for devices with a
/// serial number, under selector `hw`.
fn operators_mapping() -> Value {
    let attribute = |name: &str, label: bool| json!({"name": name, "description": "", "type": "text", "label": label});
    let locate = |name: &str, locator: &str, id: bool| json!({"attributeName": name, "attributeLocators": [locator], "externalIdPart": id});
    json!({
        "schema": {"objectSchema": {"name": "CMDB", "description": "Hardware", "objectTypes": [
            {"name": "device", "description": "", "attributes": [
                attribute("Key", false), attribute("Title", true), attribute("Serial", false),
            ]},
        ]}},
        "mapping": {"objectTypeMappings": [
            {"objectTypeName": "device", "selector": "hw", "description": "Devices", "attributesMapping": [
                locate("Key", "externalId", true), locate("Title", "label", false), locate("Serial", "attributes.serial", false),
            ]},
        ]},
    })
}

#[test]
fn an_operators_mapping_is_used_as_it_is_and_never_replaced() {
    let world = World::new();
    world.put_mapping(&operators_mapping());
    let pages = Pages(vec![vec![device("d1", &["serial"])], vec![device("d2", &["serial"])]]);
    let mut storage = Storage::default();
    let id = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    assert_eq!(world.mapping(), operators_mapping());
    assert_eq!(
        world.stored(&id)[&("device".into(), "d2".into())],
        ["Key", "Serial", "Title"]
    );
}

#[test]
fn a_key_an_operators_mapping_lacks_fails_the_run_by_name_and_leaves_the_mapping_alone() {
    let world = World::new();
    world.put_mapping(&operators_mapping());
    let pages = Pages(vec![
        vec![device("d1", &["serial"])],
        vec![device("d2", &["serial"])],
        vec![device("d3", &["serial", "rack"])],
    ]);
    let mut storage = Storage::default();
    for occurrence in ["occ-1", "occ-2"] {
        let outcome = run(
            &world,
            &mut storage,
            &mut Clock::default(),
            &pages,
            occurrence,
            cloud(None),
        );
        let Err(RunError::ImportFailed(failed)) = outcome else {
            panic!("expected a failed run, got {outcome:?}")
        };
        assert!(failed.reported);
        assert!(
            failed.reason.contains(r#"attribute "rack" of object type "device""#),
            "{}",
            failed.reason
        );
        assert!(failed.reason.contains("not written by this app"), "{}", failed.reason);
        assert_eq!(world.mapping(), operators_mapping(), "after {occurrence}");
    }
}

/// An operator who read the importer's derived mapping, changed its
/// selector and put it back owns it now, though it keeps the name.
#[test]
fn a_derived_mapping_an_operator_changed_is_theirs() {
    let world = World::new();
    let pages = Pages(vec![vec![device("d1", &["serial"])], vec![device("d2", &["serial"])]]);
    let mut storage = Storage::default();
    completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    let mut changed = world.mapping();
    changed["mapping"]["objectTypeMappings"][0]["selector"] = json!("devices");
    world.put_mapping(&changed);

    let pages = Pages(vec![vec![device("d1", &["serial"]), ("switch", device("sw1", &[]).1)]]);
    let outcome = run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-2",
        cloud(None),
    );
    assert_eq!(world.mapping(), changed, "never replaced");
    let Err(RunError::ImportFailed(failed)) = outcome else {
        panic!("expected a failed run, got {outcome:?}")
    };
    assert!(failed.reason.contains(r#"object type "switch""#), "{}", failed.reason);
}

/// The operator's mapping under another selector: what a `cloud-mapping`
/// setting gives.
fn settings_mapping() -> Value {
    let mut document = operators_mapping();
    document["mapping"]["objectTypeMappings"][0]["selector"] = json!("from-setting");
    document
}

#[test]
fn a_mapping_setting_is_put_in_place_when_a_run_starts_over_the_document_there() {
    let world = World::new();
    world.put_mapping(&operators_mapping());
    let pages = Pages(vec![vec![device("d1", &["serial"])]]);
    completed(run(
        &world,
        &mut Storage::default(),
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(Some(settings_mapping())),
    ));
    assert_eq!(world.mapping(), settings_mapping());
}

#[test]
fn a_run_going_on_keeps_the_mapping_it_started_with_when_the_setting_changes() {
    let world = World::new();
    let pages = Pages(vec![vec![device("d1", &["serial"])], vec![device("d2", &["serial"])]]);
    let mut storage = Storage::default();
    let paused = run(
        &world,
        &mut storage,
        &mut Clock { pages_left: Some(0) },
        &pages,
        "occ-1",
        cloud(Some(operators_mapping())),
    );
    assert!(matches!(paused, Ok(Outcome::Paused(_))), "{paused:?}");
    // The setting changed between deliveries; the API refuses a new mapping
    // while the execution ingests, and the chunks sent so far follow the old one.
    let id = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(Some(settings_mapping())),
    ));
    assert_eq!(world.mapping(), operators_mapping());
    assert_eq!(world.stored(&id).len(), 2, "both devices");
}

/// What app storage remembers for the import source: the keys runs saw
/// that their mapping did not place (`None`: never written).
fn remembered(world: &World, storage: &Storage) -> Option<Value> {
    let key = assets_scheduled_import::cloud::unmapped_key(&world.source_id);
    storage.0.get(&key).map(|v| serde_json::from_str(v).unwrap())
}

fn remember(world: &World, storage: &mut Storage, keys: &Value) {
    let key = assets_scheduled_import::cloud::unmapped_key(&world.source_id);
    storage.0.insert(key, keys.to_string());
}

/// A run that learns `rack` late remembers it; the next run, fresh, maps
/// it and forgets it.
#[test]
fn a_fresh_run_whose_mapping_places_every_remembered_key_forgets_them() {
    let world = World::new();
    let pages = Pages(vec![
        vec![device("d1", &["serial"])],
        vec![device("d2", &["serial", "rack"])],
    ]);
    let mut storage = Storage::default();
    completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    assert_eq!(remembered(&world, &storage), Some(json!({"device": ["rack"]})));

    completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-2",
        cloud(None),
    ));
    assert!(located(&world.mapping(), "device").contains(&"attributes.rack".to_string()));
    assert_eq!(remembered(&world, &storage), Some(json!({})), "forgotten once mapped");
}

/// Keys remembered that the run's mapping places already (an earlier
/// run's forgetting failed): a run going on (its second delivery) leaves
/// them alone; only a fresh run forgets.
#[test]
fn a_run_going_on_does_not_forget_remembered_keys() {
    let world = World::new();
    let pages = Pages(vec![vec![device("d1", &["serial"])], vec![device("d2", &["serial"])]]);
    let mut storage = Storage::default();
    let paused = run(
        &world,
        &mut storage,
        &mut Clock { pages_left: Some(0) },
        &pages,
        "occ-1",
        cloud(None),
    );
    assert!(matches!(paused, Ok(Outcome::Paused(_))), "{paused:?}");
    assert!(located(&world.mapping(), "device").contains(&"attributes.serial".to_string()));
    remember(&world, &mut storage, &json!({"device": ["serial"]}));

    let id = completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    assert_eq!(world.stored(&id).len(), 2, "both devices");
    assert_eq!(
        remembered(&world, &storage),
        Some(json!({"device": ["serial"]})),
        "not forgotten by a run going on"
    );
}

/// A fresh run with nothing remembered and nothing late never writes the
/// key.
#[test]
fn a_fresh_run_with_nothing_remembered_leaves_app_storage_alone() {
    let world = World::new();
    let pages = Pages(vec![vec![device("d1", &["serial"])], vec![device("d2", &["serial"])]]);
    let mut storage = Storage::default();
    completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    assert_eq!(remembered(&world, &storage), None, "never written");
}

/// A fresh run under a `cloud-mapping` setting that does not place the
/// remembered `rack`: the key stays remembered, for a later run whose own
/// mapping can map it.
#[test]
fn a_fresh_run_whose_mapping_does_not_place_the_remembered_keys_keeps_them() {
    let world = World::new();
    let pages = Pages(vec![
        vec![device("d1", &["serial"])],
        vec![device("d2", &["serial", "rack"])],
    ]);
    let mut storage = Storage::default();
    completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-1",
        cloud(None),
    ));
    assert_eq!(remembered(&world, &storage), Some(json!({"device": ["rack"]})));

    let pages = Pages(vec![vec![device("d1", &["serial"])]]);
    completed(run(
        &world,
        &mut storage,
        &mut Clock::default(),
        &pages,
        "occ-2",
        cloud(Some(settings_mapping())),
    ));
    assert_eq!(world.mapping(), settings_mapping());
    assert_eq!(
        remembered(&world, &storage),
        Some(json!({"device": ["rack"]})),
        "still remembered"
    );
}
