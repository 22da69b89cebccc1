//! Composed components: the importer with a data-source component plugged in
//! by `wac plug` (`make compose`), run in the real host. The generic HTTP
//! JSON source reads an in-process NetBox-style API through the guest's
//! outbound HTTP, behind the egress allowlist.

mod common;

use assets_platform::assets::{ExecutionStatus, Outcome};
use assets_platform::source::SyntheticSource;
use assets_platform::third_party::{device, NetBoxMock, PageFault};
use assets_platform::trigger::{self, App, RunStatus, TriggerOutcome};
use assets_runtime::egress::{Allowlist, EgressGuard};
use assets_runtime::Runtime;
use common::World;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn composed_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("ASSETS_COMPOSED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/composed"));
    dir.join(name)
}

fn composed(name: &'static str) -> Arc<Runtime> {
    static RUNTIMES: OnceLock<std::sync::Mutex<BTreeMap<&'static str, Arc<Runtime>>>> = OnceLock::new();
    let mut runtimes = RUNTIMES.get_or_init(Default::default).lock().unwrap();
    runtimes
        .entry(name)
        .or_insert_with(|| {
            let path = composed_path(name);
            Arc::new(
                Runtime::from_file(&path).unwrap_or_else(|e| {
                    panic!("{e:#}\n(run the tests with `make test`, which runs `make compose` first)")
                }),
            )
        })
        .clone()
}

/// The shipped NetBox configuration, with `changes` applied (an empty value
/// removes the key), and quick retries.
fn netbox_config(changes: &[(&str, &str)]) -> BTreeMap<String, String> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sources/http-json/netbox.conf");
    let mut config: BTreeMap<String, String> = assets_host::cli::read_config_file(&file).unwrap().into_iter().collect();
    config.insert("retry-base-delay-ms".into(), "1".into());
    for (key, value) in changes {
        if value.is_empty() {
            config.remove(*key);
        } else {
            config.insert((*key).into(), (*value).into());
        }
    }
    config
}

fn netbox_app(mock: Arc<NetBoxMock>, allow: &[&str], config: BTreeMap<String, String>) -> App {
    let guard = EgressGuard::new(Allowlist::parse(allow).unwrap(), mock);
    // The built-in source is granted too, but the composed component no
    // longer imports `data-source`: its records can only come from the plug.
    App::new(
        "netbox-sync",
        composed("http-json-importer.wasm"),
        Arc::new(SyntheticSource::default()),
    )
    .with_config(config)
    .with_http(Arc::new(guard))
}

fn run(world: &World, app: &App) -> TriggerOutcome {
    let mut event = trigger::manual_event(&world.workspace, &world.source_id);
    event.scheduled = true;
    trigger::deliver(app, &world.assets, &event)
}

fn failure_reason(world: &World) -> String {
    let history = world.assets.history(&world.source_id).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].status, Outcome::Failed);
    history[0].failure_reason.clone().unwrap()
}

