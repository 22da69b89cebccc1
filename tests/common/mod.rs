//! Shared set-up for the end-to-end tests: the real component, compiled once
//! per test binary, and a fresh in-process Assets API per test.

#![allow(dead_code)]

use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::SystemClock;
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::App;
use assets_runtime::Runtime;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The importer component built by `make component`, compiled once.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let path = assets_host::cli::default_component_path();
            Arc::new(Runtime::from_file(&path).unwrap_or_else(|e| {
                panic!("{e:#}\n(run the tests with `make test`, which builds the component first)")
            }))
        })
        .clone()
}

/// A fresh Assets API with one workspace and one external-app import source.
pub struct World {
    pub assets: Arc<AssetsService>,
    pub workspace: String,
    pub source_id: String,
}

impl World {
    pub fn new() -> World {
        let assets = Arc::new(AssetsService::new(Arc::new(SystemClock)));
        let workspace = assets.create_workspace();
        let source_id = assets
            .create_import_source(&workspace, SourceType::External, Some("importer".into()))
            .unwrap();
        World {
            assets,
            workspace,
            source_id,
        }
    }

    pub fn app(&self, source: SyntheticSource, config: &[(&str, &str)]) -> App {
        let config: BTreeMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        App::new("importer", runtime(), Arc::new(source)).with_config(config)
    }
}
