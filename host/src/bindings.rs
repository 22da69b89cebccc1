//! Host-side bindings generated from `wit/world.wit`; the trait impls live
//! beside what they adapt (`sandbox`, `source`).

wasmtime::component::bindgen!({
    world: "importer",
    path: "../wit",
});

pub use assets::scheduled_import::{assets_api, config, data_source, outbound_http, storage, timer, types};
pub use exports::assets::scheduled_import::import_callback;
