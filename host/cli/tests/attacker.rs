//! Serve mode against an attacker, over real HTTP, finding by finding: a
//! hostile app (`tests/guests/hostile`) that re-spells its API paths,
//! reads another app's settings, calls another app's egress, smuggles
//! outbound requests, sits in a tarpit and floods progress, storage and
//! objects; strangers that stall sockets, re-spell a captured signature
//! and probe for app names; and the smaller rules (the `Bearer` scheme in
//! any case, a public URL needs a token, no password and no control
//! character in what the server prints).
//!
//! No test here measures time: each checks that a connection or a run
//! was cut *by its limit* (the status, the reason or log line naming it,
//! the socket's state), and waits on the server's own state, never on a
//! sleep; a polling loop carries a guard of minutes, a hang guard only.
//!
//! Each test fails on the server as it was before these rules (the
//! closing note of the issue says how each was seen to fail).

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// The kernel's state of this process's TCP connection from local port
/// `local` to remote port `remote` (Linux `/proc/net/tcp*`: `01`
/// established, `08` close-wait once the peer has closed), or `None` when
/// no such connection is left.
fn tcp_state(local: u16, remote: u16) -> Option<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
            (port(fields.get(1)?) == Some(local) && port(fields.get(2)?) == Some(remote)).then(|| fields[3].to_owned())
        })
    })
}

/// A third party that records every connection's raw bytes and answers
/// each request `200 {}`, closing the connection.
fn recording_third_party() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // The head the client sends at once: a hang guard only, so a
            // busy machine cannot cut it short.
            stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            // Whatever else comes on the connection (a smuggled request),
            // until it closes or is quiet for 500 ms.
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            raw.extend_from_slice(&rest);
            record.lock().unwrap().push(raw);
        }
    });
    (url, seen)
}

/// Starts `assets-host serve` with `args` (no app of its own): Ok(child)
/// once ready, Err(everything it printed) when it exits instead.
fn try_serve(args: &[&str]) -> Result<std::process::Child, String> {
    use std::io::BufRead as _;
    let log = temp_dir().join("serve.log");
    let db: &[&str] = if args.contains(&"--db") {
        &[]
    } else {
        &["--db", ":memory:"]
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_assets-host"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(db)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("ready") {
            return Ok(child);
        }
        printed.push_str(&line);
        printed.push('\n');
    }
    let status = child.wait().unwrap();
    Err(format!(
        "{status}: {printed}{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    ))
}

/// The server with the hostile app hosted as `evil` beside `demo`, told
/// `demo`'s import source as `other-source`; and `demo`.
fn evil_beside_demo(mode: &str, extra: &[&str]) -> (Server, App) {
    let dir = temp_dir();
    let db = dir.join("state.db");
    let port = Port::new();
    let victim = {
        let server = Server::start(&db, &port, &["--clock", "virtual"]);
        let victim = server.app();
        server.stop();
        victim
    };
    let evil = format!("evil={}", hostile());
    let mode = format!("evil:hostile={mode}");
    let other = format!("evil:other-source={}", victim.import_source_id);
    let mut args = vec![
        "--clock",
        "virtual",
        "--app",
        &evil,
        "--app-config",
        &mode,
        "--app-config",
        &other,
    ];
    args.extend_from_slice(extra);
    (Server::start(&db, &port, &args), victim)
}

#[test]
fn every_respelling_of_a_path_is_refused_by_the_sandbox_with_the_rule_it_breaks() {
    let (server, victim) = evil_beside_demo("path-escape", &[]);
    let attacker = app_named(&server, "evil");
    let (status, outcome) = trigger(&server, &attacker, &server.secrets["evil"]);
    assert_eq!(status, 200, "{outcome}");
    let seen = report(&outcome);
    let outcomes = seen["outcomes"].as_array().unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(outcomes.len(), 14, "{seen}");
    for (k, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome, "invalid-path", "path {k} of the guest's ESCAPES: {seen}");
    }
    let reason = seen["reason"].as_str().unwrap();
    assert!(
        reason.contains("has a character outside letters, digits"),
        "names the rule: {reason}"
    );
    // Nothing reached the other app's source.
    let (status, _) = server.call("GET", &Server::source_path(&victim, "executions/status"), None);
    assert_eq!(status, 404, "the victim's source has no execution");
    assert!(server.history(&victim).is_empty());
}

