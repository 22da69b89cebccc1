//! The importer component in a host of your own: compile it once, answer its Assets API from an
//! in-memory stand-in, fire one scheduled trigger, print the run report.
//! `make component && cargo run -p assets-runtime --example embed [COMPONENT.wasm]`
use assets_runtime::bindings::assets_api::{CallError, Method, Response};
use assets_runtime::bindings::data_source::{Page, SourceError};
use assets_runtime::bindings::import_callback::{RunOutcome, TriggerEvent};
use assets_runtime::bindings::types::{AssetObject, ObjectBatch};
use assets_runtime::{ApiPath, AssetsBackend, DataSourceProvider, Grants, Limits, Runtime};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Stands in for the Assets API: one execution, counting what it receives.
/// A real backend sends the call over HTTPS with your credential.
struct TinyAssets(AtomicUsize);

impl AssetsBackend for TinyAssets {
    fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
        let (status, answer) = match (method, path.segments().last().unwrap_or_default()) {
            (Method::Post, "executions") => (201, r#"{"id":"e1"}"#),
            (Method::Post, "data") => {
                let chunk: serde_json::Value = serde_json::from_str(body.unwrap_or("{}")).unwrap_or_default();
                let objects = chunk["objects"].as_array().map_or(0, Vec::len);
                self.0.fetch_add(objects, Relaxed);
                (200, "{}")
            }
            (Method::Post, "completed" | "failed") => (200, "{}"),
            _ => (404, r#"{"errorMessages":["not in this stand-in"]}"#),
        };
        Ok(Response {
            status,
            headers: vec![],
            body: answer.into(),
        })
    }
}

/// Three pages of two servers each; the cursor is the next page number.
struct ThreePages;

impl DataSourceProvider for ThreePages {
    fn next_page(&self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let page: u32 = cursor
            .map_or(Ok(0), str::parse)
            .map_err(|_| SourceError::Other("bad cursor".into()))?;
        let server = |i: u32| AssetObject {
            external_id: format!("srv-{i}"),
            label: format!("Server {i}"),
            attributes: vec![],
        };
        Ok(Page {
            batches: vec![ObjectBatch {
                object_type_id: "server".into(),
                objects: vec![server(2 * page), server(2 * page + 1)],
            }],
            next_cursor: (page < 2).then(|| (page + 1).to_string()),
        })
    }
}

const COMPONENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/wasm32-wasip2/wasm/assets_scheduled_import.wasm"
);

fn main() -> anyhow::Result<()> {
    // The component `make component` builds, unless a path is given.
    let path = std::env::args().nth(1).unwrap_or_else(|| COMPONENT.into());
    // Compile once; every trigger after this only instantiates.
    let runtime = Runtime::from_file(path.as_ref())?;
    let assets = Arc::new(TinyAssets(AtomicUsize::new(0)));
    // What this app may reach: the Assets API and its source. Settings, egress,
    // storage and the clock keep their defaults (none, none, in memory, system).
    let grants = Grants::new("workspace-1", assets.clone()).with_source(Arc::new(ThreePages));
    let event = TriggerEvent {
        workspace_id: "workspace-1".into(),
        import_source_id: "source-1".into(),
        scheduled: true,
        schedule_id: Some("schedule-1".into()),
        occurrence_id: "occurrence-1".into(),
        nominal_time: "2026-11-28T09:00:00Z".into(),
        attempt: 1,
    };
    // A fresh sandboxed instance runs `import-callback.on-trigger(event)`.
    let report = match runtime.invoke(&event, grants, Limits::default()).result {
        Ok(Ok(RunOutcome::Completed(report))) => report,
        // Only when the invocation nears its time limit; 900 s is plenty here.
        Ok(Ok(RunOutcome::Paused(paused))) => anyhow::bail!("paused at {} objects", paused.objects_sent),
        Ok(Err(error)) => anyhow::bail!("the import failed: {error:?}"),
        Err(fault) => anyhow::bail!("the host stopped the app: {fault}"),
    };
    let (id, sent, received) = (report.execution_id, report.objects_sent, assets.0.load(Relaxed));
    println!(
        "completed execution {id}: {sent} objects in {} chunks; the stand-in received {received} objects",
        report.chunks_sent
    );
    Ok(())
}
