//! A mock third-party REST API, answered in process behind [`OutboundHttp`]:
//! a NetBox-style device list, for composed source components to read.
//!
//! `GET https://{host}/api/dcim/devices/?limit=L&offset=O` answers
//! `{"count", "next", "previous", "results": [...]}` as NetBox does, with
//! deterministic devices (device `i` is always the same record), so a test
//! can check that every record arrived once and was mapped as configured.
//! Faults can be set per offset: a timeout, an error status, a body that is
//! not JSON. The mock sits *behind* the egress guard, like the real network.

use assets_runtime::bindings::outbound_http::{HttpError, Response};
use assets_runtime::{OutboundHttp, OutboundRequest};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The host the mock answers for by default.
pub const NETBOX_HOST: &str = "netbox.example.com";

/// What goes wrong at one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageFault {
    /// No answer: the request times out.
    Timeout,
    /// This status, with a short JSON body.
    Status(u16),
    /// 200 with an HTML body.
    NotJson,
}

/// The mock API.
#[derive(Debug)]
pub struct NetBoxMock {
    /// Devices in the list.
    pub devices: usize,
    /// The host it answers for.
    pub host: String,
    faults: Mutex<HashMap<usize, PageFault>>,
    requests: AtomicUsize,
}

/// Device `i`, as the mock serves it.
pub fn device(i: usize) -> Value {
    let sites = ["ams1", "fra2", "lon3"];
    let roles = ["leaf", "spine", "firewall", "server"];
    json!({
        "id": 1000 + i,
        "url": format!("https://{NETBOX_HOST}/api/dcim/devices/{}/", 1000 + i),
        "name": format!("dev-{i:04}"),
        "serial": format!("SN{:06}", i * 7919 % 1_000_000),
        "site": {"id": i % 3, "name": sites[i % 3]},
        "role": {"id": i % 4, "name": roles[i % 4]},
        "status": {"value": if i.is_multiple_of(10) { "planned" } else { "active" }, "label": "Active"},
        "primary_ip": if i.is_multiple_of(5) { Value::Null } else { json!({"address": format!("10.0.{}.{}/24", i / 250, i % 250)}) },
        "tags": (0..i % 3).map(|t| json!({"name": format!("tag-{t}")})).collect::<Vec<_>>(),
    })
}

impl NetBoxMock {
    /// A list of `devices` devices at [`NETBOX_HOST`].
    pub fn new(devices: usize) -> NetBoxMock {
        NetBoxMock {
            devices,
            host: NETBOX_HOST.to_owned(),
            faults: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
        }
    }

    /// Makes the page starting at `offset` fail with `fault`.
    pub fn fail_at(self, offset: usize, fault: PageFault) -> NetBoxMock {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(offset, fault);
        self
    }

    /// Requests answered (or failed) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn page(&self, url: &url::Url) -> Result<Response, HttpError> {
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let number = |name: &str, default: usize| query.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let limit = number("limit", 50).clamp(1, 1000);
        let offset = number("offset", 0);
        let fault = self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&offset)
            .cloned();
        match fault {
            Some(PageFault::Timeout) => return Err(HttpError::Timeout(format!("{url}: no answer in time"))),
            Some(PageFault::Status(status)) => return Ok(answer(status, &json!({"detail": "Server Error"}))),
            Some(PageFault::NotJson) => {
                return Ok(Response {
                    status: 200,
                    headers: vec![("content-type".into(), "text/html".into())],
                    body: b"<html><body>Please log in</body></html>".to_vec(),
                })
            }
            None => {}
        }
        let end = (offset + limit).min(self.devices);
        let link = |offset: usize| format!("https://{}/api/dcim/devices/?limit={limit}&offset={offset}", self.host);
        Ok(answer(
            200,
            &json!({
                "count": self.devices,
                "next": (end < self.devices).then(|| link(end)),
                "previous": (offset > 0).then(|| link(offset.saturating_sub(limit))),
                "results": (offset.min(end)..end).map(device).collect::<Vec<_>>(),
            }),
        ))
    }
}

fn answer(status: u16, body: &Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

impl OutboundHttp for NetBoxMock {
    fn send(&self, request: OutboundRequest) -> Result<Response, HttpError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let url = request.url();
        if url.host_str() != Some(self.host.as_str()) {
            return Err(HttpError::Connection(format!("{url}: no such host")));
        }
        if request.method.as_str() != "GET" {
            return Ok(answer(
                405,
                &json!({"detail": format!("Method \"{}\" not allowed.", request.method)}),
            ));
        }
        match url.path() {
            "/api/dcim/devices/" => self.page(url),
            _ => Ok(answer(404, &json!({"detail": "Not found."}))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(mock: &NetBoxMock, url: &str) -> Result<Value, HttpError> {
        let request = assets_runtime::bindings::outbound_http::Request {
            method: assets_runtime::bindings::outbound_http::Method::Get,
            url: url.into(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        };
        let response = mock.send(OutboundRequest::from_guest(request, std::time::Duration::MAX)?)?;
        Ok(serde_json::from_slice(&response.body).unwrap())
    }

    #[test]
    fn pages_link_to_each_other_like_netbox() {
        let mock = NetBoxMock::new(120);
        let first = get(&mock, "https://netbox.example.com/api/dcim/devices/?limit=50").unwrap();
        assert_eq!(first["count"], 120);
        assert_eq!(first["results"].as_array().unwrap().len(), 50);
        assert_eq!(first["previous"], Value::Null);
        let last = get(
            &mock,
            "https://netbox.example.com/api/dcim/devices/?limit=50&offset=100",
        )
        .unwrap();
        assert_eq!(last["results"].as_array().unwrap().len(), 20);
        assert_eq!(last["next"], Value::Null);
        assert_eq!(last["results"][0], device(100));
    }

    #[test]
    fn a_fault_hits_its_page_only() {
        let mock = NetBoxMock::new(120).fail_at(50, PageFault::Timeout);
        assert!(get(&mock, "https://netbox.example.com/api/dcim/devices/?limit=50").is_ok());
        assert!(matches!(
            get(&mock, "https://netbox.example.com/api/dcim/devices/?limit=50&offset=50"),
            Err(HttpError::Timeout(_))
        ));
        assert_eq!(mock.requests(), 2);
    }
}