#[test]
fn an_app_reads_only_its_own_settings_and_calls_only_through_its_own_allowlist() {
    use std::sync::atomic::Ordering;
    let (url, count) = counting_responder();
    let (reader, flooder) = (format!("reader={}", hostile()), format!("flooder={}", hostile()));
    let demo_allow = format!("demo:{url}");
    let target = format!("flooder:url={url}/items");
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--app",
        &reader,
        "--app",
        &flooder,
        "--app-config",
        "demo:netbox-token=SECRET-OF-DEMO",
        "--app-allow",
        &demo_allow,
        "--app-config",
        "reader:hostile=read-setting",
        "--app-config",
        "reader:probe-key=netbox-token",
        "--app-config",
        "flooder:hostile=http-flood",
        "--app-config",
        &target,
        "--app-config",
        "flooder:requests=1",
    ]);
    let (_, outcome) = trigger(&server, &app_named(&server, "reader"), &server.secrets["reader"]);
    assert_eq!(
        report(&outcome),
        json!({"mode": "read-setting", "value": null}),
        "demo's setting is demo's alone"
    );
    let (_, outcome) = trigger(&server, &app_named(&server, "flooder"), &server.secrets["flooder"]);
    let seen = report(&outcome);
    assert_eq!(seen["sent"], 0, "{seen}");
    assert!(
        seen["error"].as_str().unwrap().contains("Denied"),
        "demo's allowlist is demo's alone: {seen}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0, "nothing reached the third party");
    // Settings meant for one app cannot be given to all by mistake.
    let two = format!("other={}", hostile());
    let refused = try_serve(&[
        "--app",
        &format!("demo={}", assets_host::cli::default_component_path().display()),
        "--app",
        &two,
        "--config",
        "netbox-token=SECRET",
    ])
    .unwrap_err();
    assert!(refused.contains("--app-config NAME:KEY=VALUE"), "{refused}");
}

#[test]
fn an_outbound_request_cannot_add_a_host_or_a_second_request() {
    let (url, seen) = recording_third_party();
    let allow = format!("evil:{url}");
    let target = format!("evil:url={url}/items");
    let (server, _) = evil_beside_demo("outbound-smuggle", &["--app-allow", &allow, "--app-config", &target]);
    let attacker = app_named(&server, "evil");
    let (_, outcome) = trigger(&server, &attacker, &server.secrets["evil"]);
    let report = report(&outcome);
    let outcomes = report["outcomes"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(outcomes.len(), 9, "{report}");
    for (k, outcome) in outcomes[..8].iter().enumerate() {
        assert_eq!(outcome, "invalid-request", "request {k}: {report}");
    }
    assert_eq!(outcomes[8], "HTTP 200", "the plain request goes through: {report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("the platform sets this header itself"),
        "{report}"
    );
    // The third party records a connection once the client has closed it.
    let connections = wait_for("the plain request's connection to be recorded", || {
        let seen = seen.lock().unwrap().clone();
        (!seen.is_empty()).then_some(seen)
    });
    assert_eq!(connections.len(), 1, "one connection: the plain request's");
    let raw = String::from_utf8_lossy(&connections[0]).to_string();
    assert_eq!(raw.matches("HTTP/1.1\r\n").count(), 1, "one request: {raw:?}");
    let host = url.trim_start_matches("http://");
    assert!(
        raw.to_ascii_lowercase().contains(&format!("\r\nhost: {host}\r\n")),
        "{raw:?}"
    );
    assert!(!raw.contains("evil"), "{raw:?}");
}

#[test]
fn a_tarpit_cannot_hold_a_run_past_its_time_limit() {
    // A third party that takes the connection and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let allow = format!("evil:{url}");
    let target = format!("evil:url={url}/slow");
    let (server, _) = evil_beside_demo(
        "tarpit",
        &[
            "--app-allow",
            &allow,
            "--app-config",
            &target,
            "--run-timeout-secs",
            "3",
        ],
    );
    let attacker = app_named(&server, "evil");
    // The guest asked to wait u32::MAX ms; the wait ends at the run's limit
    // (a wait that was not cut would hold the trigger for ever), and the
    // outcome says which limit ended it.
    let (status, outcome) = trigger(&server, &attacker, &server.secrets["evil"]);
    assert_eq!(status, 200, "{outcome}");
    let reason = outcome["failureReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("3 s time limit") || reason.contains("\"outcome\":\"timeout\""),
        "{outcome}"
    );
}

