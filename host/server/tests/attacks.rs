//! Generative attacks on serve mode's three parse-once boundaries, each
//! judged by an oracle that shares no code with what it checks:
//!
//! - **API paths.** Generated path strings (dots, slashes, tabs, CR/LF,
//!   NUL, percent-escapes upper and lower case and doubled, full-width dots
//!   and slashes, `;`, `?`, `#`, backslashes) go through the sandbox's
//!   reading (`ApiPath`), the per-app confinement and the real HTTP client
//!   (`HttpAssets`) to a listener that records the raw request target. The
//!   oracle reads that target with plain string splitting: it must address
//!   one of the app's own sources and an endpoint an app may call; the
//!   real router then answers it, and the other app's source is untouched.
//! - **Signatures.** Every re-spelling of an accepted signature (case,
//!   whitespace, prefix) is refused, in memory and in the SQLite record.
//! - **Outbound requests.** Generated header names and values (CR, LF, NUL,
//!   `Host` in every case, framing and hop-by-hop headers, a second request
//!   written into a value) and bodies go through `OutboundRequest` and the
//!   real client to a listener that reads every byte of the connection:
//!   the third party sees exactly one request, with the URL's `Host`.
//!
//! Case counts are in each `ProptestConfig`.

use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::SystemClock;
use assets_platform::confine::ConfinedAssets;
use assets_runtime::bindings::assets_api::Method;
use assets_runtime::bindings::outbound_http::{self, HttpError};
use assets_runtime::{ApiPath, AssetsBackend, OutboundHttp, OutboundRequest};
use assets_server::http_client::{HttpAssets, HttpOutbound};
use assets_server::signing::{sign, Refusal, Verifier};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A listener that records every connection's raw bytes and answers each
/// request `200 {}` with `connection: close`.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // The request the client sends at once: a guard against a
                // hang only, so a busy machine cannot cut it short.
                stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let raw = read_request(&mut stream);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
                let _ = stream.flush();
                // Whatever else the client sends on this connection (a
                // smuggled second request would come here), until it closes
                // or is quiet for 300 ms (a pooled connection stays open).
                stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                let mut raw = raw;
                raw.extend_from_slice(&rest);
                record.lock().unwrap().push(raw);
            }
        });
        Recorder { url, seen }
    }

    /// The one connection the client just made, once it has closed it
    /// (the recorder stores a connection then), and any other recorded.
    /// Only called when a request was sent, so it returns as soon as one is
    /// recorded; the deadline is a hang guard, not a bound on the recorder.
    fn take_one(&self) -> Vec<Vec<u8>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Whether anything was recorded.
    fn is_idle(&self) -> bool {
        self.seen.lock().unwrap().is_empty()
    }
}

/// Reads one request's head and the body its `content-length` declares.
fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return raw;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

// ---------------------------------------------------------------- paths

/// Pieces generated paths are made of.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "importsource",
        "{own}",
        "{other}",
        "token",
        "executions",
        "_admin",
        "occurrences",
        "clock",
        "a",
        "/",
        "/",
        "/",
        ".",
        "..",
        "\t",
        "\r",
        "\n",
        "\0",
        " ",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%252e",
        "%5c",
        "%00",
        "\u{ff0e}",
        "\u{ff0f}",
        "\u{2024}",
        ";",
        ";x=1",
        "?",
        "?limit=1",
        "#",
        "&",
        "=",
        "\\",
        "@",
        ":",
        "data",
        "status",
    ])
}

/// A path: up to twelve pieces, after an optional well-formed start
/// (`importsource/{own}/`); or, as often, segments that are each a plain
/// word or one of the pieces, joined by `/`, so that many paths are
/// well-formed enough to be sent.
fn path() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "importsource",
        "{own}",
        "{other}",
        "token",
        "executions",
        "status",
        "data",
        "history",
        "completed",
        "failed",
        "progress",
        "mapping",
        "configstatus",
        "schedule",
        "importschedule",
        "x-1",
        "a.b",
        "~",
    ]);
    let glued = (any::<bool>(), prop::collection::vec(piece(), 1..12)).prop_map(|(start, pieces)| {
        let mut path = if start {
            "importsource/{own}/".to_owned()
        } else {
            String::new()
        };
        pieces.into_iter().for_each(|p| path.push_str(p));
        path
    });
    let segment = prop_oneof![4 => word, 1 => piece()];
    let joined = (
        prop::sample::select(vec!["{own}", "{other}", "{own}", "x"]),
        prop::collection::vec(segment, 0..5),
        prop::option::of(prop::sample::select(vec![
            "limit=1",
            "cursor=2&limit=3",
            "async=true",
            "a=%2F",
            "x#y",
        ])),
    )
        .prop_map(|(source, segments, query)| {
            let mut path = format!("importsource/{source}");
            segments.into_iter().for_each(|s| {
                path.push('/');
                path.push_str(s);
            });
            if let Some(query) = query {
                path.push('?');
                path.push_str(query);
            }
            path
        });
    prop_oneof![glued, joined]
}

