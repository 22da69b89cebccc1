//! Serve mode read as an attacker would, over real HTTP: a hostile app that
//! reaches for another app's source and points callbacks inward, callers
//! without a token, a captured callback replayed after a restart, a flood
//! of large bodies, and apps that break each limit of the `forge` profile.
//!
//! No test here measures time: each checks that a request or a run was
//! stopped *by the limit* (its status, the reason naming the limit, the
//! recorded run), and waits on the server's own state, never on a sleep.
//! A loop that polls carries a guard of minutes, a hang guard only.
//!
//! The hostile app is `tests/guests/hostile` (`make test-guest` builds it;
//! `ASSETS_HOSTILE_GUEST` names it), the misbehaving one
//! `tests/guests/misbehaving`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[test]
fn a_hostile_app_cannot_touch_another_apps_source() {
    // First learn the victim's source id, then host the attacker beside it,
    // told that id (the settings are fixed at start-up).
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
    let other = format!("evil:other-source={}", victim.import_source_id);
    let server = Server::start(
        &db,
        &port,
        &[
            "--clock",
            "virtual",
            "--app",
            &evil,
            "--app-config",
            "evil:hostile=other-source",
            "--app-config",
            &other,
        ],
    );
    let attacker = app_named(&server, "evil");
    assert_eq!(attacker.workspace_id, victim.workspace_id, "one workspace, two apps");

    let (status, outcome) = trigger(&server, &attacker, &server.secrets["evil"]);
    assert_eq!(status, 200, "{outcome}");
    let seen = report(&outcome);
    assert_eq!(seen["own"]["status"], 200, "its own source answers: {seen}");
    let unknown = &seen["unknown"];
    assert_eq!(unknown["status"], 404, "{seen}");
    let unknown_id = "0a0a0a0a-0000-4000-8000-000000000000";
    let like_unknown = unknown["body"].as_str().unwrap().replace(unknown_id, "ID");
    for call in seen["other"].as_array().unwrap() {
        assert_eq!(call["status"], 404, "{call}");
        assert_eq!(
            call["body"].as_str().unwrap().replace(&victim.import_source_id, "ID"),
            like_unknown,
            "another app's source reads exactly like an unknown one: {call}"
        );
    }
    // Nothing reached the victim: no execution, no history.
    let (status, _) = server.call("GET", &Server::source_path(&victim, "executions/status"), None);
    assert_eq!(status, 404, "the victim's source has no execution");
    assert!(server.history(&victim).is_empty());
}

#[test]
fn a_hostile_app_cannot_point_a_callback_at_loopback_link_local_or_private_addresses() {
    let evil = format!("evil={}", hostile());
    // Even an operator who allows every target does not open the host's
    // own network by it.
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--app",
        &evil,
        "--app-config",
        "evil:hostile=callback-ssrf",
        "--callback-allow",
        "*",
    ]);
    let attacker = app_named(&server, "evil");
    let (status, outcome) = trigger(&server, &attacker, &server.secrets["evil"]);
    assert_eq!(status, 200, "{outcome}");
    let seen = report(&outcome);
    let attempts = seen["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 5, "{seen}");
    for attempt in attempts {
        assert_eq!(attempt["status"], 400, "{attempt}");
        let body = attempt["body"].as_str().unwrap();
        assert!(body.contains("callbackUrl"), "the 400 names the field: {attempt}");
    }
    let (status, source) = server.call("GET", &Server::source_path(&attacker, ""), None);
    assert_eq!(status, 200);
    assert!(
        source["scheduledImportDetails"].is_null(),
        "no schedule was made: {source}"
    );
}

