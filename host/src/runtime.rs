//! Compiles the importer component once and runs each trigger in a fresh
//! store and instance.
//!
//! Compilation and linking happen once per component ([`Runtime::new`]); a
//! trigger only instantiates the pre-linked component, calls the export and
//! drops the store, so no state leaks from one run into the next.

use crate::bindings::import_callback::{RunError, RunReport, TriggerEvent};
use crate::bindings::{Importer, ImporterPre};
use crate::sandbox::{Grants, GuestLog, Sandbox};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, Store};

/// A compiled, linked importer component.
pub struct Runtime {
    engine: Engine,
    pre: ImporterPre<Sandbox>,
}

/// The result of one invocation of the guest.
pub struct Invocation {
    /// What the guest returned, or the trap that stopped it.
    pub result: wasmtime::Result<Result<RunReport, RunError>>,
    /// What the guest wrote to stdout and stderr.
    pub guest_output: String,
    /// Wall time of the invocation, instantiation included.
    pub elapsed: Duration,
}

impl Runtime {
    /// Compiles the component at `path`.
    pub fn from_file(path: &Path) -> anyhow::Result<Runtime> {
        let bytes = anyhow::Context::with_context(std::fs::read(path), || {
            format!(
                "cannot read the component at {}; build it with `make component`",
                path.display()
            )
        })?;
        anyhow::Context::with_context(Runtime::new(&bytes).map_err(anyhow::Error::from), || {
            format!("cannot load the component at {}", path.display())
        })
    }

    /// Compiles and links a component from its bytes.
    pub fn new(component: &[u8]) -> wasmtime::Result<Runtime> {
        let config = Config::new();
        let engine = Engine::new(&config).context("cannot create the wasmtime engine")?;
        let component =
            Component::new(&engine, component).context("not a valid WebAssembly component")?;
        let mut linker: Linker<Sandbox> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).context("cannot link WASI")?;
        Importer::add_to_linker::<_, HasSelf<_>>(&mut linker, |sandbox| sandbox)
            .context("cannot link the importer's imports")?;
        let pre = linker
            .instantiate_pre(&component)
            .context("the component needs imports this host does not grant")?;
        let pre = ImporterPre::new(pre).context("the component does not export import-callback")?;
        Ok(Runtime { engine, pre })
    }

    /// Runs `on-trigger(event)` in a fresh instance with `grants`.
    pub fn invoke(&self, event: &TriggerEvent, grants: Grants) -> Invocation {
        let started = Instant::now();
        let log = GuestLog::default();
        let mut store = Store::new(&self.engine, Sandbox::new(grants, &log));
        let result = self
            .pre
            .instantiate(&mut store)
            .context("cannot instantiate the component")
            .and_then(|importer| {
                importer
                    .assets_scheduled_import_import_callback()
                    .call_on_trigger(&mut store, event)
                    .context("import-callback trapped")
            });
        drop(store);
        Invocation {
            result,
            guest_output: log.text(),
            elapsed: started.elapsed(),
        }
    }
}
