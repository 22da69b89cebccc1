//! A test importer that attacks the host on purpose, for the serve-mode
//! security tests. The app setting `hostile` picks the attack; the guest
//! never creates an execution of its own, and reports what it observed as
//! the run's failure reason: `Err(RunError::ExecutionNotCreated(json))`, where
//! `json` is one compact JSON object of fewer than 1000 bytes. Response
//! bodies and error texts in it are cut to their first 200 characters (and
//! shorter still, for every entry alike, when the whole would not fit).
//!
//! The modes, and what each reports (the contract the tests rely on):
//!
//! - `other-source`: with setting `other-source` = another import source's
//!   id, calls the Assets API on that source: `GET importsource/{other}`,
//!   `POST importsource/{other}/executions` (body `{"scheduled":true}`),
//!   `GET importsource/{other}/executions/status` and
//!   `DELETE importsource/{other}/executions/00000000-0000-0000-0000-000000000000`;
//!   then `GET importsource/{unknown}` for the made-up id
//!   `0a0a0a0a-0000-4000-8000-000000000000` and `GET importsource/{own}` for
//!   the event's import source. Reports
//!   `{"mode":"other-source","other":[call,call,call,call],"unknown":call,"own":call}`,
//!   each `call` being `{"call":"<METHOD> <path>","status":<u16>,"body":"..."}`
//!   or, when the call got no answer, `{"call":"...","error":"<CallError, Debug>"}`.
//!   Without the setting: `{"mode":"other-source","error":"..."}`.
//! - `callback-ssrf`: `POST importsource/{own}/importschedule` with a daily
//!   schedule (body `{"callbackUrl":URL,"runFrequency":"DAILY",
//!   "startTime":"2030-01-01T09:00:00Z","timezone":"UTC"}`) for each URL in
//!   turn: `http://127.0.0.1:9/x`, `http://localhost:9/x`,
//!   `http://169.254.169.254/latest/meta-data/`, `http://[::1]:9/x`,
//!   `http://10.0.0.1/x`. Reports
//!   `{"mode":"callback-ssrf","attempts":[attempt,...]}`, each `attempt` being
//!   `{"url":"...","status":<u16>,"body":"..."}` or `{"url":"...","error":"..."}`.
//! - `http-flood`: sends setting `requests` (default 150) `GET`s to setting
//!   `url` through `outbound-http`, stopping at the first error. Reports
//!   `{"mode":"http-flood","sent":<answered requests>,"error":"<HttpError, Debug>"|null}`
//!   (any status counts as answered; without `url`, `sent` is 0 and `error`
//!   says so).
//! - `big-answer`: fails with a reason of setting `bytes` (default 6000000)
//!   `x` characters and no JSON, to test the host's limit on what an
//!   invocation may return.
//! - anything else, or unset: reports `{"mode":"none"}`.
//!
//! Built for wasm32 only; natively it is empty.

#[cfg(target_arch = "wasm32")]
mod guest {
    wit_bindgen::generate!({ world: "importer", path: "../../../wit" });

    use assets::scheduled_import::{assets_api, config, outbound_http};
    use exports::assets::scheduled_import::import_callback::{Guest, RunError, RunOutcome, TriggerEvent};
    use serde_json::{json, Value};

    /// An import source id that exists nowhere, for `other-source`.
    const UNKNOWN_SOURCE: &str = "0a0a0a0a-0000-4000-8000-000000000000";

    /// The callback URLs `callback-ssrf` tries: loopback, link-local
    /// metadata and private addresses.
    const SSRF_URLS: [&str; 5] = [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/x",
        "http://10.0.0.1/x",
    ];

    /// Reports are shorter than this many bytes.
    const REPORT_LIMIT: usize = 1000;

    /// Most characters of a body or error text a report keeps.
    const TEXT_LIMIT: usize = 200;

    /// The hostile importer.
    struct Hostile;

    impl Guest for Hostile {
        fn on_trigger(event: TriggerEvent) -> Result<RunOutcome, RunError> {
            let report = match config::get("hostile").as_deref() {
                Some("other-source") => other_source(&event),
                Some("callback-ssrf") => callback_ssrf(&event),
                Some("http-flood") => http_flood(),
                Some("big-answer") => {
                    let bytes = number_setting("bytes", 6_000_000);
                    return Err(RunError::ExecutionNotCreated("x".repeat(bytes)));
                }
                _ => json!({ "mode": "none" }).to_string(),
            };
            Err(RunError::ExecutionNotCreated(report))
        }
    }

    /// One Assets API call and what came of it.
    struct Call {
        /// `"<METHOD> <path>"`.
        call: String,
        /// Status and body, or the `CallError` in Debug form.
        outcome: Result<(u16, String), String>,
    }