#[test]
fn the_composed_importer_reads_every_netbox_record_once_mapped_as_configured() {
    let world = World::new();
    let mock = Arc::new(NetBoxMock::new(237));
    let outcome = run(
        &world,
        &netbox_app(mock.clone(), &["netbox.example.com"], netbox_config(&[])),
    );
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.objects, 237);
    assert_eq!(mock.requests(), 5, "237 devices at 50 a page");

    let state = world.assets.state();
    let execution = state.execution_by_id(outcome.execution_id.as_deref().unwrap()).unwrap();
    // Completion was signalled: PROCESSING, then DONE on the clock.
    assert_eq!(execution.status, ExecutionStatus::Processing);
    assert_eq!(
        (execution.objects.len(), execution.received),
        (237, 237),
        "every record once"
    );
    for i in 0..237 {
        let key = ("device".to_owned(), (1000 + i).to_string());
        let object = execution
            .objects
            .get(&key)
            .unwrap_or_else(|| panic!("device {i} missing"));
        let source = device(i);
        assert_eq!(object.label, source["name"].as_str().unwrap());
        let attribute = |k: &str| object.attributes.get(k).cloned().unwrap_or_default();
        assert_eq!(attribute("serial"), vec![source["serial"].as_str().unwrap().to_owned()]);
        assert_eq!(
            attribute("site"),
            vec![source["site"]["name"].as_str().unwrap().to_owned()]
        );
        assert_eq!(
            attribute("role"),
            vec![source["role"]["name"].as_str().unwrap().to_owned()]
        );
        assert_eq!(
            attribute("status"),
            vec![source["status"]["value"].as_str().unwrap().to_owned()]
        );
        let ip: Vec<String> = source["primary_ip"]["address"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect();
        assert_eq!(attribute("ip"), ip, "device {i}: a null primary_ip gives no attribute");
        let tags: Vec<String> = source["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(attribute("tags"), tags, "device {i}: a list gives every value");
    }
}

#[test]
fn the_netbox_example_imports_the_same_objects_in_both_dialects() {
    let seed_world = World::new();
    let seed_mock = Arc::new(NetBoxMock::new(237));
    let seed = run(
        &seed_world,
        &netbox_app(seed_mock, &["netbox.example.com"], netbox_config(&[])),
    );
    assert_eq!(seed.status, RunStatus::Completed, "{seed:?}");

    let world = World::new();
    world.assets.require_mapping(&world.source_id).unwrap();
    let mock = Arc::new(NetBoxMock::new(237));
    let cloud = run(
        &world,
        &netbox_app(
            mock.clone(),
            &["netbox.example.com"],
            netbox_config(&[("api-dialect", "cloud")]),
        ),
    );
    assert_eq!(cloud.status, RunStatus::Completed, "{cloud:?}");
    assert_eq!(cloud.objects, 237);
    // The first page is read once more, to derive the mapping.
    assert_eq!(mock.requests(), 6);

    let objects = |world: &World, outcome: &TriggerOutcome| {
        let state = world.assets.state();
        let execution = state.execution_by_id(outcome.execution_id.as_deref().unwrap()).unwrap();
        execution.objects.clone()
    };
    let (seed_objects, cloud_objects) = (objects(&seed_world, &seed), objects(&world, &cloud));
    assert_eq!((seed_objects.len(), cloud_objects.len()), (237, 237));
    for (key, expected) in &seed_objects {
        let got = &cloud_objects[key];
        assert_eq!(got.label, expected.label, "{key:?}");
        let mut attributes = got.attributes.clone();
        attributes.remove("External ID");
        attributes.remove("Name");
        assert_eq!(attributes, expected.attributes, "{key:?}");
    }
}

#[test]
fn a_page_that_times_out_fails_the_run_naming_the_third_party_call() {
    let world = World::new();
    let mock = Arc::new(NetBoxMock::new(237).fail_at(100, PageFault::Timeout));
    let outcome = run(&world, &netbox_app(mock, &["netbox.example.com"], netbox_config(&[])));
    assert_eq!(outcome.status, RunStatus::Failed);
    let reason = failure_reason(&world);
    assert!(
        reason.starts_with("Failed to fetch data from third-party API: Connection timeout")
            && reason.contains("GET https://netbox.example.com/api/dcim/devices/?limit=50&offset=100"),
        "{reason}"
    );
    assert!(reason.chars().count() <= 1024);
}

#[test]
fn an_error_status_or_a_non_json_page_is_a_bad_response_naming_the_call() {
    let world = World::new();
    let mock = Arc::new(NetBoxMock::new(120).fail_at(50, PageFault::NotJson));
    run(&world, &netbox_app(mock, &["netbox.example.com"], netbox_config(&[])));
    let reason = failure_reason(&world);
    assert!(
        reason.contains("Bad response") && reason.contains("offset=50") && reason.contains("not JSON"),
        "{reason}"
    );

    let world = World::new();
    let mock = Arc::new(NetBoxMock::new(120));
    let config = netbox_config(&[("source-url", "https://netbox.example.com/api/dcim/racks/")]);
    run(&world, &netbox_app(mock, &["netbox.example.com"], config));
    let reason = failure_reason(&world);
    assert!(reason.contains("answered 404"), "{reason}");
}

#[test]
fn a_url_outside_the_allowlist_fails_the_run_saying_the_egress_rule_refused_it() {
    let world = World::new();
    let mock = Arc::new(NetBoxMock::new(120));
    let outcome = run(
        &world,
        &netbox_app(mock.clone(), &["cmdb.example.com"], netbox_config(&[])),
    );
    assert_eq!(outcome.status, RunStatus::Failed);
    let reason = failure_reason(&world);
    assert!(
        reason.contains("egress allowlist refused") && reason.contains("https://netbox.example.com/api/dcim/devices/"),
        "{reason}"
    );
    assert_eq!(mock.requests(), 0, "a refused request never reaches the network");
}

#[test]
fn a_bad_configuration_fails_the_run_naming_the_key() {
    for (change, key) in [
        (("map-external-id", ""), "map-external-id"),
        (("source-pagination", "sideways"), "source-pagination"),
        (("source-cursor-field", "meta.cursor"), "source-cursor-field"),
    ] {
        let world = World::new();
        let mock = Arc::new(NetBoxMock::new(10));
        run(
            &world,
            &netbox_app(mock, &["netbox.example.com"], netbox_config(&[change])),
        );
        let reason = failure_reason(&world);
        assert!(
            reason.starts_with("Data source is misconfigured: ") && reason.contains(key),
            "{key}: {reason}"
        );
    }
}

#[test]
fn the_tiny_fixed_list_source_composes_and_imports_its_racks() {
    let world = World::new();
    let app = App::new(
        "racks",
        composed("fixed-list-importer.wasm"),
        Arc::new(SyntheticSource::default()),
    );
    let outcome = run(&world, &app);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.objects, 12, "3 sites × 4 racks");
    let state = world.assets.state();
    let execution = state.execution_by_id(outcome.execution_id.as_deref().unwrap()).unwrap();
    assert!(execution
        .objects
        .contains_key(&("rack".to_owned(), "fra2-rack-3".to_owned())));
}

