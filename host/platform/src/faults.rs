//! Fault injection: a plan of failures for the Assets API and the built-in
//! data source, deterministic for a seed.
//!
//! A plan is JSON (from `--faults FILE` or inline with `--faults-json`):
//!
//! ```json
//! {"seed": 1,
//!  "assetsApi": [
//!    {"endpoint": "data", "fault": "status", "status": 503, "rate": 0.1},
//!    {"endpoint": "any", "fault": "status", "status": 429, "retryAfter": "2", "rate": 0.05},
//!    {"endpoint": "any", "fault": "reset", "rate": 0.02},
//!    {"endpoint": "completed", "fault": "timeout", "rate": 0.05},
//!    {"endpoint": "create", "fault": "lost-answer", "rate": 0.05},
//!    {"endpoint": "data", "fault": "latency", "ms": 200, "rate": 0.2}],
//!  "source": [
//!    {"fault": "timeout", "rate": 0.05},
//!    {"fault": "busy", "retryAfterMs": 2000, "rate": 0.02},
//!    {"fault": "bad-page", "rate": 0.01},
//!    {"fault": "fail-after-page", "page": 3},
//!    {"fault": "loop", "rate": 0.01}]}
//! ```
//!
//! Endpoints: `create`, `data`, `completed`, `failed`, `status`, `any`.
//! `status` answers with that code instead of the API (no processing);
//! `reset` drops the connection before the request arrives; `timeout`
//! loses the answer: for `data`, `completed` and `failed` the request *was*
//! processed (the case retries must survive without duplicating data), for
//! the others it was not; `lost-answer` processes the request on every
//! endpoint, `create` included, then breaks the connection before the
//! answer arrives (the case that leaves an orphan execution when a retry
//! is not careful); `latency` waits `ms` on the platform clock first.
//!
//! Source faults: `timeout`, `connection` and `bad-page` fail a page read;
//! `busy` fails it as a throttled API does (`source-error::busy`, with
//! `retryAfterMs` as the third party's `Retry-After` when given);
//! `fail-after-page` times out every page after `page`; `loop` answers a
//! page with the cursor of an earlier page, as an API whose links go round
//! in a circle does.

use crate::assets::Response;
use crate::clock::Clock;
use assets_runtime::bindings::assets_api::{self, CallError, Method};
use assets_runtime::bindings::data_source::{BusyError, Page, SourceError};
use assets_runtime::{ApiPath, AssetsBackend, DataSourceProvider};
use serde::Deserialize;
use std::sync::{Arc, Mutex};

/// A fault plan.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPlan {
    /// Seed of the plan's random choices.
    #[serde(default)]
    pub seed: u64,
    /// Faults of the Assets API.
    #[serde(default)]
    pub assets_api: Vec<ApiFault>,
    /// Faults of the data source.
    #[serde(default)]
    pub source: Vec<SourceFault>,
}

/// One kind of Assets API fault.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiFault {
    /// Which endpoint: `create`, `data`, `completed`, `failed`, `status` or `any`.
    pub endpoint: String,
    /// `status`, `reset`, `timeout`, `lost-answer` or `latency`.
    pub fault: String,
    /// For `status`: the code (e.g. 429, 500, 503).
    #[serde(default)]
    pub status: Option<u16>,
    /// For `status` 429: the `Retry-After` value (seconds or an HTTP date).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// For `latency`: milliseconds.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Chance per matching call, 0 to 1.
    #[serde(default = "always")]
    pub rate: f64,
}

/// One kind of data-source fault.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceFault {
    /// `timeout`, `connection`, `busy`, `bad-page`, `fail-after-page` or `loop`.
    pub fault: String,
    /// For `fail-after-page`: pages after this one (1-based) time out.
    #[serde(default)]
    pub page: Option<u64>,
    /// For `busy`: the wait the source asks for, in milliseconds; none for a
    /// source that does not say.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Chance per page read, 0 to 1 (not used by `fail-after-page`).
    #[serde(default = "always")]
    pub rate: f64,
}