/// The oracle: what an app may reach, judged from the raw request target
/// by plain splitting, nothing of the code under test.
fn reachable(target: &str, workspace: &str, own: &str) -> Result<(), String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let prefix = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{own}");
    let rest = path
        .strip_prefix(&prefix)
        .ok_or_else(|| format!("{target:?} is not under the app's own source"))?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Err(format!("{target:?} names another source that starts like the own one"));
    }
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    for segment in &segments {
        let plain = !segment.is_empty()
            && *segment != "."
            && *segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !plain {
            return Err(format!("{target:?} has the segment {segment:?}"));
        }
    }
    if segments.first() == Some(&"token") {
        return Err(format!("{target:?} reaches the token endpoint"));
    }
    if query.contains(['#', '%', '/', '?']) {
        return Err(format!("{target:?} has an unplain query"));
    }
    Ok(())
}

/// Sent paths: how many of the generated paths went out (the rest were
/// refused). Printed, so a run shows it tried both.
static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static REFUSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn no_spelling_of_a_path_reaches_beyond_the_apps_own_sources() {
    const TOKEN: &str = "server-token";
    let service = Arc::new(AssetsService::new(Arc::new(SystemClock)).with_credential(TOKEN));
    let workspace = service.create_workspace();
    let own = service
        .create_import_source(&workspace, SourceType::External, Some("app".into()))
        .unwrap();
    let other = service
        .create_import_source(&workspace, SourceType::External, Some("victim".into()))
        .unwrap();
    let recorder = Recorder::start();
    let client: Arc<dyn AssetsBackend> = Arc::new(HttpAssets::new(&recorder.url, Some(TOKEN)).unwrap());
    let confined = ConfinedAssets::new(client, service.clone(), "app", own.clone());
    let config = ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(template in path(), method in prop::sample::select(vec![Method::Get, Method::Post, Method::Put, Method::Delete]))| {
        let relative = template.replace("{own}", &own).replace("{other}", &other);
        let Ok(path) = ApiPath::parse(&workspace, &relative) else {
            REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        };
        let answer = confined.call(method, &path, Some("{}"));
        prop_assert!(answer.is_ok(), "{relative:?}: {answer:?}");
        if answer.unwrap().status != 200 {
            // Refused by the confinement (another source reads as unknown),
            // before anything was sent: the recorder answers 200 to all.
            REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert!(recorder.is_idle(), "{relative:?} was refused and sent");
            return Ok(());
        }
        let sent = recorder.take_one();
        prop_assert_eq!(sent.len(), 1, "{:?} made {} connections", relative, sent.len());
        let raw = &sent[0];
        SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let head = String::from_utf8_lossy(raw);
        let line = head.lines().next().unwrap_or_default();
        let target = line.split(' ').nth(1).unwrap_or_default();
        let verdict = reachable(target, &workspace, &own);
        prop_assert!(verdict.is_ok(), "{relative:?} was sent as {line:?}: {:?}", verdict);
        // The real router, given exactly what arrived: the other source is
        // never touched, whatever it answers.
        let method = line.split(' ').next().unwrap_or_default();
        let _ = service.handle_authorized(method, target, Some(&format!("Bearer {TOKEN}")), b"{}");
        prop_assert!(service.state().latest_execution(&other).is_none(), "{relative:?} reached the other source");
        prop_assert!(service.history(&other).unwrap().is_empty());
    });
    let (sent, refused) = (
        SENT.load(std::sync::atomic::Ordering::Relaxed),
        REFUSED.load(std::sync::atomic::Ordering::Relaxed),
    );
    println!("paths: {sent} sent (all to the app's own source), {refused} refused");
    assert!(
        sent > 0 && refused > 0,
        "the generator tried both kinds: {sent} sent, {refused} refused"
    );
}

// ----------------------------------------------------------- signatures

/// A re-spelling of `signature` (`sha256=<hex>`): per-character case flips,
/// space around it, the prefix in another case.
fn respelled() -> impl Strategy<Value = (Vec<bool>, String, String, bool)> {
    (
        prop::collection::vec(any::<bool>(), 64),
        prop::sample::select(vec!["", " ", "  ", "\t"]).prop_map(str::to_owned),
        prop::sample::select(vec!["", " ", "\t"]).prop_map(str::to_owned),
        any::<bool>(),
    )
}

fn apply(signature: &str, (flips, before, after, prefix_upper): &(Vec<bool>, String, String, bool)) -> String {
    let hex = signature.trim_start_matches("sha256=");
    let hex: String = hex
        .chars()
        .zip(flips)
        .map(|(c, flip)| if *flip { c.to_ascii_uppercase() } else { c })
        .collect();
    let prefix = if *prefix_upper { "SHA256=" } else { "sha256=" };
    format!("{before}{prefix}{hex}{after}")
}