/// The WASI interfaces the host grants a guest: what `wasmtime-wasi` 48's
/// `p2::add_to_linker_sync` links in `assets_runtime::engine` (its packages
/// are `@0.2.12`), less `wasi:sockets/*`, which it links but the sandbox
/// denies (`allow_tcp(false)`, `allow_udp(false)`, no name lookup): an
/// importer that imports a socket means to reach out past `outbound-http`.
const GRANTED_WASI: [&str; 20] = [
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
];

/// The newest WASI 0.2 minor the host links: a guest's import of
/// `@0.2.N` resolves to it for every `N` up to this one, and no further.
const HOST_WASI_MINOR: u32 = 12;

/// Whether the host grants `import`, a `wasi:` interface with its version.
fn wasi_granted(import: &str) -> bool {
    let Some((interface, version)) = import.split_once('@') else {
        return false;
    };
    let minor = version.strip_prefix("0.2.").and_then(|m| m.parse::<u32>().ok());
    GRANTED_WASI.contains(&interface) && minor.is_some_and(|m| m <= HOST_WASI_MINOR)
}

#[test]
fn the_granted_wasi_list_takes_exact_interfaces_and_host_versions() {
    assert!(wasi_granted("wasi:io/streams@0.2.6"));
    assert!(wasi_granted("wasi:cli/stdout@0.2.12"));
    for refused in [
        "wasi:sockets/tcp@0.2.6",
        "wasi:sockets/ip-name-lookup@0.2.0",
        "wasi:http/outgoing-handler@0.2.6",
        "wasi:io/streams@0.2.13",
        "wasi:io/streams@0.3.0",
        "wasi:io/streams",
        "wasi:io/streams-extra@0.2.6",
    ] {
        assert!(!wasi_granted(refused), "{refused}");
    }
}

#[test]
fn composed_components_import_only_what_the_host_grants() {
    let granted = ["assets-api", "outbound-http", "config", "storage", "timer", "types"];
    for name in ["http-json-importer.wasm", "fixed-list-importer.wasm"] {
        let imports = assets_runtime::component_imports(&composed_path(name)).unwrap();
        assert!(!imports.is_empty());
        for import in &imports {
            let ours = import
                .strip_prefix("assets:scheduled-import/")
                .map(|rest| rest.split('@').next().unwrap_or_default());
            let allowed = wasi_granted(import) || ours.is_some_and(|i| granted.contains(&i));
            assert!(
                allowed,
                "{name} imports {import}, which the host does not grant; all: {imports:?}"
            );
        }
        assert!(
            !imports.iter().any(|i| i.contains("data-source")),
            "{name}: the plug satisfies data-source"
        );
    }
}

#[test]
fn the_readme_shows_the_tiny_source_as_it_is() {
    let readme = include_str!("../README.md");
    let source = include_str!("../sources/fixed-list/src/lib.rs");
    assert!(
        readme.contains(source),
        "README.md's copy of sources/fixed-list/src/lib.rs is out of date; paste the file again"
    );
}
