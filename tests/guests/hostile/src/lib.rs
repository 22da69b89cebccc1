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
//! - `path-escape`: with setting `other-source`, calls the Assets API with
//!   each of the fourteen `ESCAPES` (spellings that once reached another source, the
//!   token endpoint or the admin endpoints), `{own}` and `{other}` filled
//!   in. Reports `{"mode":"path-escape","outcomes":[...],"reason":"..."}`:
//!   one outcome per path, in order, `"invalid-path"` when the sandbox
//!   refused it, `"HTTP <status>"` when it was sent, else the error's kind;
//!   `reason` is the first refusal's text.
//! - `outbound-smuggle`: sends each of the eight requests of `smuggles` to setting
//!   `url` (header names and values that try to add a `Host` or a second
//!   request, framing and hop-by-hop headers), then one plain `GET`.
//!   Reports `{"mode":"outbound-smuggle","outcomes":[...],"reason":"..."}`,
//!   outcomes as above (`"invalid-request"`, `"HTTP <status>"`, ...), the
//!   plain `GET` last; `reason` is the first refusal's text.
//! - `tarpit`: one `GET` to setting `url` with the longest timeout the
//!   contract allows (`u32::MAX` ms). Reports
//!   `{"mode":"tarpit","waited-ms":<ms by the platform's clock>,"outcome":"..."}`.
//! - `progress-flood`: creates an execution on its own source, reports
//!   progress with a body of setting `bytes` (default 100000) bytes, then
//!   fails the execution. Reports
//!   `{"mode":"progress-flood","status":<u16>,"body":"..."}` (the progress
//!   call's answer).
//! - `storage-flood`: stores 60,000-byte values under new keys until the
//!   platform refuses one (at most setting `keys`, default 10000). Reports
//!   `{"mode":"storage-flood","stored":<n>,"error":"..."|null}`.
//! - `objects-flood`: creates an execution on its own source and sends
//!   chunks of setting `per-chunk` (default 400) objects, at most setting
//!   `chunks` (default 10), until one is refused; then fails the execution.
//!   Reports `{"mode":"objects-flood","statuses":[...],"body":"..."}` (the
//!   last answer's body).
//! - `read-setting`: reports `{"mode":"read-setting","value":<the setting
//!   named by setting probe-key, or null>}`.
//! - `log-forge`: writes a line to stdout that tries to forge a log line
//!   and colour the terminal (a carriage return, ANSI escapes, a newline
//!   and a right-to-left override), then reports `{"mode":"log-forge"}`.
//! - `clock-push`: waits `u64::MAX` ms through the `timer` import 1000
//!   times (each wait is cut at the invocation's limit) and reports
//!   `{"mode":"clock-push","moved-ms":<how far its own clock moved>}`.
//! - anything else, or unset: reports `{"mode":"none"}`.
//!
//! Built for wasm32 only; natively it is empty.

#[cfg(target_arch = "wasm32")]
mod guest {
    wit_bindgen::generate!({ world: "importer", path: "../../../wit" });

    use assets::scheduled_import::{assets_api, config, outbound_http, storage, timer};
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
                Some("path-escape") => path_escape(&event),
                Some("outbound-smuggle") => outbound_smuggle(),
                Some("tarpit") => tarpit(),
                Some("progress-flood") => progress_flood(&event),
                Some("storage-flood") => storage_flood(),
                Some("objects-flood") => objects_flood(&event),
                Some("read-setting") => json!({
                    "mode": "read-setting",
                    "value": config::get("probe-key").and_then(|key| config::get(&key)),
                })
                .to_string(),
                Some("log-forge") => {
                    println!("innocent\r\u{1b}[2K\u{1b}[31mFORGED level=ERROR\u{1b}[0m \u{202e}desrever");
                    json!({ "mode": "log-forge" }).to_string()
                }
                Some("clock-push") => {
                    let before = timer::now_ms();
                    for _ in 0..1000 {
                        timer::sleep_ms(u64::MAX);
                    }
                    json!({ "mode": "clock-push", "moved-ms": timer::now_ms().saturating_sub(before) }).to_string()
                }
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

    /// The paths `path-escape` tries, `{own}` and `{other}` filled in with
    /// the event's source and setting `other-source`.
    pub const ESCAPES: [&str; 14] = [
        // A tab inside a dot segment: a URL parser drops it and resolves `..`.
        "importsource/{own}/.\t./{other}",
        "importsource/{own}/.\t./.\t./.\t./.\t./.\t./.\t./.\t./_admin/occurrences",
        // An empty segment before `token`: the router skips it.
        "importsource/{own}//token",
        "importsource//{other}",
        "importsource/{other}/token",
        "importsource/{own}/%2e%2e/{other}",
        "importsource/{own}/%2E%2E%2F{other}",
        "importsource/{own}/%252e%252e/{other}",
        "importsource/{own}/\u{ff0e}\u{ff0e}/{other}",
        "importsource/{own}\u{ff0f}..\u{ff0f}{other}",
        "importsource/{own}/..\\{other}",
        "importsource/{own};x=1/executions",
        "importsource/{own}?x=1#/../../{other}",
        "importsource/{own}/\r\nX-Injected: 1",
    ];

