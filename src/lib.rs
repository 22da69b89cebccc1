//! The scheduled-import app, as a WebAssembly component.
//!
//! When a schedule fires, the platform calls the component's `import-callback`
//! export. The component then follows the Assets import contract:
//!
//! 1. create an execution (`POST importsource/{id}/executions`, `"scheduled": true`),
//! 2. read the data source page by page and submit the objects in chunks,
//! 3. signal completion, or report a failure that people will read in the import history.
//!
//! The crate is split so that everything worth testing runs natively:
//!
//! - [`model`]: asset objects, pages and the source's errors, in plain Rust.
//! - [`chunker`]: turns a stream of objects into JSON chunks within the configured limits.
//! - [`settings`]: the app settings the importer reads, validated.
//! - [`api`]: the few Assets API calls the lifecycle makes, and how their answers are read.
//! - [`cloud`]: the real API's dialect — the schema-and-mapping document and
//!   the shape of its chunks.
//! - [`lifecycle`]: the import itself, written against two small traits
//!   ([`api::AssetsApi`], [`model::DataSource`]) so unit tests drive it with fakes.
//! - [`reason`]: failure reasons cut to the API's 1024-character limit.
//! - [`retry`]: which failures are retried, backoff with jitter, `Retry-After`,
//!   every wait inside the invocation's deadline.
//! - [`budget`]: what a run has spent over all its deliveries (retries,
//!   waiting, the slowest page, the cursors read), kept in app storage.
//! - `component` (wasm32 only): the thin `wit-bindgen` glue that adapts the
//!   component's imports to those traits and exports the callback.

pub mod api;
pub mod budget;
pub mod chunker;
pub mod cloud;
pub mod lifecycle;
pub mod model;
pub mod reason;
pub mod retry;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod component;