    impl Call {
        /// Makes the call.
        fn make(method: assets_api::Method, path: String, body: Option<&str>) -> Call {
            let name = match method {
                assets_api::Method::Get => "GET",
                assets_api::Method::Post => "POST",
                assets_api::Method::Put => "PUT",
                assets_api::Method::Delete => "DELETE",
            };
            let outcome = assets_api::call(method, &path, body)
                .map(|r| (r.status, r.body))
                .map_err(|e| format!("{e:?}"));
            Call {
                call: format!("{name} {path}"),
                outcome,
            }
        }

        /// The call as a report entry under `label_key` (`call` or `url`),
        /// texts cut to `limit` characters.
        fn entry(&self, label_key: &str, label: &str, limit: usize) -> Value {
            let mut entry = serde_json::Map::new();
            entry.insert(label_key.into(), label.into());
            match &self.outcome {
                Ok((status, body)) => {
                    entry.insert("status".into(), (*status).into());
                    entry.insert("body".into(), cut(body, limit).into());
                }
                Err(error) => {
                    entry.insert("error".into(), cut(error, limit).into());
                }
            }
            Value::Object(entry)
        }
    }

    /// `other-source`: calls on another source, an unknown one and our own.
    fn other_source(event: &TriggerEvent) -> String {
        let Some(other) = config::get("other-source") else {
            return json!({ "mode": "other-source", "error": "setting `other-source` is not set" }).to_string();
        };
        use assets_api::Method::{Delete, Get, Post};
        let base = format!("importsource/{other}");
        let others = [
            Call::make(Get, base.clone(), None),
            Call::make(Post, format!("{base}/executions"), Some(r#"{"scheduled":true}"#)),
            Call::make(Get, format!("{base}/executions/status"), None),
            Call::make(
                Delete,
                format!("{base}/executions/00000000-0000-0000-0000-000000000000"),
                None,
            ),
        ];
        let unknown = Call::make(Get, format!("importsource/{UNKNOWN_SOURCE}"), None);
        let own = Call::make(Get, format!("importsource/{}", event.import_source_id), None);
        fit(|limit| {
            json!({
                "mode": "other-source",
                "other": others.iter().map(|c| c.entry("call", &c.call, limit)).collect::<Vec<_>>(),
                "unknown": unknown.entry("call", &unknown.call, limit),
                "own": own.entry("call", &own.call, limit),
            })
        })
    }

    /// `callback-ssrf`: schedules on our own source with internal callback URLs.
    fn callback_ssrf(event: &TriggerEvent) -> String {
        let path = format!("importsource/{}/importschedule", event.import_source_id);
        let attempts: Vec<(&str, Call)> = SSRF_URLS
            .iter()
            .map(|&url| {
                let body = json!({
                    "runFrequency": "DAILY",
                    "startTime": "2030-01-01T09:00:00Z",
                    "timezone": "UTC",
                    "callbackUrl": url,
                })
                .to_string();
                (url, Call::make(assets_api::Method::Post, path.clone(), Some(&body)))
            })
            .collect();
        fit(|limit| {
            json!({
                "mode": "callback-ssrf",
                "attempts": attempts.iter().map(|(url, c)| c.entry("url", url, limit)).collect::<Vec<_>>(),
            })
        })
    }

    /// `http-flood`: `requests` GETs to `url`, until the first error.
    fn http_flood() -> String {
        let Some(url) = config::get("url") else {
            return json!({ "mode": "http-flood", "sent": 0, "error": "setting `url` is not set" }).to_string();
        };
        let requests = number_setting("requests", 150);
        let request = outbound_http::Request {
            method: outbound_http::Method::Get,
            url,
            headers: vec![],
            body: None,
            timeout_ms: None,
        };
        let mut sent: u64 = 0;
        let mut error = None;
        for _ in 0..requests {
            match outbound_http::send(&request) {
                Ok(_) => sent += 1,
                Err(e) => {
                    error = Some(cut(&format!("{e:?}"), TEXT_LIMIT));
                    break;
                }
            }
        }
        json!({ "mode": "http-flood", "sent": sent, "error": error }).to_string()
    }

    /// Setting `key` as a number; `default` when unset or not a number.
    fn number_setting(key: &str, default: usize) -> usize {
        config::get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    }

    /// The report `render` makes with texts of at most 200 characters, or
    /// with shorter texts where that is too long for [`REPORT_LIMIT`].
    fn fit(render: impl Fn(usize) -> Value) -> String {
        let mut limit = TEXT_LIMIT;
        loop {
            let report = render(limit).to_string();
            if report.len() < REPORT_LIMIT || limit == 0 {
                return report;
            }
            limit /= 2;
        }
    }

    /// The first `limit` characters of `text`.
    fn cut(text: &str, limit: usize) -> String {
        text.chars().take(limit).collect()
    }

    export!(Hostile);
}
