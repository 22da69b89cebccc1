//! The host side of each WIT import, as a small trait the embedder
//! implements: where a guest's Assets API calls go, where its records come
//! from, its settings, its third-party HTTP, its storage and its clock.
//!
//! [`Grants`](crate::Grants) bundles one implementation of each for one
//! trigger. Every trait but [`AssetsBackend`] has a default a host can leave
//! in place: [`NoDataSource`], an empty settings map, [`NoEgress`],
//! [`AppStorage`](crate::AppStorage) and [`SystemTimer`].

use crate::api_path::ApiPath;
use crate::bindings::{assets_api, data_source, outbound_http};
use crate::outbound::OutboundRequest;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Where the guest's Assets API calls go (`assets-api.call`). The
/// implementation adds the credential; the guest sees only status, headers
/// and body.
pub trait AssetsBackend: Send + Sync {
    /// Sends one call: `path` is already read and confined to the app's
    /// workspace; send exactly its [`path`](ApiPath::path) and
    /// [`query`](ApiPath::query), never a re-parse of something else.
    fn call(
        &self,
        method: assets_api::Method,
        path: &ApiPath,
        body: Option<&str>,
    ) -> Result<assets_api::Response, assets_api::CallError>;

    /// [`AssetsBackend::call`] made for a scheduled delivery: `delivery` is
    /// the platform's own account of it (never the guest's), which a backend
    /// that can passes on beside the call — over HTTP as the
    /// `x-assets-delivery` header — so the API can fence the delivery's
    /// writes by its attempt. A backend with no such notion sends the call
    /// as it is (the default).
    fn call_for(
        &self,
        method: assets_api::Method,
        path: &ApiPath,
        body: Option<&str>,
        delivery: Option<&str>,
    ) -> Result<assets_api::Response, assets_api::CallError> {
        let _ = delivery;
        self.call(method, path, body)
    }
}

/// The HTTP header that carries [`AssetsBackend::call_for`]'s delivery to
/// an Assets API that fences by it (the platform's own, in serve mode).
pub const DELIVERY_HEADER: &str = "x-assets-delivery";

/// The name of an API method on the wire (`GET`, …).
pub fn method_name(method: assets_api::Method) -> &'static str {
    match method {
        assets_api::Method::Get => "GET",
        assets_api::Method::Post => "POST",
        assets_api::Method::Put => "PUT",
        assets_api::Method::Delete => "DELETE",
    }
}

/// A source of pages for the guest's `data-source` import. The cursor
/// carries all position state, so one source can serve many triggers at once.
pub trait DataSourceProvider: Send + Sync {
    /// The page at `cursor` (`None`: the first page).
    fn next_page(&self, cursor: Option<&str>) -> Result<data_source::Page, data_source::SourceError>;
}

/// The data source of an app that has none (a composed component brings its
/// own): every page is refused with a reason.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDataSource;

impl DataSourceProvider for NoDataSource {
    fn next_page(&self, _cursor: Option<&str>) -> Result<data_source::Page, data_source::SourceError> {
        Err(data_source::SourceError::Other(
            "this app is granted no data source".to_owned(),
        ))
    }
}

/// The app's settings, behind the `config` import.
pub trait Config: Send + Sync {
    /// The value of setting `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

impl Config for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
}

impl Config for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// Third-party HTTP for the guest (`outbound-http.send`). Wrap the real
/// client in an [`EgressGuard`](crate::EgressGuard) so the app's allowlist
/// is checked before anything is sent. The sandbox has already read the
/// guest's request into an [`OutboundRequest`]: send exactly it, within its
/// `timeout`.
pub trait OutboundHttp: Send + Sync {
    /// Sends one request, or refuses it.
    fn send(&self, request: OutboundRequest) -> Result<outbound_http::Response, outbound_http::HttpError>;
}

/// Outbound HTTP for an app that declares no egress: every request is refused
/// without touching the network.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEgress;

impl OutboundHttp for NoEgress {
    fn send(&self, request: OutboundRequest) -> Result<outbound_http::Response, outbound_http::HttpError> {
        Err(outbound_http::HttpError::Denied(format!(
            "{}: the app's egress allowlist is empty",
            request.url()
        )))
    }
}

/// The app's own key-value store, kept across triggers (`storage`). The
/// guest records each occurrence it handles here, so a duplicate delivery
/// replays the earlier result instead of importing twice: an embedder that
/// delivers an occurrence more than once must keep this across deliveries.
pub trait Storage: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Stores `value` under `key`, or says why not (a limit, a failed write).
    fn set(&self, key: String, value: String) -> Result<(), String>;
    /// Removes `key`; removing a missing key does nothing.
    fn delete(&self, key: &str);
}

/// The platform's clock, behind the `timer` import: the guest's retry
/// backoff waits here, so a virtual clock makes those waits instant.
pub trait Timer: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Waits `by`. The sandbox already cuts a wait at the invocation's
    /// deadline before calling this.
    fn sleep(&self, by: Duration);
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemTimer;

impl Timer for SystemTimer {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn sleep(&self, by: Duration) {
        std::thread::sleep(by);
    }
}