    /// The outcome of an API call, in a word or two.
    fn api_outcome(result: &Result<assets_api::Response, assets_api::CallError>) -> String {
        match result {
            Ok(response) => format!("HTTP {}", response.status),
            Err(assets_api::CallError::InvalidPath(_)) => "invalid-path".into(),
            Err(assets_api::CallError::Unreachable(_)) => "unreachable".into(),
            Err(assets_api::CallError::Timeout(_)) => "timeout".into(),
        }
    }

    /// `path-escape`: each of [`ESCAPES`] as a GET.
    fn path_escape(event: &TriggerEvent) -> String {
        let Some(other) = config::get("other-source") else {
            return json!({ "mode": "path-escape", "error": "setting `other-source` is not set" }).to_string();
        };
        let mut reason = None;
        let outcomes: Vec<String> = ESCAPES
            .iter()
            .map(|template| {
                let path = template
                    .replace("{own}", &event.import_source_id)
                    .replace("{other}", &other);
                let result = assets_api::call(assets_api::Method::Get, &path, None);
                if let (Err(assets_api::CallError::InvalidPath(why)), None) = (&result, &reason) {
                    reason = Some(why.clone());
                }
                api_outcome(&result)
            })
            .collect();
        fit(|limit| {
            json!({
                "mode": "path-escape",
                "outcomes": outcomes,
                "reason": reason.as_deref().map(|r| cut(r, limit)),
            })
        })
    }

