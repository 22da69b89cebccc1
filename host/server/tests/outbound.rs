//! The real outbound client against third parties that misbehave: an
//! upload to a peer that reads a few bytes at a time ends at the request's
//! time limit (the error names it, and the upload stops short of its
//! body; no test measures time), and a name that resolves inward is not
//! connected to.

use assets_runtime::bindings::outbound_http::{HttpError, Method, Request};
use assets_runtime::{OutboundHttp, OutboundRequest};
use assets_server::http_client::HttpOutbound;
use std::io::Read as _;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn request(url: String, body: Option<Vec<u8>>, timeout_ms: u32) -> OutboundRequest {
    let guest = Request {
        method: if body.is_some() { Method::Post } else { Method::Get },
        url,
        headers: vec![],
        body,
        timeout_ms: Some(timeout_ms),
    };
    OutboundRequest::from_guest(guest, Duration::from_secs(60)).unwrap()
}

/// What the slow reader saw of one upload: the bytes it read, and
/// whether the client has ended the connection.
#[derive(Default)]
struct Seen {
    read: usize,
    ended: bool,
}

/// A third party that reads each connection `piece` bytes every `pause`
/// (a throttle, not a wait for anything) until `reading_for` has passed,
/// then not at all (holding it open until the client ends it): the URL to
/// upload to, and what it saw of the last upload.
fn slow_reader(piece: usize, pause: Duration, reading_for: Duration) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut buf = vec![0u8; piece];
                loop {
                    if started.elapsed() >= reading_for {
                        // Stop reading, holding the connection open.
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => record.lock().unwrap().read += n,
                        _ => {
                            record.lock().unwrap().ended = true;
                            return;
                        }
                    }
                    std::thread::sleep(pause);
                }
            });
        }
    });
    (url, seen)
}

/// How long the test waits for the client to end an upload before it gives
/// up: a hang guard, never the property under test.
const HANG_GUARD: Duration = Duration::from_secs(600);

#[test]
fn an_upload_to_a_peer_that_reads_slowly_ends_at_the_time_limit() {
    // Reads 16 KiB every 100 ms: every write makes a little progress, so a
    // socket write timeout alone never fires. 40 MiB at that pace would
    // take over four minutes.
    let (url, seen) = slow_reader(16 * 1024, Duration::from_millis(100), Duration::MAX);
    let body = 40 << 20;
    let answer = HttpOutbound::default().send(request(url, Some(vec![b'x'; body]), 2000));
    assert!(matches!(answer, Err(HttpError::Timeout(_))), "{answer:?}");
    // The upload itself ended (the peer saw the connection end) before the
    // whole body went: cut by the limit, not by its completion.
    let guard = Instant::now() + HANG_GUARD;
    while !seen.lock().unwrap().ended {
        assert!(Instant::now() < guard, "hang guard: the upload never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = seen.lock().unwrap().read;
    assert!(read < body, "the whole body went ({read} bytes)");
}

#[test]
fn an_upload_to_a_peer_that_stops_reading_just_before_the_deadline_ends_at_it() {
    // Reads 64 KiB every 10 ms for 4.8 s, then not at all: the socket write blocked then
    // used to wait out the socket's own timeout (set once, for the whole
    // request), ending near twice the request's 5 s with the socket's
    // error. Now the app is answered at its deadline, and told so.
    let (url, _) = slow_reader(64 * 1024, Duration::from_millis(10), Duration::from_millis(4800));
    let answer = HttpOutbound::default().send(request(url, Some(vec![b'x'; 100 << 20]), 5000));
    let Err(HttpError::Timeout(why)) = answer else {
        panic!("{answer:?}")
    };
    assert!(
        why.contains("no answer within 5000 ms; the request was abandoned"),
        "answered at the request's own deadline: {why}"
    );
}

#[test]
fn a_name_that_resolves_inward_is_not_connected_to_but_the_address_itself_is() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    // A name this test points inward, not one /etc/hosts happens to.
    let name = "inward.example.test";
    let client = HttpOutbound::with_pinned([(name.to_owned(), std::net::Ipv4Addr::LOCALHOST.into())].into());
    let refused = client.send(request(format!("http://{name}:{port}/x"), None, 2000));
    let Err(HttpError::Connection(why)) = refused else {
        panic!("{name} resolves to loopback and was connected to: {refused:?}")
    };
    assert!(why.contains("127.0.0.1 (loopback)"), "{why}");
    for host in ["127.0.0.1", "localhost"] {
        let answer = client.send(request(format!("http://{host}:{port}/x"), None, 2000));
        assert_eq!(answer.map(|r| r.status).ok(), Some(200), "{host}");
    }
}