#[test]
fn progress_storage_and_objects_are_bounded_and_each_limit_is_named() {
    let (progress, storage, objects) = (
        format!("progress={}", hostile()),
        format!("storage={}", hostile()),
        format!("objects={}", hostile()),
    );
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--app",
        &progress,
        "--app",
        &storage,
        "--app",
        &objects,
        "--app-config",
        "progress:hostile=progress-flood",
        "--app-config",
        "storage:hostile=storage-flood",
        "--app-config",
        "objects:hostile=objects-flood",
        "--max-storage-bytes-per-app",
        "1000000",
        "--max-objects-per-execution",
        "1000",
    ]);
    let run = |name: &str| {
        let app = app_named(&server, name);
        let (status, outcome) = trigger(&server, &app, &server.secrets[name]);
        assert_eq!(status, 200, "{outcome}");
        (app, report(&outcome))
    };
    let (app, seen) = run("progress");
    assert_eq!(seen["status"], 413, "{seen}");
    assert!(
        seen["body"].as_str().unwrap().contains("4096"),
        "names the limit: {seen}"
    );
    let history = server.history(&app);
    assert!(
        history.iter().all(|line| line["progress"].is_null()),
        "nothing of it kept: {history:?}"
    );
    // 60,000-byte values under 7-byte keys: 16 fit in 1,000,000 bytes.
    let (_, seen) = run("storage");
    assert_eq!(seen["stored"], 16, "{seen}");
    assert!(seen["error"].as_str().unwrap().contains("1000000-byte limit"), "{seen}");
    let (_, seen) = run("objects");
    assert_eq!(seen["statuses"], json!([200, 200, 413]), "{seen}");
    assert!(
        seen["body"].as_str().unwrap().contains("1000"),
        "names the limit: {seen}"
    );
}

/// A manual callback for `app`, signed now with `secret`: body and headers.
fn signed_callback(app: &App, secret: &str) -> (String, i64, String) {
    let body = json!({"workspaceId": app.workspace_id, "importsourceId": app.import_source_id}).to_string();
    let now = chrono::Utc::now().timestamp();
    let signature = assets_server::signing::sign(secret, now, body.as_bytes());
    (body, now, signature)
}

fn send_callback(server: &Server, url: &str, body: &str, now: i64, signature: &str) -> (u16, Value) {
    let now = now.to_string();
    server.call_with(
        "POST",
        url,
        Some(body.to_owned()),
        &[("x-assets-timestamp", &now), ("x-assets-signature", signature)],
    )
}

#[test]
fn a_captured_callback_re_spelled_is_refused_as_a_replay() {
    let server = Server::fresh(&["--clock", "virtual", "--objects", "5"]);
    let app = server.app();
    let (body, now, signature) = signed_callback(&app, &server.secret);
    let (status, outcome) = send_callback(&server, &app.callback_url, &body, now, &signature);
    assert_eq!(
        (status, outcome["status"].as_str()),
        (200, Some("completed")),
        "{outcome}"
    );
    let hex = signature.trim_start_matches("sha256=");
    let flipped = {
        let k = hex.find(|c: char| c.is_ascii_lowercase()).expect("a letter to flip");
        format!("sha256={}{}{}", &hex[..k], hex[k..=k].to_uppercase(), &hex[k + 1..])
    };
    for respelled in [
        format!("sha256={}", hex.to_uppercase()),
        flipped,
        format!(" {signature} "),
    ] {
        let (status, refused) = send_callback(&server, &app.callback_url, &body, now, &respelled);
        assert_eq!(
            (status, refused["errorCode"].as_str()),
            (401, Some("CALLBACK_REFUSED")),
            "{respelled}: {refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains("already delivered"),
            "{refused}"
        );
    }
    assert_eq!(server.history(&app).len(), 1, "one run, not four");
}