    /// The requests `outbound-smuggle` sends: method, headers, body.
    fn smuggles() -> Vec<(outbound_http::Method, Vec<(String, String)>, Option<Vec<u8>>)> {
        use outbound_http::Method::{Get, Post};
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
        };
        vec![
            (Get, h(&[("Host", "evil.example.net")]), None),
            (Get, h(&[("x-a", "1\r\nHost: evil.example.net")]), None),
            (Get, h(&[("x-a\r\nHost", "evil.example.net")]), None),
            (
                Get,
                h(&[("x-a", "1\r\n\r\nGET /second HTTP/1.1\r\nHost: evil\r\n\r\n")]),
                None,
            ),
            (
                Post,
                h(&[("Transfer-Encoding", "chunked")]),
                Some(b"0\r\n\r\nGET /second HTTP/1.1\r\nHost: evil\r\n\r\n".to_vec()),
            ),
            (
                Post,
                h(&[("Content-Length", "0")]),
                Some(b"GET /second HTTP/1.1\r\nHost: evil\r\n\r\n".to_vec()),
            ),
            (Get, h(&[("Connection", "Upgrade"), ("Upgrade", "h2c")]), None),
            (Get, h(&[("x-a", "nul\0byte")]), None),
        ]
    }

    /// The outcome of an outbound request, in a word or two.
    fn http_outcome(result: &Result<outbound_http::Response, outbound_http::HttpError>) -> String {
        match result {
            Ok(response) => format!("HTTP {}", response.status),
            Err(outbound_http::HttpError::InvalidRequest(_)) => "invalid-request".into(),
            Err(outbound_http::HttpError::InvalidUrl(_)) => "invalid-url".into(),
            Err(outbound_http::HttpError::Denied(_)) => "denied".into(),
            Err(outbound_http::HttpError::Timeout(_)) => "timeout".into(),
            Err(outbound_http::HttpError::Connection(_)) => "connection".into(),
        }
    }

    /// `outbound-smuggle`: each of [`smuggles`], then a plain GET.
    fn outbound_smuggle() -> String {
        let Some(url) = config::get("url") else {
            return json!({ "mode": "outbound-smuggle", "error": "setting `url` is not set" }).to_string();
        };
        let mut reason = None;
        let mut requests = smuggles();
        requests.push((outbound_http::Method::Get, vec![], None));
        let outcomes: Vec<String> = requests
            .into_iter()
            .map(|(method, headers, body)| {
                let request = outbound_http::Request {
                    method,
                    url: url.clone(),
                    headers,
                    body,
                    timeout_ms: Some(5000),
                };
                let result = outbound_http::send(&request);
                if let (Err(outbound_http::HttpError::InvalidRequest(why)), None) = (&result, &reason) {
                    reason = Some(why.clone());
                }
                http_outcome(&result)
            })
            .collect();
        fit(|limit| {
            json!({
                "mode": "outbound-smuggle",
                "outcomes": outcomes,
                "reason": reason.as_deref().map(|r| cut(r, limit)),
            })
        })
    }

    /// `tarpit`: one GET that asks to wait as long as it may.
    fn tarpit() -> String {
        let Some(url) = config::get("url") else {
            return json!({ "mode": "tarpit", "error": "setting `url` is not set" }).to_string();
        };
        let started = timer::now_ms();
        let result = outbound_http::send(&outbound_http::Request {
            method: outbound_http::Method::Get,
            url,
            headers: vec![],
            body: None,
            timeout_ms: Some(u32::MAX),
        });
        json!({
            "mode": "tarpit",
            "waited-ms": timer::now_ms().saturating_sub(started),
            "outcome": http_outcome(&result),
        })
        .to_string()
    }

    /// Creates a manual execution on `source`; its id, or the failure.
    fn create_execution(source: &str) -> Result<String, String> {
        let created = assets_api::call(
            assets_api::Method::Post,
            &format!("importsource/{source}/executions"),
            Some("{}"),
        )
        .map_err(|e| format!("{e:?}"))?;
        let body: Value = serde_json::from_str(&created.body).map_err(|e| e.to_string())?;
        body["links"]["cancel"]
            .as_str()
            .and_then(|link| link.rsplit('/').next())
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "no execution: HTTP {} {}",
                    created.status,
                    cut(&created.body, TEXT_LIMIT)
                )
            })
    }

    /// Fails execution `id` of `source`, so nothing is left ingesting.
    fn fail_execution(source: &str, id: &str, why: &str) {
        let _ = assets_api::call(
            assets_api::Method::Post,
            &format!("importsource/{source}/executions/{id}/history/failed"),
            Some(&json!({ "failureReason": why }).to_string()),
        );
    }

    /// `progress-flood`: one progress report of `bytes` bytes.
    fn progress_flood(event: &TriggerEvent) -> String {
        let source = &event.import_source_id;
        let id = match create_execution(source) {
            Ok(id) => id,
            Err(e) => return json!({ "mode": "progress-flood", "error": cut(&e, TEXT_LIMIT) }).to_string(),
        };
        let bytes = number_setting("bytes", 100_000);
        let body = json!({ "pad": "x".repeat(bytes.saturating_sub(10)) }).to_string();
        let answer = assets_api::call(
            assets_api::Method::Put,
            &format!("importsource/{source}/executions/{id}/progress"),
            Some(&body),
        );
        fail_execution(source, &id, "hostile test guest: progress-flood done");
        let (status, text) = match answer {
            Ok(r) => (r.status, r.body),
            Err(e) => (0, format!("{e:?}")),
        };
        fit(|limit| json!({ "mode": "progress-flood", "status": status, "body": cut(&text, limit) }))
    }

    /// `storage-flood`: 60,000-byte values until one is refused.
    fn storage_flood() -> String {
        let value = "v".repeat(60_000);
        let most = number_setting("keys", 10_000);
        let mut stored = 0;
        let mut error = None;
        for k in 0..most {
            match storage::set(&format!("flood-{k}"), &value) {
                Ok(()) => stored += 1,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        // Leave the storage as it was found.
        for k in 0..stored {
            storage::delete(&format!("flood-{k}"));
        }
        fit(
            |limit| json!({ "mode": "storage-flood", "stored": stored, "error": error.as_deref().map(|e| cut(e, limit)) }),
        )
    }

    /// `objects-flood`: chunks until one is refused.
    fn objects_flood(event: &TriggerEvent) -> String {
        let source = &event.import_source_id;
        let id = match create_execution(source) {
            Ok(id) => id,
            Err(e) => return json!({ "mode": "objects-flood", "error": cut(&e, TEXT_LIMIT) }).to_string(),
        };
        let per_chunk = number_setting("per-chunk", 400);
        let mut statuses = Vec::new();
        let mut last = String::new();
        for chunk in 0..number_setting("chunks", 10) {
            let objects: Vec<Value> = (0..per_chunk)
                .map(|i| json!({ "externalId": format!("c{chunk}-{i}"), "label": "x", "attributes": {} }))
                .collect();
            let body = json!({ "objectTypeId": "flood", "objects": objects }).to_string();
            match assets_api::call(
                assets_api::Method::Post,
                &format!("importsource/{source}/executions/{id}/data"),
                Some(&body),
            ) {
                Ok(r) => {
                    statuses.push(r.status);
                    last = r.body;
                    if r.status >= 400 {
                        break;
                    }
                }
                Err(e) => {
                    last = format!("{e:?}");
                    break;
                }
            }
        }
        fail_execution(source, &id, "hostile test guest: objects-flood done");
        fit(|limit| json!({ "mode": "objects-flood", "statuses": statuses, "body": cut(&last, limit) }))
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