#[test]
fn an_allowed_name_that_resolves_inward_is_not_called() {
    // A name this test controls, pinned to loopback as a hostile DNS would
    // answer (`--resolve`, like curl's): the pinned address goes through
    // the same filter as one DNS gave, so no /etc/hosts entry is needed.
    let name = "callbacks.example.test";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let entry = format!("http://{name}:{port}");
    let pin = format!("{name}=127.0.0.1");
    let server = Server::fresh(&["--clock", "virtual", "--callback-allow", &entry, "--resolve", &pin]);
    let app = server.app();
    let (status, created) = server.admin(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "external"})),
    );
    assert_eq!(status, 201, "{created}");
    let external = App {
        import_source_id: created["id"].as_str().unwrap().to_owned(),
        ..app.clone()
    };
    let mut schedule = daily_schedule(&external, clock_now(&server), 1);
    schedule["callbackUrl"] = format!("{entry}/callback").into();
    let (status, body) = server.call(
        "POST",
        &Server::source_path(&external, "importschedule"),
        Some(schedule),
    );
    assert_eq!(status, 201, "the name itself is allowed: {body}");

    server.advance(2 * 3600);
    let history = server.history(&external);
    assert_eq!(history.len(), 1, "{history:?}");
    let reason = history[0]["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("resolves to 127.0.0.1 (loopback)"),
        "the resolved address is checked, and named: {reason}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to the loopback receiver"
    );
}

#[test]
fn a_source_created_for_a_remote_app_gets_its_own_secret_and_signed_callbacks() {
    let receiver = Receiver::new();
    let server = Server::fresh(&["--clock", "virtual", "--callback-allow", &receiver.allow_entry()]);
    let app = server.app();
    let (status, created) = server.admin(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "external", "app": "remote"})),
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["signingSecret"].as_str().expect("the secret, once").to_owned();
    assert_eq!(secret.len(), 64);
    let external = App {
        import_source_id: created["id"].as_str().unwrap().to_owned(),
        ..app.clone()
    };
    let (_, details) = server.call("GET", &Server::source_path(&external, ""), None);
    assert!(!details.to_string().contains(&secret), "never shown again: {details}");
    let mut schedule = daily_schedule(&external, clock_now(&server), 1);
    schedule["callbackUrl"] = receiver.url.clone().into();
    let (status, body) = server.call(
        "POST",
        &Server::source_path(&external, "importschedule"),
        Some(schedule),
    );
    assert_eq!(status, 201, "{body}");

    let receiving = std::thread::spawn(move || {
        let mut stream = receiver.accept();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers and a short JSON body; read until the body is in.
        while !raw.ends_with(b"}") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        Receiver::accept_callback(stream);
        String::from_utf8(raw).unwrap()
    });
    server.advance(2 * 3600);
    let raw = receiving.join().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} header: {head}"))
    };
    let verifier = assets_server::signing::Verifier::new(secret);
    let checked = verifier.verify(
        Some(&header("x-assets-timestamp")),
        Some(&header("x-assets-signature")),
        body.as_bytes(),
        chrono::Utc::now().timestamp(),
    );
    assert!(checked.is_ok(), "signed with the source's own secret: {checked:?}");
}

#[test]
fn every_admin_endpoint_refuses_a_caller_without_the_token() {
    let server = Server::fresh(&["--clock", "virtual", "--token", "s3cret-t0ken"]);
    let app = server.app();
    let endpoints: [(&str, &str, Option<Value>); 5] = [
        ("GET", "/_admin/apps", None),
        (
            "POST",
            "/_admin/importsource",
            Some(json!({"workspaceId": app.workspace_id, "type": "external"})),
        ),
        ("GET", "/_admin/occurrences", None),
        ("GET", "/_admin/clock", None),
        ("POST", "/_admin/clock/advance", Some(json!({"seconds": 1}))),
    ];
    for (method, path, body) in &endpoints {
        for headers in [
            vec![],
            vec![("authorization", "Bearer wrong")],
            vec![("authorization", "s3cret-t0ken")],
        ] {
            let (status, answer) = server.call_with(method, path, body.as_ref().map(Value::to_string), &headers);
            assert_eq!(
                (status, answer["errorCode"].as_str()),
                (401, Some("UNAUTHORIZED")),
                "{method} {path} with {headers:?}"
            );
        }
        let (status, answer) = server.admin(method, path, body.clone());
        assert!(
            (200..300).contains(&status),
            "{method} {path} with the token: {status} {answer}"
        );
    }
}

