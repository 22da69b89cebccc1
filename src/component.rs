//! The `wit-bindgen` glue: adapts the component's imports to the lifecycle's
//! traits and exports `import-callback`. Nothing here decides anything.

mod bindings {
    wit_bindgen::generate!({
        world: "importer",
        path: "wit",
    });
}

use bindings::assets::scheduled_import::{assets_api, config, data_source, storage, timer, types};
use bindings::exports::assets::scheduled_import::import_callback::{
    self as callback, FailedRun, PausedRun, RunError, RunOutcome, RunReport, TriggerEvent,
};

use crate::api::{ApiResponse, AssetsApi, CallError, Method};
use crate::lifecycle::{self, KeyValue, Trigger};
use crate::model::{AssetObject, DataSource, ObjectBatch, Page, SourceError};
use crate::retry::Timer;
use crate::settings::Settings;

struct Importer;

impl callback::Guest for Importer {
    fn on_trigger(event: TriggerEvent) -> Result<RunOutcome, RunError> {
        let trigger = Trigger {
            import_source_id: &event.import_source_id,
            scheduled: event.scheduled,
            occurrence_id: &event.occurrence_id,
        };
        let settings = Settings::from_config(config::get);
        lifecycle::run_import(
            trigger,
            settings,
            &mut PlatformApi,
            &mut ImportedSource,
            &mut PlatformTimer,
            &mut AppStorage,
        )
        .map(|outcome| match outcome {
            lifecycle::Outcome::Completed(r) => RunOutcome::Completed(RunReport {
                execution_id: r.execution_id,
                chunks_sent: r.chunks_sent,
                objects_sent: r.objects_sent,
                retries: r.retries,
                replayed: r.replayed,
            }),
            lifecycle::Outcome::Paused(p) => RunOutcome::Paused(PausedRun {
                execution_id: p.execution_id,
                chunks_sent: p.chunks_sent,
                objects_sent: p.objects_sent,
                retries: p.retries,
            }),
        })
        .map_err(|e| match e {
            lifecycle::RunError::ExecutionNotCreated(reason) => RunError::ExecutionNotCreated(reason),
            lifecycle::RunError::ImportFailed(f) => RunError::ImportFailed(FailedRun {
                execution_id: f.execution_id,
                reason: f.reason,
                reported: f.reported,
                chunks_sent: f.chunks_sent,
                objects_sent: f.objects_sent,
            }),
        })
    }
}

/// The `assets-api` import.
struct PlatformApi;

impl AssetsApi for PlatformApi {
    fn call(&mut self, method: Method, path: &str, body: Option<&str>) -> Result<ApiResponse, CallError> {
        let method = match method {
            Method::Get => assets_api::Method::Get,
            Method::Post => assets_api::Method::Post,
            Method::Put => assets_api::Method::Put,
            Method::Delete => assets_api::Method::Delete,
        };
        match assets_api::call(method, path, body) {
            Ok(r) => Ok(ApiResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(assets_api::CallError::InvalidPath(m)) => Err(CallError::InvalidPath(m)),
            Err(assets_api::CallError::Unreachable(m)) => Err(CallError::Unreachable(m)),
            Err(assets_api::CallError::Timeout(m)) => Err(CallError::Timeout(m)),
        }
    }
}

/// The `data-source` import.
struct ImportedSource;

impl DataSource for ImportedSource {
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        use data_source::SourceError as E;
        match data_source::next_page(cursor) {
            Ok(page) => Ok(Page {
                batches: page.batches.into_iter().map(batch).collect(),
                next_cursor: page.next_cursor,
            }),
            Err(E::Timeout(m)) => Err(SourceError::Timeout(m)),
            Err(E::Connection(m)) => Err(SourceError::Connection(m)),
            Err(E::Busy(b)) => Err(SourceError::Busy {
                message: b.message,
                retry_after_ms: b.retry_after_ms,
            }),
            Err(E::BadResponse(m)) => Err(SourceError::BadResponse(m)),
            Err(E::Denied(m)) => Err(SourceError::Denied(m)),
            Err(E::Config(m)) => Err(SourceError::Config(m)),
            Err(E::Other(m)) => Err(SourceError::Other(m)),
        }
    }
}

/// The `timer` import.
struct PlatformTimer;

impl Timer for PlatformTimer {
    fn now_ms(&mut self) -> u64 {
        timer::now_ms()
    }
    fn sleep_ms(&mut self, ms: u64) {
        timer::sleep_ms(ms)
    }
    fn time_left_ms(&mut self) -> u64 {
        timer::time_left_ms()
    }
}

/// The `storage` import.
struct AppStorage;

impl KeyValue for AppStorage {
    fn get(&mut self, key: &str) -> Option<String> {
        storage::get(key)
    }
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        storage::set(key, value)
    }
}

fn batch(b: types::ObjectBatch) -> ObjectBatch {
    ObjectBatch {
        object_type_id: b.object_type_id,
        objects: b
            .objects
            .into_iter()
            .map(|o| AssetObject {
                external_id: o.external_id,
                label: o.label,
                attributes: o.attributes.into_iter().map(|a| (a.key, a.values)).collect(),
            })
            .collect(),
    }
}

bindings::export!(Importer with_types_in bindings);
