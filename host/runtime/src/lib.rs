//! Run the scheduled-import `importer` component inside your own app host.
//!
//! This crate is what an embedder takes: it compiles the component once,
//! gives every trigger a fresh sandboxed instance under time and memory
//! limits, and answers the guest's WIT imports through small traits you
//! implement. It holds no web framework, database, HTTP client, CLI parser
//! or calendar; the simulated platform (`assets-platform`), the HTTP server
//! (`assets-server`) and the `assets-host` tool are built on top of it.
//!
//! # The parts
//!
//! | part | what it is for |
//! | --- | --- |
//! | [`Runtime`] ([`engine`]) | compile once, [`Runtime::invoke`] per trigger: a fresh store, [`Limits`], a named [`Fault`] when the host stops a guest or a limit fails the invocation |
//! | [`Grants`] ([`sandbox`]) | what one app may reach for one trigger; its output captured and bounded |
//! | [`ApiPath`] ([`api_path`]) | a guest's API path read once: confined to its workspace, decided on and sent as one value |
//! | [`OutboundRequest`] ([`outbound`]) | a guest's third-party request read once: a closed set of methods, `http` header types, no platform-owned headers, the timeout cut to the time left |
//! | [`capabilities`] | one trait per WIT import: [`AssetsBackend`], [`DataSourceProvider`], [`Config`], [`OutboundHttp`], [`Storage`], [`Timer`], with defaults where a host may not care |
//! | [`egress`] | the platform's allowlist rule ([`Allowlist`]) and the [`EgressGuard`] that refuses before anything is sent |
//! | [`storage`] | [`AppStorage`], the bounded in-memory app storage, optionally written through to a durable backing |
//! | [`bindings`] | the types generated from `wit/world.wit` |
//!
//! # Embedding, step by step
//!
//! `examples/embed.rs` is a complete program (`cargo run -p assets-runtime
//! --example embed`); in short:
//!
//! ```no_run
//! use assets_runtime::bindings::assets_api::{CallError, Method, Response};
//! use assets_runtime::bindings::import_callback::{RunOutcome, TriggerEvent};
//! use assets_runtime::{ApiPath, AssetsBackend, Grants, Limits, Runtime};
//! use std::sync::Arc;
//!
//! /// Your Assets API client: it adds the credential, the guest never sees it.
//! struct MyAssets;
//! impl AssetsBackend for MyAssets {
//!     fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
//!         // send `method path.target() body` to the Assets API with your token
//! #       unimplemented!()
//!     }
//! }
//!
//! # fn main() -> anyhow::Result<()> {
//! // 1. Compile once (seconds); keep the Runtime for every later trigger.
//! let runtime = Runtime::from_file("assets_scheduled_import.wasm".as_ref())?;
//! // 2. Grant the app what it may reach (here: only the Assets API).
//! let grants = Grants::new("my-workspace", Arc::new(MyAssets));
//! // 3. Fire a trigger: a fresh instance runs `import-callback.on-trigger`.
//! let event = TriggerEvent {
//!     workspace_id: "my-workspace".into(),
//!     import_source_id: "my-source".into(),
//!     scheduled: true,
//!     schedule_id: Some("my-schedule".into()),
//!     occurrence_id: "occurrence-1".into(),
//!     nominal_time: "2026-11-28T09:00:00Z".into(),
//!     attempt: 1,
//! };
//! let invocation = runtime.invoke(&event, grants, Limits::default());
//! // 4. The guest's run report, its error, or why the host stopped it.
//! match invocation.result {
//!     Ok(Ok(RunOutcome::Completed(report))) => println!("imported {} objects", report.objects_sent),
//!     // Stopped at a checkpoint before the time limit: invoke again to go on.
//!     Ok(Ok(RunOutcome::Paused(paused))) => println!("{} objects so far", paused.objects_sent),
//!     Ok(Err(error)) => println!("the import failed: {error:?}"),
//!     Err(fault) => println!("stopped: {fault}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What the guest can and cannot do
//!
//! A guest gets WASI with no files, environment, arguments or sockets, and
//! the six imports of the `importer` world, each answered by the trait you
//! granted. Its Assets API paths are relative and confined to its workspace
//! ([`ApiPath`]); the credential is added by your
//! [`AssetsBackend`] on the host side. A trap, a time limit or a memory limit
//! stops the guest with a [`Fault`]; it never takes the host down. The
//! optional limits fail the invocation with a [`Fault`] too: more outbound
//! HTTP requests in a minute than [`Limits::outbound_per_minute`] (the
//! request over it is refused, not sent), or a trigger event or answer
//! larger than [`Limits::payload_bytes`]. What the platform records
//! afterwards (a failed history line, an execution failed on the app's
//! behalf) is the caller's job: `assets-platform`'s `trigger` module shows
//! one way.

#![deny(missing_docs)]

pub mod api_path;
pub mod bindings;
pub mod capabilities;
pub mod egress;
pub mod engine;
pub mod outbound;
pub mod sandbox;
pub mod storage;

pub use api_path::ApiPath;
pub use capabilities::{
    method_name, AssetsBackend, Config, DataSourceProvider, NoDataSource, NoEgress, OutboundHttp, Storage, SystemTimer,
    Timer, DELIVERY_HEADER,
};
pub use egress::{Allowlist, Decision, EgressGuard, Target};
pub use engine::{component_imports, Fault, Invocation, Limits, Runtime};
pub use outbound::OutboundRequest;
pub use sandbox::Grants;
pub use storage::{AppStorage, StorageLimits};