/// Starts `assets-host serve` with `args`: Ok(child) once it says it is
/// ready, Err(what it printed) when it exits instead.
fn try_serve(args: &[&str]) -> Result<std::process::Child, String> {
    use std::io::BufRead as _;
    let log = temp_dir().join("serve.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_assets-host"))
        .args(["serve", "--db", ":memory:"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().starts_with("ready") {
            return Ok(child);
        }
    }
    let status = child.wait().unwrap();
    Err(format!(
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    ))
}

#[test]
fn a_public_address_without_a_token_refuses_to_start_unless_asked_by_name() {
    let refused = try_serve(&["--addr", "0.0.0.0:0"]).unwrap_err();
    assert!(refused.contains("refusing to listen on 0.0.0.0"), "{refused}");
    assert!(refused.contains("--allow-unauthenticated-public-bind"), "{refused}");
    for args in [
        &["--addr", "0.0.0.0:0", "--token", "t"][..],
        &["--addr", "0.0.0.0:0", "--allow-unauthenticated-public-bind"][..],
        &["--addr", "127.0.0.1:0"][..],
    ] {
        let mut child = try_serve(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_callback_replayed_after_a_restart_is_refused() {
    let db = temp_dir().join("state.db");
    let port = Port::new();
    let first = Server::start(&db, &port, &["--clock", "virtual", "--objects", "5"]);
    let app = first.app();
    let body =
        json!({"workspaceId": app.workspace_id, "importsourceId": app.import_source_id, "scheduled": true}).to_string();
    let now = chrono::Utc::now().timestamp();
    let headers = [
        ("x-assets-timestamp", now.to_string()),
        (
            "x-assets-signature",
            assets_server::signing::sign(&first.secret, now, body.as_bytes()),
        ),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, outcome) = first.call_with("POST", &app.callback_url, Some(body.clone()), &headers);
    assert_eq!(
        (status, outcome["status"].as_str()),
        (200, Some("completed")),
        "{outcome}"
    );
    first.stop();

    let second = Server::start(&db, &port, &["--clock", "virtual", "--objects", "5"]);
    let (status, refused) = second.call_with("POST", &app.callback_url, Some(body), &headers);
    assert_eq!(
        (status, refused["errorCode"].as_str()),
        (401, Some("CALLBACK_REFUSED")),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("already delivered"),
        "{refused}"
    );
    assert_eq!(second.history(&app).len(), 1, "the replay did not run again");
}

/// Sends the head of a request declaring a `length`-byte body and a few
/// bytes of it; the answer, read within `within` (a hang guard).
fn send_head(base: &str, path: &str, headers: &str, length: usize, within: Duration) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n{headers}\r\n"
    )
    .unwrap();
    let _ = stream.write_all(&[b' '; 1024]);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(e) => panic!(
                "no answer within {within:?} to {path}: {e}; got {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_flood_of_large_bodies_without_a_token_is_refused_before_it_is_read() {
    let server = Server::fresh(&["--clock", "virtual", "--token", "t0ken"]);
    let app = server.app();
    let api = Server::source_path(&app, "executions");
    // Forty 16 MiB bodies at once that never arrive: each refused from its
    // headers, none read. A server that read first would wait for a body
    // that never comes and answer 408 at its body time limit, not 401.
    let answers: Vec<String> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let (base, path) = (
                    server.base.clone(),
                    if i % 2 == 0 {
                        api.clone()
                    } else {
                        "/_admin/importsource".into()
                    },
                );
                scope.spawn(move || send_head(&base, &path, "", 16 << 20, HANG_GUARD))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("UNAUTHORIZED"), "{answer}");
    }
    // A web trigger is signed over its body, so a body is read, but only a
    // callback's worth: a large one is refused by its declared length.
    let signed_looking = "x-assets-timestamp: 1\r\nx-assets-signature: sha256=00\r\n";
    let answer = send_head(
        &server.base,
        "/apps/demo/webtrigger",
        signed_looking,
        16 << 20,
        HANG_GUARD,
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let unsigned = send_head(&server.base, "/apps/demo/webtrigger", "", 16 << 20, HANG_GUARD);
    assert!(unsigned.starts_with("HTTP/1.1 401"), "{unsigned}");
    // And the server still serves.
    assert_eq!(server.admin("GET", "/_admin/apps", None).0, 200);
}

#[test]
fn requests_beyond_the_cap_get_429_with_retry_after() {
    let server = Server::fresh(&["--clock", "virtual", "--max-concurrent-requests", "2"]);
    let app = server.app();
    let address = server.base.trim_start_matches("http://").to_owned();
    // Two requests whose bodies are slow to come hold both places.
    let hold = || {
        let mut stream = TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "POST /_admin/importsource HTTP/1.1\r\nhost: {address}\r\ncontent-length: 100\r\n\r\n"
        )
        .unwrap();
        stream.set_nonblocking(true).unwrap();
        stream
    };
    let mut holders: Vec<TcpStream> = (0..2).map(|_| hold()).collect();
    // Once the server holds both (it reads their heads when it gets to
    // them), a third is refused; until then it is served.
    let url = format!("{}{}", server.base, Server::source_path(&app, "history"));
    let refused = wait_for("the two held requests to fill the cap", || {
        // A probe that took a place while a holder was read in got that
        // holder refused (answered): open it again.
        for holder in holders.iter_mut() {
            let waiting = matches!(holder.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if !waiting {
                *holder = hold();
            }
        }
        match ureq::get(&url).call() {
            Err(ureq::Error::Status(429, response)) => Some(response),
            Ok(served) if served.status() == 200 => None,
            other => panic!("expected 429 or, before the cap is full, 200; got {other:?}"),
        }
    });
    assert_eq!(refused.header("retry-after"), Some("1"));
    let body: Value = serde_json::from_str(&refused.into_string().unwrap()).unwrap();
    assert_eq!(body["errorCode"], "TOO_MANY_REQUESTS", "{body}");
    // Closing them frees both places: served again, once the server has
    // seen the connections go.
    drop(holders);
    wait_for("the cap to be freed", || {
        match server.call("GET", &Server::source_path(&app, "history"), None).0 {
            200 => Some(()),
            429 => None,
            other => panic!("{other}"),
        }
    });
}

/// `trigger`, signed `offset` seconds from now: two triggers in one second
/// would otherwise sign the same bytes.
fn trigger_signed_at(server: &Server, app: &App, secret: &str, at: i64) -> (u16, Value) {
    let body = json!({
        "workspaceId": app.workspace_id,
        "importsourceId": app.import_source_id,
        "scheduled": false,
    })
    .to_string();
    let signature = assets_server::signing::sign(secret, at, body.as_bytes());
    server.call_with(
        "POST",
        &app.callback_url,
        Some(body),
        &[
            ("x-assets-timestamp", &at.to_string()),
            ("x-assets-signature", &signature),
        ],
    )
}

#[test]
fn imports_beyond_an_apps_cap_get_429_with_retry_after() {
    // The first import waits on a third party this test holds (the hostile
    // app's `tarpit`): it is running for exactly as long as the test says,
    // and the test knows it runs when its request arrives.
    let third_party = TcpListener::bind("127.0.0.1:0").unwrap();
    third_party.set_nonblocking(true).unwrap();
    let url = format!("http://{}", third_party.local_addr().unwrap());
    let evil = format!("evil={}", hostile());
    let target = format!("evil:url={url}/hold");
    let allow = format!("evil:{url}");
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--app",
        &evil,
        "--app-config",
        "evil:hostile=tarpit",
        "--app-config",
        &target,
        "--app-allow",
        &allow,
        "--max-imports-per-app",
        "1",
    ]);
    let app = app_named(&server, "evil");
    let secret = server.secrets["evil"].clone();
    let answer = |mut stream: TcpStream| {
        stream.set_nonblocking(false).unwrap();
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
    };
    // Each call signed at its own second, fixed up front: the same second
    // would sign the same bytes, refused as a replay, and a busy machine may
    // take a second or more between two calls.
    let signed = chrono::Utc::now().timestamp();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| trigger_signed_at(&server, &app, &secret, signed));
        let (held, _) = wait_for("the first import's request to the third party", || {
            third_party.accept().ok()
        });
        let (status, refused) = trigger_signed_at(&server, &app, &secret, signed - 1);
        assert_eq!(
            (status, refused["errorCode"].as_str()),
            (429, Some("TOO_MANY_REQUESTS")),
            "{refused}"
        );
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("app evil is already running 1 imports"),
            "{refused}"
        );
        answer(held);
        let (status, outcome) = first.join().unwrap();
        assert_eq!(status, 200, "{outcome}");
    });
    // Once the first is done there is room again.
    let second = std::thread::spawn(move || {
        let (stream, _) = wait_for("the second import's request", || third_party.accept().ok());
        answer(stream);
    });
    let (status, outcome) = trigger_signed_at(&server, &app, &secret, signed - 2);
    assert_eq!(status, 200, "{outcome}");
    second.join().unwrap();
}

