//! The mock Assets API over one import source, as the quota tests call it.
#![allow(dead_code)]

use assets_platform::assets::{AssetsService, Quotas, Response, SourceType};
use assets_platform::clock::SystemClock;
use serde_json::Value;
use std::sync::Arc;

/// The service and the base path of its one import source.
pub struct Api {
    pub service: Arc<AssetsService>,
    pub base: String,
}

impl Api {
    pub fn new(quotas: Quotas) -> Api {
        let service = AssetsService::new(Arc::new(SystemClock)).with_quotas(quotas);
        let workspace = service.create_workspace();
        let source = service
            .create_import_source(&workspace, SourceType::External, None)
            .unwrap();
        let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
        Api {
            service: Arc::new(service),
            base,
        }
    }

    pub fn call(&self, method: &str, rest: &str, body: &str) -> Response {
        self.service
            .handle(method, &format!("{}{rest}", self.base), body.as_bytes())
    }

    pub fn json(&self, method: &str, rest: &str, body: &str) -> (u16, Value) {
        let r = self.call(method, rest, body);
        (r.status, serde_json::from_str(&r.body).expect("every answer is JSON"))
    }

    /// Creates an execution and returns its id.
    pub fn start(&self) -> String {
        let (status, body) = self.json("POST", "/executions", "{}");
        assert_eq!(status, 201, "{body}");
        let cancel = body["links"]["cancel"].as_str().unwrap();
        cancel.rsplit('/').next().unwrap().to_owned()
    }

    pub fn status(&self, execution: &str) -> Value {
        let (status, body) = self.json("GET", &format!("/executions/{execution}/status"), "");
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Asserts a 413 `LIMIT_EXCEEDED` whose message holds each of `words`.
pub fn assert_limit_exceeded(answer: (u16, Value), words: &[&str]) {
    let (status, body) = answer;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (413, Some("LIMIT_EXCEEDED")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    for word in words {
        assert!(message.contains(word), "{message:?} should contain {word:?}");
    }
}
