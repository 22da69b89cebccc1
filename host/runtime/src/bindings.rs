//! Host-side bindings generated from `wit/world.wit`; the trait impls live
//! beside what they adapt ([`crate::sandbox`]).
//!
//! Every item here carries the documentation written on it in the WIT file;
//! the glue `bindgen!` adds around them (`ImporterPre`, `ImporterIndices`,
//! the `add_to_linker` functions) is described in wasmtime's own docs.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "importer",
    path: "../../wit",
});

pub use assets::scheduled_import::{assets_api, config, data_source, outbound_http, storage, timer, types};
pub use exports::assets::scheduled_import::import_callback;
