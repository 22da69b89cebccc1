//! The `wit-bindgen` glue: exports `data-source`, reads `config`, calls
//! `outbound-http`. Nothing here decides anything.

mod bindings {
    wit_bindgen::generate!({
        world: "asset-source",
        path: "../../wit",
    });
}

use bindings::assets::scheduled_import::types::{AssetObject, Attribute, ObjectBatch};
use bindings::assets::scheduled_import::{config, outbound_http};
use bindings::exports::assets::scheduled_import::data_source::{self, Page, SourceError};

use crate::fetch::{self, Http, HttpFailure, Response};
use crate::settings::Settings;

struct HttpJsonSource;

struct PlatformHttp;

impl Http for PlatformHttp {
    fn get(&mut self, url: &str, headers: &[(String, String)], timeout_ms: u32) -> Result<Response, HttpFailure> {
        outbound_http::send(&outbound_http::Request {
            method: outbound_http::Method::Get,
            url: url.to_owned(),
            headers: headers.to_vec(),
            body: None,
            timeout_ms: Some(timeout_ms),
        })
        .map(|r| Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
        .map_err(|e| match e {
            outbound_http::HttpError::Denied(m) => HttpFailure::Denied(m),
            outbound_http::HttpError::InvalidUrl(m) => HttpFailure::InvalidUrl(m),
            outbound_http::HttpError::InvalidRequest(m) => HttpFailure::InvalidRequest(m),
            outbound_http::HttpError::Timeout(m) => HttpFailure::Timeout(m),
            outbound_http::HttpError::Connection(m) => HttpFailure::Connection(m),
        })
    }
}

impl data_source::Guest for HttpJsonSource {
    fn next_page(cursor: Option<String>) -> Result<Page, SourceError> {
        let settings = Settings::read(config::get).map_err(|e| SourceError::Config(e.0))?;
        let page = fetch::next_page(&settings, &mut PlatformHttp, cursor.as_deref()).map_err(|e| match e {
            fetch::SourceError::Timeout(m) => SourceError::Timeout(m),
            fetch::SourceError::Connection(m) => SourceError::Connection(m),
            fetch::SourceError::Busy {
                message,
                retry_after_ms,
            } => SourceError::Busy(data_source::BusyError {
                message,
                retry_after_ms,
            }),
            fetch::SourceError::BadResponse(m) => SourceError::BadResponse(m),
            fetch::SourceError::Denied(m) => SourceError::Denied(m),
            fetch::SourceError::Config(m) => SourceError::Config(m),
            fetch::SourceError::Other(m) => SourceError::Other(m),
        })?;
        let objects = page
            .objects
            .into_iter()
            .map(|o| AssetObject {
                external_id: o.external_id,
                label: o.label,
                attributes: o
                    .attributes
                    .into_iter()
                    .map(|(key, values)| Attribute { key, values })
                    .collect(),
            })
            .collect();
        Ok(Page {
            batches: vec![ObjectBatch {
                object_type_id: page.object_type_id,
                objects,
            }],
            next_cursor: page.next_cursor,
        })
    }
}

bindings::export!(HttpJsonSource with_types_in bindings);
