//! A generic HTTP JSON data source, as a component exporting `data-source`
//! (world `asset-source`), to be composed into the importer with `wac plug`.
//!
//! It reads a third-party REST API page by page through the `outbound-http`
//! import — so the app's egress allowlist applies to every request — and maps
//! each JSON record to an asset object. Everything comes from the `config`
//! import; nothing about any one API is built in. `netbox.conf` beside this
//! crate is a ready configuration for a NetBox-style device list.
//!
//! - [`settings`]: the `source-*` and `map-*` keys, read and checked; a
//!   missing or contradictory setting is an error naming the key.
//! - [`path`]: field paths (`site.name`, `tags[].name`) into JSON values.
//! - [`mapping`]: one JSON record → one asset object.
//! - [`pagination`]: where the next page is (a `next` URL, a cursor field,
//!   page or offset parameters); the cursor handed to the importer is always
//!   the next page's URL, so the source keeps no state between calls.
//! - [`fetch`]: one page: request, status and body checks, records, mapping,
//!   the next cursor; HTTP behind a small trait so all of it runs natively.
//! - `component`: the `wit-bindgen` glue (wasm32 only).

pub mod fetch;
pub mod mapping;
pub mod pagination;
pub mod path;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod component;