#[test]
fn a_stranger_cannot_tell_a_hosted_app_from_none() {
    let server = Server::fresh(&["--clock", "virtual", "--token", "t0ken"]);
    let hosted = format!("{}/apps/demo/webtrigger", server.base);
    let unknown = format!("{}/apps/no-such-app/webtrigger", server.base);
    let forged = format!("sha256={}", "ab".repeat(32));
    let now = chrono::Utc::now().timestamp().to_string();
    for headers in [
        vec![],
        vec![
            ("x-assets-timestamp", now.as_str()),
            ("x-assets-signature", forged.as_str()),
        ],
        vec![
            ("x-assets-timestamp", "yesterday"),
            ("x-assets-signature", forged.as_str()),
        ],
        vec![("x-assets-timestamp", now.as_str()), ("x-assets-signature", "md5=00")],
    ] {
        let body = Some(r#"{"workspaceId":"w","importsourceId":"s"}"#.to_owned());
        let a = server.call_with("POST", &hosted, body.clone(), &headers);
        let b = server.call_with("POST", &unknown, body, &headers);
        assert_eq!(a, b, "{headers:?}");
        assert_eq!(a.0, 401, "{headers:?}: {:?}", a.1);
    }
}

/// Re-opens, with `head_of(k)`, each held connection `k` the server has
/// answered or closed: a probe that briefly took a place while the held
/// ones were being read in can have got one of them refused.
fn refill(address: &str, held: &mut [TcpStream], head_of: impl Fn(usize) -> String) {
    for (k, stream) in held.iter_mut().enumerate() {
        stream.set_nonblocking(true).unwrap();
        let answered = !matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        if answered {
            *stream = stalled(address, &head_of(k));
        }
    }
}

/// Opens a connection and sends `text`, keeping the connection open.
fn stalled(address: &str, text: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    stream
}

#[test]
fn stalled_sockets_without_a_token_cannot_lock_the_operator_out() {
    let server = Server::fresh(&["--clock", "virtual", "--token", "t0ken"]);
    let app = server.app();
    let address = server.base.trim_start_matches("http://").to_owned();
    let api = Server::source_path(&app, "executions");
    let forged = format!("sha256={}", "ab".repeat(32));
    // 256 connections that declare a body and never send it, of every kind
    // a stranger can make (forged web-trigger calls up to one client's
    // share), and a few whose request head never ends.
    let forged_call = format!(
        "POST /apps/demo/webtrigger HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\
         x-assets-timestamp: 1\r\nx-assets-signature: {forged}\r\n\r\n"
    );
    let head_of = |k: usize| match k % 16 {
        0..=7 => format!("POST {api} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"),
        8..=14 => "POST /_admin/importsource HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n".to_owned(),
        _ => forged_call.clone(),
    };
    let mut held: Vec<TcpStream> = (0..256).map(|k| stalled(&address, &head_of(k))).collect();
    let slow_heads: Vec<TcpStream> = (0..16)
        .map(|_| stalled(&address, "GET /_admin/apps HTTP/1.1\r\nhost: x\r\n"))
        .collect();
    held.iter_mut().for_each(|s| s.set_nonblocking(true).unwrap());
    // One client's share of web-trigger calls is 32: sixteen more forged
    // calls fill it. Once one more forged call is refused for it (401 for
    // its signature while there is room), the server has read the heads of
    // all 32, every sixteenth of the stalled ones, so it has taken in the
    // stalled connections up to the last.
    let mut more: Vec<TcpStream> = (0..32 - 256 / 16).map(|_| stalled(&address, &forged_call)).collect();
    let (body, now, signature) = signed_callback(&app, &server.secret);
    let refused = wait_for("the forged calls to fill the client's share", || {
        refill(&address, &mut held, head_of);
        refill(&address, &mut more, |_| forged_call.clone());
        let (status, answer) = send_callback(&server, &app.callback_url, &body, now, &forged);
        assert!(matches!(status, 401 | 429), "{status} {answer}");
        (status == 429).then_some(answer)
    });
    assert!(
        refused["message"].as_str().unwrap().contains("as one client may (32)"),
        "{refused}"
    );
    // The operator is answered, whatever the strangers hold (locked out, it
    // got 429 or waited out the strangers' 10 s and 60 s limits).
    for _ in 0..3 {
        let (status, answer) = server.admin("GET", "/_admin/apps", None);
        assert_eq!(status, 200, "{answer}");
        let url = format!("{}{}", server.base, Server::source_path(&app, "history"));
        let answer = ureq::get(&url).set("authorization", "Bearer t0ken").call();
        assert_eq!(answer.map(|r| r.status()).ok(), Some(200));
    }
    // The forged calls gone, a real callback runs.
    drop(more);
    let (status, outcome) = wait_for("the share to be freed", || {
        let (status, outcome) = send_callback(&server, &app.callback_url, &body, now, &signature);
        (status != 429).then_some((status, outcome))
    });
    assert_eq!(status, 200, "{outcome}");
    // A request head that never ends is cut: the server closes it (with no
    // answer), long before this read's hang guard.
    for mut stream in slow_heads {
        stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let mut buf = [0u8; 256];
        let closed = matches!(stream.read(&mut buf), Ok(0)) || stream.read(&mut buf).is_ok_and(|n| n == 0);
        assert!(closed, "the connection was closed");
    }
}

#[test]
fn a_source_tokens_stalled_requests_use_up_only_its_own_share() {
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--token",
        "t0ken",
        "--max-concurrent-per-source",
        "4",
    ]);
    let app = server.app();
    let (status, minted) = server.admin("POST", &Server::source_path(&app, "token"), None);
    assert_eq!(status, 200, "{minted}");
    let token = minted["token"].as_str().unwrap().to_owned();
    let address = server.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 100\r\n\r\n",
        Server::source_path(&app, "executions")
    );
    let mut held: Vec<TcpStream> = (0..4).map(|_| stalled(&address, &head)).collect();
    // Once the server holds the four (it reads their heads when it gets to
    // them), the token's next request is refused; until then it is served.
    let bearer = format!("Bearer {token}");
    let refused = wait_for("the four stalled requests to fill the token's share", || {
        refill(&address, &mut held, |_| head.clone());
        let (status, answer) = server.call_with(
            "GET",
            &Server::source_path(&app, "history"),
            None,
            &[("authorization", &bearer)],
        );
        assert!(matches!(status, 200 | 429), "{status} {answer}");
        (status == 429).then_some(answer)
    });
    assert!(
        refused["message"].as_str().unwrap().contains(&app.import_source_id),
        "names whose share is used up: {refused}"
    );
    // The operator's requests count elsewhere: served.
    assert_eq!(server.admin("GET", "/_admin/apps", None).0, 200);
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408_naming_the_limit() {
    let server = Server::fresh(&["--clock", "virtual", "--body-timeout-secs", "1"]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = stalled(
        &address,
        "POST /_admin/importsource HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"work",
    );
    // A hang guard: the property is the 408 naming the limit, not how soon.
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"}") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("within 1 s"), "{answer}");
}