/// Runs `app` once through its web trigger on a `--profile forge` server
/// started with `extra`; the outcome and the history line it left.
fn forge_run(app_arg: &str, name: &str, extra: &[&str]) -> (Value, Value) {
    let mut args = vec!["--clock", "virtual", "--profile", "forge", "--app", app_arg];
    args.extend_from_slice(extra);
    let server = Server::fresh(&args);
    let app = app_named(&server, name);
    let (status, outcome) = trigger(&server, &app, &server.secrets[name]);
    assert_eq!(status, 200, "{outcome}");
    let history = server.history(&app);
    assert_eq!(history.len(), 1, "one recorded run: {history:?}");
    assert_eq!(history[0]["status"], "failed", "{history:?}");
    (outcome, history[0].clone())
}

#[test]
fn the_forge_profiles_web_trigger_limit_is_55_s() {
    // The value the `forge` profile gives each web-trigger invocation, where
    // it is defined; that a spinning app is stopped by its limit is checked
    // below with a limit short enough to wait for.
    assert_eq!(assets_server::FORGE.web_trigger, Duration::from_secs(55));
}

#[test]
fn a_web_trigger_that_spins_past_its_time_limit_fails_naming_the_limit() {
    let spin = format!("spin={}", misbehaving());
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--app",
        &spin,
        "--app-config",
        "spin:test-behaviour=loop",
        "--run-timeout-secs",
        "1",
    ]);
    let app = app_named(&server, "spin");
    let (status, outcome) = trigger(&server, &app, &server.secrets["spin"]);
    assert_eq!(status, 200, "{outcome}");
    let history = server.history(&app);
    assert_eq!(history.len(), 1, "one recorded run: {history:?}");
    let line = &history[0];
    assert_eq!(line["status"], "failed", "{line}");
    assert_eq!(line["objects"], 0, "stopped before it sent anything: {line}");
    let reason = line["failureReason"].as_str().unwrap();
    assert!(reason.contains("app exceeded the 1 s time limit"), "{reason}");
    assert_eq!(outcome["failureReason"].as_str(), Some(reason));
}