fn always() -> f64 {
    1.0
}

impl FaultPlan {
    /// Reads and checks a plan.
    pub fn parse(json: &str) -> anyhow::Result<FaultPlan> {
        let plan: FaultPlan = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("fault plan is not valid: {e} (see `assets-host chaos --help`)"))?;
        for f in &plan.assets_api {
            anyhow::ensure!(
                matches!(
                    f.endpoint.as_str(),
                    "create" | "data" | "completed" | "failed" | "status" | "any"
                ),
                "fault endpoint {:?} must be create, data, completed, failed, status or any",
                f.endpoint
            );
            match f.fault.as_str() {
                "status" => anyhow::ensure!(
                    f.status.is_some_and(|s| (400..600).contains(&s)),
                    "a status fault needs \"status\": a 4xx or 5xx code"
                ),
                "latency" => anyhow::ensure!(f.ms.is_some(), "a latency fault needs \"ms\""),
                "reset" | "timeout" | "lost-answer" => {}
                other => anyhow::bail!("fault {other:?} must be status, reset, timeout, lost-answer or latency"),
            }
            anyhow::ensure!((0.0..=1.0).contains(&f.rate), "rate {} must be from 0 to 1", f.rate);
        }
        for f in &plan.source {
            match f.fault.as_str() {
                "timeout" | "connection" | "busy" | "bad-page" | "loop" => {}
                "fail-after-page" => anyhow::ensure!(f.page.is_some(), "fail-after-page needs \"page\""),
                other => {
                    anyhow::bail!(
                        "source fault {other:?} must be timeout, connection, busy, bad-page, fail-after-page or loop"
                    )
                }
            }
            anyhow::ensure!((0.0..=1.0).contains(&f.rate), "rate {} must be from 0 to 1", f.rate);
        }
        Ok(plan)
    }
}

/// The endpoint a path names.
fn endpoint(path: &ApiPath) -> &'static str {
    let path = path.path();
    if path.ends_with("/executions") {
        "create"
    } else if path.ends_with("/data") {
        "data"
    } else if path.ends_with("/history/completed") {
        "completed"
    } else if path.ends_with("/history/failed") {
        "failed"
    } else {
        "status"
    }
}

/// The Assets API with faults.
pub struct FaultyAssets {
    inner: Arc<dyn AssetsBackend>,
    faults: Vec<ApiFault>,
    rng: Mutex<fastrand::Rng>,
    clock: Arc<dyn Clock>,
}

impl FaultyAssets {
    /// Wraps `inner` with `plan`'s API faults; `salt` varies the random
    /// sequence between wrappers that share a plan.
    pub fn new(inner: Arc<dyn AssetsBackend>, plan: &FaultPlan, salt: u64, clock: Arc<dyn Clock>) -> FaultyAssets {
        FaultyAssets {
            inner,
            faults: plan.assets_api.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(
                plan.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )),
            clock,
        }
    }
}

impl AssetsBackend for FaultyAssets {
    fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<assets_api::Response, CallError> {
        self.call_for(method, path, body, None)
    }

    fn call_for(
        &self,
        method: Method,
        path: &ApiPath,
        body: Option<&str>,
        delivery: Option<&str>,
    ) -> Result<assets_api::Response, CallError> {
        let endpoint = endpoint(path);
        let fired: Vec<ApiFault> = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            self.faults
                .iter()
                .filter(|f| f.endpoint == "any" || f.endpoint == endpoint)
                .filter(|f| rng.f64() < f.rate)
                .cloned()
                .collect()
        };
        for fault in &fired {
            match fault.fault.as_str() {
                "latency" => self
                    .clock
                    .sleep(std::time::Duration::from_millis(fault.ms.unwrap_or(0))),
                "status" => {
                    let status = fault.status.unwrap_or(500);
                    let mut response = Response::json(
                        status,
                        &serde_json::json!({"result": "error", "errorCode": "INJECTED", "message": format!("injected HTTP {status}")}),
                    );
                    if let Some(after) = &fault.retry_after {
                        response.headers.push(("retry-after".into(), after.clone()));
                    }
                    return Ok(response.into());
                }
                "reset" => return Err(CallError::Unreachable("connection reset by peer (injected)".into())),
                "lost-answer" => {
                    let _ = self.inner.call_for(method, path, body, delivery);
                    return Err(CallError::Unreachable(
                        "connection reset after the request was sent; no answer (injected)".into(),
                    ));
                }
                "timeout" => {
                    if matches!(endpoint, "data" | "completed" | "failed") {
                        // Processed, but the answer is lost on the way back.
                        let _ = self.inner.call_for(method, path, body, delivery);
                    }
                    return Err(CallError::Timeout("no answer within 30 s (injected)".into()));
                }
                _ => {}
            }
        }
        self.inner.call_for(method, path, body, delivery)
    }
}