#[test]
fn the_bearer_scheme_is_read_in_any_case() {
    let server = Server::fresh(&["--clock", "virtual", "--token", "t0ken"]);
    for (authorization, status) in [
        ("Bearer t0ken", 200),
        ("bearer t0ken", 200),
        ("BEARER    t0ken", 200),
        ("Bearer", 401),
        ("Basic t0ken", 401),
        ("Bearer t0ken extra", 401),
    ] {
        let (got, body) = server.call_with("GET", "/_admin/apps", None, &[("authorization", authorization)]);
        assert_eq!(got, status, "{authorization:?}: {body}");
    }
}

#[test]
fn a_loopback_bind_behind_a_public_url_needs_a_token() {
    let refused = try_serve(&["--public-url", "https://imports.example.com"]).unwrap_err();
    assert!(
        refused.contains("refusing to serve https://imports.example.com"),
        "{refused}"
    );
    for args in [
        &["--public-url", "https://imports.example.com", "--token", "t"][..],
        &["--public-url", "http://localhost:8080"][..],
    ] {
        let mut child = try_serve(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_database_password_is_never_printed() {
    for url in [
        "postgres://u:hunter2@127.0.0.1:1/db",
        "postgres://u:hunter2@[::1/db",
        "postgres://u@127.0.0.1:1/db?password=hunter2",
    ] {
        let refused = try_serve(&["--db", url]).unwrap_err();
        assert!(!refused.contains("hunter2"), "{url}: {refused}");
        assert!(refused.contains("PostgreSQL"), "says what failed: {refused}");
    }
}

#[test]
fn an_apps_output_cannot_forge_or_colour_a_log_line() {
    let (server, _) = evil_beside_demo("log-forge", &[]);
    let attacker = app_named(&server, "evil");
    let (status, _) = trigger(&server, &attacker, &server.secrets["evil"]);
    assert_eq!(status, 200);
    let log = wait_for("the guest's line to be logged", || {
        let log = server.log_text();
        log.contains("innocent").then_some(log)
    });
    let line = log.lines().find(|l| l.contains("innocent")).unwrap();
    assert!(!line.contains(['\r', '\u{1b}', '\u{202e}']), "{line:?}");
    assert!(line.contains("\\u{1b}[31mFORGED"), "escaped, still readable: {line:?}");
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED") || l.contains("\u{1b}[31m")),
        "no forged line: {log}"
    );
}

#[test]
fn every_admin_endpoint_refuses_a_query_parameter_it_does_not_take() {
    let server = Server::fresh(&["--clock", "virtual"]);
    let app = server.app();
    for (method, path, body) in [
        ("GET", "/_admin/apps?x=1", None),
        ("GET", "/_admin/clock?verbose=true", None),
        ("GET", "/_admin/occurrences?bogus=1", None),
        ("POST", "/_admin/clock/advance?dry=1", Some(json!({"seconds": 1}))),
        (
            "POST",
            "/_admin/importsource?x=1",
            Some(json!({"workspaceId": app.workspace_id, "type": "external"})),
        ),
    ] {
        let (status, answer) = server.admin(method, path, body);
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert!(answer["field"].is_string(), "names the parameter: {answer}");
    }
}

#[test]
fn an_apps_waits_do_not_move_the_servers_virtual_clock() {
    let (server, _) = evil_beside_demo("clock-push", &["--run-timeout-secs", "5"]);
    let before = clock_now(&server);
    let attacker = app_named(&server, "evil");
    let (status, outcome) = trigger(&server, &attacker, &server.secrets["evil"]);
    assert_eq!(status, 200, "{outcome}");
    let seen = report(&outcome);
    assert!(
        seen["moved-ms"].as_u64().unwrap() >= 1000,
        "its own time moved with its waits: {seen}"
    );
    assert_eq!(
        clock_now(&server),
        before,
        "the server's clock, shared by every app, did not"
    );
}

#[test]
fn a_client_that_never_reads_cannot_hold_a_connection_or_the_shutdown() {
    let server = Server::fresh(&["--clock", "virtual", "--token", "t0ken"]);
    let address = server.base.trim_start_matches("http://").to_owned();
    // 20,000 requests pipelined on one connection, none of the answers read:
    // the server's writes fill the socket and stop.
    let mut pipelined = TcpStream::connect(&address).unwrap();
    let request = "GET /_admin/apps HTTP/1.1\r\nhost: x\r\n\r\n".repeat(20_000);
    // A hang guard on this side's own writes, which stop once both buffers
    // are full.
    pipelined.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = pipelined.write_all(request.as_bytes());
    // The server cuts a connection whose writes make no progress: the kernel
    // shows it closed from the server's side (close-wait, or gone) while
    // this side has read nothing. Reading would let its writes go on, so
    // the state is watched instead.
    let (local, remote) = (
        pipelined.local_addr().unwrap().port(),
        pipelined.peer_addr().unwrap().port(),
    );
    wait_for("the server to cut the connection that never reads", || {
        (tcp_state(local, remote).as_deref() != Some("01")).then_some(())
    });
    // It was cut, not served to the end: fewer than the 20,000 answers came.
    pipelined.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut sink = Vec::new();
    let _ = pipelined.read_to_end(&mut sink);
    let answers = sink.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(answers < 20_000, "all {answers} answers were written");
    // A connection that sends half a request and waits does not hold the
    // shutdown: after SIGTERM the server stops at the end of its grace,
    // saying it left such connections open, and exits cleanly.
    let _half = stalled(
        &address,
        "POST /_admin/importsource HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t0ken\r\ncontent-length: 100\r\n\r\n{",
    );
    // Connections are accepted in the order they came: once a later one is
    // answered, the server holds the half request.
    assert_eq!(server.admin("GET", "/_admin/apps", None).0, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    wait_for("the shutdown to end its grace", || {
        server
            .log_text()
            .contains("stopping with connections still open")
            .then_some(())
    });
    server.stop();
}

#[test]
fn a_callback_answered_429_is_tried_again() {
    let receiver = Receiver::new();
    let server = Server::fresh(&["--clock", "virtual", "--callback-allow", &receiver.allow_entry()]);
    let app = server.app();
    let (status, created) = server.admin(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "external", "app": "remote"})),
    );
    assert_eq!(status, 201, "{created}");
    let external = App {
        import_source_id: created["id"].as_str().unwrap().to_owned(),
        ..app.clone()
    };
    let mut schedule = daily_schedule(&external, clock_now(&server), 1);
    schedule["callbackUrl"] = receiver.url.clone().into();
    let (status, body) = server.call(
        "POST",
        &Server::source_path(&external, "importschedule"),
        Some(schedule),
    );
    assert_eq!(status, 201, "{body}");
    let receiving = std::thread::spawn(move || {
        // Busy twice, then accepted.
        for _ in 0..2 {
            let mut stream = Receiver::read(receiver.accept()).stream;
            let _ = stream.write_all(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
        Receiver::accept_callback(Receiver::read(receiver.accept()).stream);
    });
    server.advance(2 * 3600);
    receiving.join().unwrap();
    let history = server.history(&external);
    assert!(
        history
            .iter()
            .all(|line| !line["failureReason"].as_str().unwrap_or_default().contains("429")),
        "accepted on the third try, not failed: {history:?}"
    );
}

#[test]
fn only_the_platform_may_say_which_delivery_a_call_is_made_for() {
    // The delivery beside a call decides whose execution it creates and
    // which writes are fenced by whose attempt: a client with a source
    // token cannot name one, nor can any client put one in a body.
    let server = Server::fresh(&["--clock", "virtual", "--token", "t0ken"]);
    let app = server.app();
    let executions = Server::source_path(&app, "executions");
    let (status, token) = server.admin("POST", &Server::source_path(&app, "token"), None);
    assert_eq!(status, 200, "{token}");
    let source_token = format!("Bearer {}", token["token"].as_str().unwrap());
    let delivery = json!({"id": "forged", "occurrenceId": "someone-elses", "attempt": 7}).to_string();
    let (status, body) = server.call_with(
        "POST",
        &executions,
        Some(json!({"scheduled": true}).to_string()),
        &[("authorization", &source_token), ("x-assets-delivery", &delivery)],
    );
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (403, Some("FORBIDDEN")),
        "a source token may not name a delivery: {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("x-assets-delivery"),
        "{body}"
    );
    let (status, body) = server.call_with(
        "POST",
        &executions,
        Some(json!({"scheduled": true, "delivery": {"id": "forged", "occurrenceId": "x", "attempt": 1}}).to_string()),
        &[("authorization", &source_token)],
    );
    assert_eq!(status, 400, "a delivery in the body is not the API's: {body}");
    // The platform's credential with something that is not a delivery.
    let (status, body) = server.call_with(
        "POST",
        &executions,
        Some(json!({"scheduled": true}).to_string()),
        &[
            ("authorization", "Bearer t0ken"),
            ("x-assets-delivery", "{not a delivery"),
        ],
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("x-assets-delivery")),
        "{body}"
    );
    // Nothing was created by any of them.
    let (status, history) = server.admin("GET", &Server::source_path(&app, "history"), None);
    assert_eq!(status, 200, "{history}");
    assert_eq!(history.as_array().map(Vec::len), Some(0), "{history}");
}
