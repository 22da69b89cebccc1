//! One page: request it, check the answer, map its records, find the next.
//!
//! The cursor the importer hands back is the URL of the page to read, so the
//! source keeps no state between calls, and an API whose links go round in a
//! circle hands the importer a cursor it has already read, which it refuses.
//!
//! The configured headers (usually credentials) go only to the scheme, host
//! and port of `source-url`: a next link that leaves them is followed
//! without them. Messages name the call with credentials hidden
//! ([`assets_redact`]: the secrets the settings registered, by value and in
//! every form, then the patterns) and quote at most [`EXCERPT_CHARS`]
//! characters of an unusable answer, redacted the same way *before* it is
//! cut, so a cut never leaves part of a secret behind.

use crate::mapping::Object;
use crate::settings::Settings;
use serde_json::Value;
use url::Url;

/// A third-party answer of any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why a request got no answer (the `outbound-http` error cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// The egress allowlist refused the URL.
    Denied(String),
    /// The URL is not a valid http(s) URL.
    InvalidUrl(String),
    /// The platform would not send the request as configured (a header it
    /// sets itself, or one that is not valid HTTP); names the header.
    InvalidRequest(String),
    /// No answer in time.
    Timeout(String),
    /// The connection failed.
    Connection(String),
}

/// HTTP as the source needs it.
pub trait Http {
    /// `GET url` with `headers`, giving up after `timeout_ms`.
    fn get(&mut self, url: &str, headers: &[(String, String)], timeout_ms: u32) -> Result<Response, HttpFailure>;
}

/// Why a page could not be read (the `data-source` error cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The API did not answer in time.
    Timeout(String),
    /// The API could not be reached, or answered 5xx other than 503 (worth
    /// a retry).
    Connection(String),
    /// The API is throttling or briefly unavailable: it answered 429 or 503
    /// (worth a retry, after `retry_after_ms` when it said).
    Busy {
        /// The call and the answer.
        message: String,
        /// Its `Retry-After`, in milliseconds from its answer ([`retry_after_ms`]).
        retry_after_ms: Option<u64>,
    },
    /// The API answered, but not with usable data.
    BadResponse(String),
    /// The egress allowlist refused the URL.
    Denied(String),
    /// A setting is missing or contradictory.
    Config(String),
    /// Anything else.
    Other(String),
}

/// One page of objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The object type of every object.
    pub object_type_id: String,
    /// The objects, in the API's order.
    pub objects: Vec<Object>,
    /// Where to continue; `None` after the last page.
    pub next_cursor: Option<String>,
}

/// Up to this many characters of an unusable body are quoted in errors.
pub const EXCERPT_CHARS: usize = 120;

/// The start of an answer's body for a message: redacted whole, then cut
/// ([`assets_redact::excerpt`]).
fn excerpt(body: &[u8]) -> String {
    assets_redact::excerpt(&String::from_utf8_lossy(body), EXCERPT_CHARS)
}

fn parse_cursor(cursor: &str) -> Result<Url, SourceError> {
    Url::parse(cursor)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            SourceError::Other(assets_redact::redact(&format!(
                "cursor {cursor:?} was not made by this source"
            )))
        })
}

/// True when `url` has the scheme, host and port of `configured`.
pub fn same_origin(url: &Url, configured: &Url) -> bool {
    url.scheme() == configured.scheme()
        && url.host_str() == configured.host_str()
        && url.port_or_known_default() == configured.port_or_known_default()
}

/// How long an answer's `Retry-After` asks to wait, in milliseconds: its
/// delay in seconds, or its HTTP date less the answer's own `Date` (RFC 9110
/// §10.2.3). The server's two clock readings are compared with each other,
/// never with this machine's clock, which may differ from the server's and,
/// in a simulation, is not the wall clock. `None` when there is no
/// `Retry-After`, it does not parse, or a date comes without a `Date`; a date
/// already past is 0.
pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let sent = httpdate::parse_http_date(header("date")?).ok()?;
    let wait = at.duration_since(sent).unwrap_or_default();
    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the page at `cursor` (`None`: the first).