/// A data source with faults.
pub struct FaultySource {
    inner: Arc<dyn DataSourceProvider>,
    faults: Vec<SourceFault>,
    page_size: u64,
    rng: Mutex<fastrand::Rng>,
}

impl FaultySource {
    /// Wraps `inner` (whose pages hold `page_size` objects) with `plan`'s
    /// source faults.
    pub fn new(inner: Arc<dyn DataSourceProvider>, page_size: u64, plan: &FaultPlan, salt: u64) -> FaultySource {
        FaultySource {
            inner,
            faults: plan.source.clone(),
            page_size: page_size.max(1),
            rng: Mutex::new(fastrand::Rng::with_seed(
                plan.seed ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 1,
            )),
        }
    }
}

impl DataSourceProvider for FaultySource {
    fn next_page(&self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let page = cursor.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0) / self.page_size + 1;
        let at = cursor.unwrap_or("start");
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut looped = false;
        for fault in &self.faults {
            let hit = match fault.fault.as_str() {
                "fail-after-page" => page > fault.page.unwrap_or(u64::MAX),
                _ => rng.f64() < fault.rate,
            };
            if hit && fault.fault == "loop" {
                looped = true;
            } else if hit {
                return Err(match fault.fault.as_str() {
                    "connection" => {
                        SourceError::Connection(format!("page {page} (cursor {at}): connection refused (injected)"))
                    }
                    "busy" => SourceError::Busy(BusyError {
                        message: format!("page {page} (cursor {at}): answered 429 Too Many Requests (injected)"),
                        retry_after_ms: fault.retry_after_ms,
                    }),
                    "bad-page" => SourceError::BadResponse(format!(
                        "page {page} (cursor {at}): body is not valid JSON (injected)"
                    )),
                    _ => SourceError::Timeout(format!("page {page} (cursor {at}): no answer within 30 s (injected)")),
                });
            }
        }
        drop(rng);
        let mut read = self.inner.next_page(cursor)?;
        if looped && page >= 3 && read.next_cursor.is_some() {
            // Back to page 2: a cursor this run has read already (A → B → A).
            read.next_cursor = Some(self.page_size.to_string());
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SyntheticSource;

    #[test]
    fn a_busy_source_fault_carries_the_wait_it_asks_for() {
        let plan = FaultPlan::parse(r#"{"source":[{"fault":"busy","retryAfterMs":2000}]}"#).unwrap();
        let source = FaultySource::new(Arc::new(SyntheticSource::default()), 100, &plan, 0);
        let Err(SourceError::Busy(busy)) = source.next_page(None) else {
            panic!("not busy")
        };
        assert_eq!(busy.retry_after_ms, Some(2000));
        assert!(busy.message.contains("429"), "{}", busy.message);
        let plan = FaultPlan::parse(r#"{"source":[{"fault":"busy"}]}"#).unwrap();
        let source = FaultySource::new(Arc::new(SyntheticSource::default()), 100, &plan, 0);
        assert!(matches!(
            source.next_page(None),
            Err(SourceError::Busy(BusyError {
                retry_after_ms: None,
                ..
            }))
        ));
    }
}