#[test]
fn no_respelling_of_an_accepted_signature_is_accepted_again() {
    // Real time: the SQLite record forgets what is past the window by it.
    let now = chrono::Utc::now().timestamp();
    let dir = std::env::temp_dir().join(format!("assets-attacks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (store, _) = assets_server::db::SqliteStore::open(&dir.join("state.db")).unwrap();
    let store = Arc::new(store);
    let counter = std::sync::atomic::AtomicU64::new(0);
    let config = ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(respelling in respelled())| {
        // A new body each case: a new signature, never accepted before.
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = format!("{{\"n\":{n}}}");
        let signature = sign("s3cret", now, body.as_bytes());
        let ts = now.to_string();
        let verifiers = [
            Verifier::new("s3cret"),
            Verifier::new("s3cret").with_replay_record(Arc::new(assets_server::db::SqliteReplays(store.clone()))),
        ];
        for verifier in &verifiers {
            prop_assert!(verifier.verify(Some(&ts), Some(&signature), body.as_bytes(), now).is_ok());
            let again = apply(&signature, &respelling);
            let refused = verifier.verify(Some(&ts), Some(&again), body.as_bytes(), now);
            prop_assert!(
                matches!(refused, Err(Refusal::Replayed | Refusal::Malformed(_))),
                "{again:?} after {signature:?}: {refused:?}"
            );
        }
    });
}

// -------------------------------------------------------------- outbound

/// Header names and values an app might try.
fn header_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "Host",
        "host",
        "HOST",
        "hOsT",
        " ",
        ":",
        "\r",
        "\n",
        "\r\n",
        "\0",
        "\t",
        "x-a",
        "1",
        "evil.example.net",
        "Transfer-Encoding",
        "chunked",
        "Content-Length",
        "0",
        "Connection",
        "close",
        "Upgrade",
        "TE",
        "Expect",
        "100-continue",
        "\r\n\r\nGET /second HTTP/1.1\r\nHost: evil\r\n\r\n",
        "\u{e9}",
        "\u{7f}",
    ]);
    prop::collection::vec(piece, 1..5).prop_map(|p| p.concat())
}

/// The oracle: the raw bytes of one connection hold exactly one request,
/// whose one `Host` header is `host`, and nothing after its body.
fn one_request_to(raw: &[u8], host: &str) -> Result<(), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete request head: {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let after = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    if parts.len() != 3 || !parts[2].starts_with("HTTP/1.") {
        return Err(format!("not a request line: {request_line:?}"));
    }
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let hosts: Vec<&String> = headers.iter().filter(|(n, _)| n == "host").map(|(_, v)| v).collect();
    if hosts != [host] {
        return Err(format!("Host headers {hosts:?}, not [{host:?}]"));
    }
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err("a transfer-encoding the client did not choose".into());
    }
    let length = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().map_err(|_| format!("content-length {v:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let length = match length.as_slice() {
        [] => 0,
        [one] => *one,
        many => return Err(format!("content-length {many:?}")),
    };
    if after.len() != length {
        return Err(format!(
            "{} bytes after the head, {length} declared: a second request?",
            after.len()
        ));
    }
    Ok(())
}

#[test]
fn no_generated_header_or_body_makes_the_third_party_see_another_request_or_host() {
    let recorder = Recorder::start();
    let host = recorder.url.trim_start_matches("http://").to_owned();
    let client = HttpOutbound::default();
    let (sent, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        headers in prop::collection::vec((header_text(), header_text()), 0..4),
        body in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        method in prop::sample::select(vec![outbound_http::Method::Get, outbound_http::Method::Post, outbound_http::Method::Put]),
    )| {
        let request = outbound_http::Request {
            method,
            url: format!("{}/items", recorder.url),
            headers: headers.clone(),
            body,
            timeout_ms: Some(5000),
        };
        match OutboundRequest::from_guest(request, Duration::from_secs(60)) {
            Err(HttpError::InvalidRequest(_)) => {
                refused.set(refused.get() + 1);
                prop_assert!(recorder.is_idle());
            }
            Err(other) => prop_assert!(false, "{headers:?}: {other:?}"),
            Ok(request) => {
                sent.set(sent.get() + 1);
                let answer = client.send(request);
                prop_assert!(answer.is_ok(), "{headers:?}: {answer:?}");
                let seen = recorder.take_one();
                prop_assert_eq!(seen.len(), 1, "{:?}: connections", headers);
                let verdict = one_request_to(&seen[0], &host);
                prop_assert!(verdict.is_ok(), "{headers:?}: {verdict:?}");
            }
        }
    });
    let (sent, refused) = (sent.get(), refused.get());
    println!("outbound: {sent} sent, {refused} refused");
    assert!(
        sent > 0 && refused > 0,
        "the generator tried both kinds: {sent} sent, {refused} refused"
    );
}