pub fn next_page(settings: &Settings, http: &mut impl Http, cursor: Option<&str>) -> Result<Page, SourceError> {
    let url = match cursor {
        None => settings.pagination.first_url(&settings.url),
        Some(cursor) => parse_cursor(cursor)?,
    };
    let call = assets_redact::redact(&format!("GET {url}"));
    // Credentials stay with the origin they were configured for.
    let headers: &[(String, String)] = if same_origin(&url, &settings.url) {
        &settings.headers
    } else {
        &[]
    };
    let response = http
        .get(url.as_str(), headers, settings.timeout_ms)
        .map_err(|failure| match failure {
            HttpFailure::Timeout(_) => {
                SourceError::Timeout(format!("{call}: no answer within {} ms", settings.timeout_ms))
            }
            HttpFailure::Connection(why) => SourceError::Connection(assets_redact::redact(&format!("{call}: {why}"))),
            HttpFailure::Denied(why) => SourceError::Denied(assets_redact::redact(&why)),
            HttpFailure::InvalidUrl(why) => {
                SourceError::BadResponse(assets_redact::redact(&format!("{call}: invalid URL ({why})")))
            }
            // The configured headers are at fault: the operator's to fix.
            HttpFailure::InvalidRequest(why) => {
                SourceError::Config(assets_redact::redact(&format!("{call}: source-headers: {why}")))
            }
        })?;
    match response.status {
        200..=299 => {}
        429 | 503 => {
            return Err(SourceError::Busy {
                message: format!("{call} answered {}: {}", response.status, excerpt(&response.body)),
                retry_after_ms: retry_after_ms(&response.headers),
            })
        }
        500..=599 => {
            return Err(SourceError::Connection(format!(
                "{call} answered {}: {}",
                response.status,
                excerpt(&response.body)
            )))
        }
        status => {
            return Err(SourceError::BadResponse(format!(
                "{call} answered {status}: {}",
                excerpt(&response.body)
            )))
        }
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|e| {
        SourceError::BadResponse(format!(
            "{call}: the body is not JSON ({e}): {}",
            excerpt(&response.body)
        ))
    })?;
    let records: &[Value] = match &settings.records {
        None => body.as_array().map(Vec::as_slice).ok_or_else(|| {
            SourceError::BadResponse(format!(
                "{call}: the body is not a list of records; set source-records to the path of the list"
            ))
        })?,
        Some(path) => match path.resolve(&body).as_slice() {
            [Value::Array(items)] => items.as_slice(),
            _ => {
                return Err(SourceError::BadResponse(format!(
                    "{call}: no list of records at `{path}` (source-records): {}",
                    excerpt(&response.body)
                )))
            }
        },
    };
    let objects = records
        .iter()
        .enumerate()
        .map(|(i, record)| settings.mapping.map(record, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| SourceError::BadResponse(assets_redact::redact(&format!("{call}: {why}"))))?;
    let next = settings
        .pagination
        .next_url(&url, &response.headers, &body, records.len())
        .map_err(|why| SourceError::BadResponse(assets_redact::redact(&format!("{call}: {why}"))))?;
    if next.as_ref() == Some(&url) {
        return Err(SourceError::BadResponse(format!(
            "{call}: the next page is this page again; the API's pagination does not advance"
        )));
    }
    Ok(Page {
        object_type_id: settings.mapping.object_type_id.clone(),
        objects,
        next_cursor: next.map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    /// A NetBox-like device list of `total` devices, `limit` a page.
    struct NetBox {
        total: usize,
        calls: Vec<String>,
        fail: Option<(usize, HttpFailure)>,
        status: Option<(usize, u16, &'static str)>,
    }

    impl NetBox {
        fn new(total: usize) -> NetBox {
            NetBox {
                total,
                calls: Vec::new(),
                fail: None,
                status: None,
            }
        }
    }

    impl Http for NetBox {
        fn get(&mut self, url: &str, _: &[(String, String)], _: u32) -> Result<Response, HttpFailure> {
            self.calls.push(url.to_owned());
            let call = self.calls.len();
            if let Some((n, failure)) = &self.fail {
                if *n == call {
                    return Err(failure.clone());
                }
            }
            if let Some((n, status, body)) = self.status {
                if n == call {
                    return Ok(Response {
                        status,
                        headers: vec![],
                        body: body.into(),
                    });
                }
            }
            let url = Url::parse(url).unwrap();
            let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
            let limit: usize = q["limit"].parse().unwrap();
            let offset: usize = q.get("offset").map_or(0, |o| o.parse().unwrap());
            let end = (offset + limit).min(self.total);
            let results: Vec<Value> = (offset..end)
                .map(|i| json!({"id": i, "name": format!("dev-{i}"), "site": {"name": "ams1"}}))
                .collect();
            let next = (end < self.total)
                .then(|| format!("https://netbox.example.com/api/dcim/devices/?limit={limit}&offset={end}"));
            let body = json!({"count": self.total, "next": next, "previous": null, "results": results});
            Ok(Response {
                status: 200,
                headers: vec![],
                body: body.to_string().into_bytes(),
            })
        }
    }

    fn settings() -> Settings {
        crate::settings::tests::netbox()
    }

    fn read_all(api: &mut NetBox) -> Result<Vec<Object>, SourceError> {
        let settings = settings();
        let mut cursor = None;
        let mut objects = Vec::new();
        loop {
            let page = next_page(&settings, api, cursor.as_deref())?;
            objects.extend(page.objects);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(objects),
            }
        }
    }

    #[test]
    fn every_record_is_read_once_across_pages() {
        let mut api = NetBox::new(137);
        let objects = read_all(&mut api).unwrap();
        assert_eq!(api.calls.len(), 3);
        let ids: Vec<String> = objects.iter().map(|o| o.external_id.clone()).collect();
        let expected: Vec<String> = (0..137).map(|i| i.to_string()).collect();
        assert_eq!(ids, expected);
        assert_eq!(objects[5].attributes, vec![("site".into(), vec!["ams1".into()])]);
    }

    #[test]
    fn failures_become_source_errors_naming_the_call() {
        let mut api = NetBox::new(137);
        api.fail = Some((2, HttpFailure::Timeout("slow".into())));
        let e = read_all(&mut api).unwrap_err();
        assert_eq!(
            e,
            SourceError::Timeout(
                "GET https://netbox.example.com/api/dcim/devices/?limit=50&offset=50: no answer within 30000 ms".into()
            )
        );
        let mut api = NetBox::new(137);
        api.status = Some((1, 502, "bad gateway"));
        assert!(
            matches!(read_all(&mut api).unwrap_err(), SourceError::Connection(m) if m.contains("answered 502: bad gateway"))
        );
        let mut api = NetBox::new(137);
        api.status = Some((1, 503, "maintenance"));
        assert!(
            matches!(read_all(&mut api).unwrap_err(), SourceError::Busy { message, .. } if message.contains("answered 503: maintenance"))
        );
        let mut api = NetBox::new(137);
        api.status = Some((1, 404, "{\"detail\":\"Not found.\"}"));
        assert!(matches!(read_all(&mut api).unwrap_err(), SourceError::BadResponse(m) if m.contains("answered 404")));
        let mut api = NetBox::new(137);
        api.status = Some((1, 200, "<html>login</html>"));
        assert!(
            matches!(read_all(&mut api).unwrap_err(), SourceError::BadResponse(m) if m.contains("not JSON") && m.contains("<html>"))
        );
        let mut api = NetBox::new(137);
        api.fail = Some((1, HttpFailure::Denied("not allowed".into())));
        assert_eq!(
            read_all(&mut api).unwrap_err(),
            SourceError::Denied("not allowed".into())
        );
    }

    #[test]
    fn a_link_back_to_the_same_page_is_refused() {
        struct Loop;
        impl Http for Loop {
            fn get(&mut self, url: &str, _: &[(String, String)], _: u32) -> Result<Response, HttpFailure> {
                Ok(Response {
                    status: 200,
                    headers: vec![],
                    body: json!({"next": url, "results": []}).to_string().into_bytes(),
                })
            }
        }
        let e = next_page(&settings(), &mut Loop, None).unwrap_err();
        assert!(matches!(e, SourceError::BadResponse(m) if m.contains("does not advance")));
    }

    #[test]
    fn a_foreign_cursor_is_refused() {
        let e = next_page(&settings(), &mut NetBox::new(1), Some("page-two")).unwrap_err();
        assert!(matches!(e, SourceError::Other(m) if m.contains("not made by this source")));
    }

    type Headers = Vec<(String, String)>;

    /// Answers scripted pages and records the headers each request carried.
    struct Recorder {
        seen: Vec<(String, Headers)>,
        pages: Vec<(u16, Headers, Value)>,
    }

    impl Http for Recorder {
        fn get(&mut self, url: &str, headers: &[(String, String)], _: u32) -> Result<Response, HttpFailure> {
            self.seen.push((url.to_owned(), headers.to_vec()));
            let (status, headers, body) = self.pages.remove(0);
            Ok(Response {
                status,
                headers,
                body: body.to_string().into_bytes(),
            })
        }
    }

    fn with(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Settings::read(|k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn link_header_pages_are_followed_and_credentials_stay_with_their_origin() {
        let settings = with(&[
            ("source-url", "https://api.example.com/v1/users?limit=2"),
            ("source-pagination", "link-header"),
            ("source-headers", "Authorization: SSWS secret-1"),
            ("map-object-type", "user"),
            ("map-external-id", "id"),
            ("map-label", "name"),
        ]);
        let link = |to: &str| vec![("link".to_owned(), format!("<{to}>; rel=\"next\""))];
        let mut api = Recorder {
            seen: vec![],
            pages: vec![
                (
                    200,
                    link("/v1/users?after=2&limit=2"),
                    json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]),
                ),
                (
                    200,
                    link("https://api.example.com:8443/v1/users?after=4"),
                    json!([{"id": 3, "name": "c"}]),
                ),
                (
                    200,
                    link("http://api.example.com/v1/users?after=5"),
                    json!([{"id": 4, "name": "d"}]),
                ),
                (200, vec![], json!([{"id": 5, "name": "e"}])),
            ],
        };
        let mut cursor = None;
        let mut ids = Vec::new();
        loop {
            let page = next_page(&settings, &mut api, cursor.as_deref()).unwrap();
            ids.extend(page.objects.into_iter().map(|o| o.external_id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(ids, ["1", "2", "3", "4", "5"]);
        let carried: Vec<bool> = api.seen.iter().map(|(_, h)| !h.is_empty()).collect();
        assert_eq!(
            carried,
            [true, true, false, false],
            "another port or scheme gets no credentials"
        );
        assert_eq!(api.seen[1].0, "https://api.example.com/v1/users?after=2&limit=2");
    }

    #[test]
    fn a_page_capped_below_the_asked_size_does_not_end_the_import() {
        // Asked for 100 a page, the API gives 30 and says nothing.
        let settings = with(&[
            ("source-url", "https://api.example.com/hosts"),
            ("source-pagination", "offset"),
            ("source-limit", "100"),
            ("map-object-type", "host"),
            ("map-external-id", "id"),
            ("map-label", "id"),
        ]);
        struct Capped;
        impl Http for Capped {
            fn get(&mut self, url: &str, _: &[(String, String)], _: u32) -> Result<Response, HttpFailure> {
                let url = Url::parse(url).unwrap();
                let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
                let offset: usize = q["offset"].parse().unwrap();
                let records: Vec<Value> = (offset..(offset + 30).min(95)).map(|i| json!({"id": i})).collect();
                Ok(Response {
                    status: 200,
                    headers: vec![],
                    body: Value::Array(records).to_string().into_bytes(),
                })
            }
        }
        let mut cursor = None;
        let mut count = 0;
        loop {
            let page = next_page(&settings, &mut Capped, cursor.as_deref()).unwrap();
            count += page.objects.len();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(count, 95, "every record, not the first 30");
    }

    #[test]
    fn messages_hide_credentials_in_urls_and_quoted_bodies() {
        let settings = with(&[
            (
                "source-url",
                "https://bot:pw@api.example.com/hosts?api_key=k-123&limit=5",
            ),
            ("map-object-type", "host"),
            ("map-external-id", "id"),
            ("map-label", "id"),
        ]);
        let mut api = Recorder {
            seen: vec![],
            pages: vec![(
                401,
                vec![],
                json!({"error": "bad token", "token": "t-456", "pad": "x".repeat(500)}),
            )],
        };
        let SourceError::BadResponse(message) = next_page(&settings, &mut api, None).unwrap_err() else {
            panic!()
        };
        for secret in ["pw", "k-123", "t-456"] {
            assert!(!message.contains(secret), "{secret} leaked: {message}");
        }
        assert!(
            message.contains("https://***@api.example.com/hosts?api_key=***&limit=5 answered 401"),
            "{message}"
        );
        assert!(message.chars().count() < 260, "the body is quoted short: {message}");
    }

    /// A throttled or unavailable API answering `status` with `headers`.
    fn busy_answer(status: u16, headers: &[(&str, &str)]) -> SourceError {
        let mut api = Recorder {
            seen: vec![],
            pages: vec![(
                status,
                headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                json!({"detail": "slow down"}),
            )],
        };
        next_page(&settings(), &mut api, None).unwrap_err()
    }

    #[test]
    fn a_429_or_503_is_busy_with_the_retry_after_it_gave() {
        for status in [429, 503] {
            let SourceError::Busy {
                message,
                retry_after_ms,
            } = busy_answer(status, &[("retry-after", "7")])
            else {
                panic!("{status} is not busy")
            };
            assert_eq!(retry_after_ms, Some(7_000), "{status}: delay seconds");
            assert!(message.contains(&format!("answered {status}")), "{message}");
            // An HTTP date counts from the answer's own Date, not this machine's clock.
            let dated = busy_answer(
                status,
                &[
                    ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
                    ("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
                ],
            );
            assert!(
                matches!(
                    dated,
                    SourceError::Busy {
                        retry_after_ms: Some(30_000),
                        ..
                    }
                ),
                "{status}: HTTP date: {dated:?}"
            );
            let unsaid = busy_answer(status, &[]);
            assert!(
                matches!(
                    unsaid,
                    SourceError::Busy {
                        retry_after_ms: None,
                        ..
                    }
                ),
                "{status}: no Retry-After: {unsaid:?}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_against_the_answers_date() {
        let headers = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
        };
        assert_eq!(retry_after_ms(&headers(&[("Retry-After", " 120 ")])), Some(120_000));
        let date = ("date", "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"), date])),
            Some(0),
            "a date already past: at once"
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")])),
            None,
            "a date without a Date to measure from"
        );
        assert_eq!(retry_after_ms(&headers(&[("retry-after", "soon"), date])), None);
        assert_eq!(retry_after_ms(&headers(&[("retry-after", "-5")])), None);
    }

    /// The message of any source error.
    fn message(e: SourceError) -> String {
        match e {
            SourceError::Timeout(m)
            | SourceError::Connection(m)
            | SourceError::BadResponse(m)
            | SourceError::Denied(m)
            | SourceError::Config(m)
            | SourceError::Other(m) => m,
            SourceError::Busy { message, .. } => message,
        }
    }

    /// The message of reading the first page when the API answers `status`
    /// with `body`, configured with `url` and `headers`.
    fn answered(url: &str, headers: &str, status: u16, body: &str) -> String {
        let settings = with(&[
            ("source-url", url),
            ("source-headers", headers),
            ("map-object-type", "host"),
            ("map-external-id", "id"),
            ("map-label", "id"),
        ]);
        struct Answer(u16, String);
        impl Http for Answer {
            fn get(&mut self, _: &str, _: &[(String, String)], _: u32) -> Result<Response, HttpFailure> {
                Ok(Response {
                    status: self.0,
                    headers: vec![],
                    body: self.1.clone().into_bytes(),
                })
            }
        }
        message(next_page(&settings, &mut Answer(status, body.to_owned()), None).unwrap_err())
    }

    #[test]
    fn a_configured_secret_the_body_repeats_in_prose_is_hidden() {
        // A thread of its own: the registry the settings fill is its own.
        std::thread::spawn(|| {
            let m = answered(
                "https://api.example.com/hosts?key=SUPERSECRET123",
                "X-Client: c-0123456789",
                403,
                "key SUPERSECRET123 is over quota; client c-0123456789 is blocked",
            );
            for secret in ["SUPERSECRET123", "c-0123456789"] {
                assert!(!m.contains(secret), "{secret} leaked: {m}");
            }
            assert!(m.contains("key *** is over quota"), "{m}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_secret_the_excerpts_cut_would_split_never_shows_in_part() {
        std::thread::spawn(|| {
            for pad in 90..EXCERPT_CHARS {
                // A user-info password cut before its `@`, and a registered
                // value cut in the middle.
                let body = format!(
                    "{} see https://bot:hunter2-password@mirror.example.com/x",
                    "x".repeat(pad)
                );
                let m = answered(
                    "https://api.example.com/hosts?key=SUPERSECRET123",
                    "Accept: json",
                    404,
                    &body,
                );
                assert!(!m.contains("hunter"), "{pad}: {m}");
                let body = format!("{}SUPERSECRET123 is over quota", "x".repeat(pad + 10));
                let m = answered(
                    "https://api.example.com/hosts?key=SUPERSECRET123",
                    "Accept: json",
                    404,
                    &body,
                );
                assert!(!m.contains("SUPE"), "{pad}: {m}");
            }
        })
        .join()
        .unwrap();
    }
}