#[test]
fn forge_an_app_over_512_mib_fails_naming_the_limit() {
    let hog = format!("hog={}", misbehaving());
    let (_, line) = forge_run(&hog, "hog", &["--app-config", "hog:test-behaviour=allocate"]);
    let reason = line["failureReason"].as_str().unwrap();
    assert!(reason.contains("512 MiB memory limit"), "{reason}");
}

#[test]
fn forge_an_answer_over_5_mb_fails_naming_the_payload_limit() {
    let evil = format!("evil={}", hostile());
    let (_, line) = forge_run(&evil, "evil", &["--app-config", "evil:hostile=big-answer"]);
    let reason = line["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("over the 5000000-byte invocation payload limit"),
        "{reason}"
    );
}

#[test]
fn forge_more_than_100_outbound_requests_a_minute_fail_naming_the_limit() {
    use std::sync::atomic::Ordering;
    let (url, count) = counting_responder();
    let evil = format!("evil={}", hostile());
    let target = format!("evil:url={url}/items");
    let allow = format!("evil:{url}");
    let (outcome, line) = forge_run(
        &evil,
        "evil",
        &[
            "--app-config",
            "evil:hostile=http-flood",
            "--app-config",
            &target,
            "--app-config",
            "evil:requests=150",
            "--app-allow",
            &allow,
        ],
    );
    let reason = line["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("app exceeded the limit of 100 outbound HTTP requests per minute"),
        "{reason} / {outcome}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 100, "the 101st was never sent");
}

#[test]
fn the_local_profile_lets_the_same_flood_through() {
    use std::sync::atomic::Ordering;
    let (url, count) = counting_responder();
    let evil = format!("evil={}", hostile());
    let target = format!("evil:url={url}/items");
    let allow = format!("evil:{url}");
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--app",
        &evil,
        "--app-config",
        "evil:hostile=http-flood",
        "--app-config",
        &target,
        "--app-config",
        "evil:requests=150",
        "--app-allow",
        &allow,
    ]);
    let app = app_named(&server, "evil");
    let (_, outcome) = trigger(&server, &app, &server.secrets["evil"]);
    assert_eq!(report(&outcome)["sent"], 150, "{outcome}");
    assert_eq!(count.load(Ordering::SeqCst), 150);
}

/// A `forge` server whose importer pauses at a checkpoint once less than
/// 54.9 s of its 55 s invocation is left, reading a source whose pages of
/// 1,000 take 200 ms each (real time): the web trigger's own invocation
/// sends one chunk of 1,000, and the other two run on after the answer,
/// however fast the machine is (without the slow page, a fast moment read
/// all three pages within the 100 ms and never paused).
fn pausing_forge_server() -> Server {
    Server::fresh(&[
        "--clock",
        "virtual",
        "--profile",
        "forge",
        "--objects",
        "3000",
        "--page-size",
        "1000",
        "--page-latency-ms",
        "200",
        "--config",
        "time-limit-margin-ms=54900",
        "--config",
        "chunk-max-objects=1000",
    ])
}

#[test]
fn forge_a_run_longer_than_its_web_trigger_answers_202_and_finishes_as_queued_work() {
    let server = pausing_forge_server();
    let app = server.app();
    // 202 is the answer of a trigger whose run went on past it.
    let (status, accepted) = trigger(&server, &app, &server.secret);
    assert_eq!(
        (status, accepted["accepted"].as_bool()),
        (202, Some(true)),
        "{accepted}"
    );
    let line = wait_for("the queued work to finish", || {
        server
            .history(&app)
            .into_iter()
            // Ended, and its invocations counted (the count is written
            // after the status the app reports through the API).
            .find(|l| l["status"] != "running" && !l["status"].is_null() && l["invocations"].is_u64())
    });
    assert_eq!(line["status"], "completed", "{line}");
    assert_eq!(line["objects"], 3000, "{line}");
    assert!(line["invocations"].as_u64().unwrap() >= 2, "{line}");
}

#[test]
fn forge_a_scheduled_run_that_goes_on_past_its_web_trigger_ends_completed_in_the_ledger() {
    let server = pausing_forge_server();
    let app = server.app();
    let schedule = daily_schedule(&app, clock_now(&server), 1);
    let (status, body) = server.call("POST", &Server::source_path(&app, "importschedule"), Some(schedule));
    assert_eq!(status, 201, "{body}");
    server.advance(2 * 3600);
    let entry = wait_for("the occurrence to end", || {
        let (status, page) = server.admin("GET", "/_admin/occurrences", None);
        assert_eq!(status, 200, "{page}");
        let entries = page["occurrences"].as_array().unwrap().clone();
        entries.into_iter().find(|e| e["state"] != "delivering")
    });
    assert_eq!(entry["state"], "completed", "{entry}");
    let history = server.history(&app);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (history[0]["status"].as_str(), history[0]["objects"].as_u64()),
        (Some("completed"), Some(3000))
    );
}
