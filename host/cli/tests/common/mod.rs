//! The `assets-host serve` child process and HTTP helpers the serve tests share.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `assets-host serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
    pub secret: String,
    /// Every hosted app's secret, by name.
    pub secrets: std::collections::HashMap<String, String>,
    /// The `--token` it was started with: the admin helpers send it.
    pub token: Option<String>,
    /// Its node name, on a database several nodes share.
    pub node: Option<String>,
}

#[derive(Clone)]
pub struct App {
    pub workspace_id: String,
    pub import_source_id: String,
    pub callback_url: String,
}

/// A loopback port this test holds for as long as it needs it: a listening
/// socket bound to port 0, which every server started on it inherits
/// (`serve --listen-fd`). No other test can be given the port in between,
/// also across a server's restart; and its number is known before the first
/// start, for the flags that name it.
///
/// While no server runs on it, a connection to it is accepted by the kernel
/// and never answered (the backlog holds it), not refused; a server started
/// on it closes those first ([`Port::refuse_waiting`]), so a request sent
/// while none ran is not served by the next one.
pub struct Port {
    listener: TcpListener,
}

impl Port {
    pub fn new() -> Port {
        Port {
            listener: TcpListener::bind("127.0.0.1:0").expect("a loopback port"),
        }
    }

    pub fn number(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Closes every connection waiting in the backlog, as a stopped server's
    /// closed socket would have refused it. Only while no server runs on the
    /// port: it leaves the shared socket non-blocking, which the server sets
    /// anyway.
    fn refuse_waiting(&self) {
        self.listener.set_nonblocking(true).unwrap();
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Default for Port {
    fn default() -> Self {
        Port::new()
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("assets-serve-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Leaves `listener` open across exec in the child, at its own number, and
/// tells the server that number.
fn inherit_listener(command: &mut Command, listener: &TcpListener) {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let fd = listener.as_raw_fd();
    command.args(["--listen-fd", &fd.to_string()]);
    // SAFETY: between fork and exec only an async-signal-safe call is made,
    // on a descriptor the child has (fork copied it). It stays close-on-exec
    // in this process, so children other tests spawn meanwhile do not get it.
    // Not dup2 to a fixed number: that number may be one std's spawn uses.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Server {
    /// Starts a server on `port` with `db`, hosting the importer as `demo`.
    pub fn start(db: &Path, port: &Port, extra: &[&str]) -> Server {
        let log = db.with_extension(format!("{}.{}.log", port.number(), uuid::Uuid::new_v4().simple()));
        Server::launch(db.as_os_str(), log, port, extra)
    }

    /// Starts a server on `port` with `db` (a file or a PostgreSQL URL),
    /// logging to `log`, hosting the importer as `demo`.
    pub fn launch(db: &std::ffi::OsStr, log: PathBuf, port: &Port, extra: &[&str]) -> Server {
        let component = assets_host::cli::default_component_path();
        assert!(
            component.exists(),
            "{} is missing; run `make test`",
            component.display()
        );
        // A request sent to the port while no server ran (one a client
        // retried after a kill) is refused, not left for this server.
        port.refuse_waiting();
        let mut command = Command::new(env!("CARGO_BIN_EXE_assets-host"));
        command.arg("serve");
        inherit_listener(&mut command, &port.listener);
        command.arg("--db");
        let mut child = command
            .arg(db)
            .arg("--app")
            .arg(format!("demo={}", component.display()))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("assets-host starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut base, mut secret) = (String::new(), String::new());
        let (mut secrets, mut app) = (std::collections::HashMap::new(), String::new());
        let mut node = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                base = url.trim().to_owned();
            }
            if let Some(name) = line.strip_prefix("  app ") {
                app = name.trim().to_owned();
            }
            if let Some(s) = line.trim().strip_prefix("secret") {
                secrets.insert(app.clone(), s.trim().to_owned());
                if app == "demo" {
                    secret = s.trim().to_owned();
                }
            }
            if let Some(id) = line.trim().strip_prefix("node ") {
                node = Some(id.trim().to_owned());
            }
            if line.starts_with("ready") {
                break;
            }
        }
        let token = extra
            .windows(2)
            .find(|pair| pair[0] == "--token")
            .map(|pair| pair[1].to_owned());
        let server = Server {
            child,
            base,
            log,
            secret,
            secrets,
            token,
            node,
        };
        assert!(
            !server.base.is_empty(),
            "no address printed; log:\n{}",
            server.log_text()
        );
        server
    }

    /// Starts a server on a port of its own with a new database.
    pub fn fresh(extra: &[&str]) -> Server {
        Server::start(&temp_dir().join("state.db"), &Port::new(), extra)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An admin call, with the server's token when it has one.
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        self.call_with(method, path, body.map(|b| b.to_string()), &headers)
    }

    pub fn app(&self) -> App {
        let (status, apps) = self.admin("GET", "/_admin/apps", None);
        assert_eq!(status, 200);
        let app = &apps[0];
        App {
            workspace_id: app["workspaceId"].as_str().unwrap().to_owned(),
            import_source_id: app["importSourceId"].as_str().unwrap().to_owned(),
            callback_url: app["callbackUrl"].as_str().unwrap().to_owned(),
        }
    }

    /// One request; the status and the JSON body (Null when empty).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body.map(|b| b.to_string()), &[])
    }

    pub fn call_with(&self, method: &str, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = ureq::request(method, &url).timeout(Duration::from_secs(120));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some(body) => request.set("content-type", "application/json").send_string(&body),
            None => request.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}\nlog:\n{}", self.log_text()),
        };
        let status = response.status();
        let text = response.into_string().unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path} answered non-JSON: {text}"))
        };
        (status, value)
    }

    pub fn source_path(app: &App, rest: &str) -> String {
        format!(
            "/jsm/assets/workspace/{}/v1/importsource/{}/{rest}",
            app.workspace_id, app.import_source_id
        )
    }

    pub fn advance(&self, seconds: u64) -> Vec<Value> {
        let (status, body) = self.admin("POST", "/_admin/clock/advance", Some(json!({ "seconds": seconds })));
        assert_eq!(status, 200, "{body}");
        body["firings"].as_array().unwrap().clone()
    }

    pub fn history(&self, app: &App) -> Vec<Value> {
        let (status, body) = self.call("GET", &Server::source_path(app, "history"), None);
        assert_eq!(status, 200, "{body}");
        body.as_array().unwrap().clone()
    }

    /// SIGTERM, then wait: the graceful path.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "serve exited with {status}; log:\n{}",
            self.log_text()
        );
    }

    /// The server's process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a server already told to stop; asserts it exited 0.
    pub fn wait_exit(mut self) {
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "serve exited with {status}; log:\n{}",
            self.log_text()
        );
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DAILY schedule whose first run is `hours_ahead` after `from`.
pub fn daily_schedule(app: &App, from: chrono::DateTime<chrono::Utc>, hours_ahead: i64) -> Value {
    let start = from + chrono::Duration::hours(hours_ahead);
    json!({
        "runFrequency": "DAILY",
        "startTime": start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "timezone": "America/New_York",
        "callbackUrl": app.callback_url,
    })
}

pub fn clock_now(server: &Server) -> chrono::DateTime<chrono::Utc> {
    let (_, clock) = server.admin("GET", "/_admin/clock", None);
    clock["now"].as_str().unwrap().parse().unwrap()
}

/// An external app at a loopback address: it takes callbacks one at a time.
pub struct Receiver {
    pub listener: TcpListener,
    pub url: String,
}

/// One callback as received.
pub struct Callback {
    pub stream: TcpStream,
    pub body: Value,
}

impl Receiver {
    pub fn new() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        Receiver { listener, url }
    }

    /// The `--callback-allow` entry that lets schedules call this receiver
    /// (a loopback address, so it must be named exactly).
    pub fn allow_entry(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    pub fn accept(&self) -> TcpStream {
        let (stream, _) = self.listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    /// Reads one HTTP request from `stream`: its JSON body.
    pub fn read(stream: TcpStream) -> Callback {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        Callback {
            stream,
            body: serde_json::from_slice(&body).unwrap(),
        }
    }

    /// Answers 202: accepted; the import is reported through the API.
    pub fn accept_callback(mut stream: TcpStream) {
        let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    }
}

/// A new database on the PostgreSQL server `ASSETS_TEST_PG` names (`make
/// test` starts one); its URL. Fails, never skips, without a server.
pub fn fresh_postgres() -> String {
    let base = std::env::var("ASSETS_TEST_PG").expect(
        "ASSETS_TEST_PG is not set: the PostgreSQL tests need a server. `make test` starts a throwaway one \
         (scripts/with-postgres); by hand: scripts/with-postgres cargo test -p assets-host --test cluster",
    );
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base}: {e}"));
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (server, _) = base.rsplit_once('/').expect("a URL ending in /DATABASE");
    format!("{server}/{name}")
}

/// A load balancer in miniature: each connection goes to the next backend
/// port that accepts it, so a dead node is passed over.
pub struct Proxy {
    pub url: String,
    /// Which backends take connections. A stopped node's held [`Port`]
    /// would accept a connection and never answer it, so the proxy is told.
    alive: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl Proxy {
    /// A round-robin proxy to `ports`, all taken as running.
    pub fn start(ports: Vec<u16>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let alive = std::sync::Arc::new(std::sync::Mutex::new(vec![true; ports.len()]));
        let up = alive.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                next += 1;
                let running = up.lock().unwrap().clone();
                let backend = (0..ports.len())
                    .map(|k| (next + k) % ports.len())
                    .filter(|&i| running[i])
                    .find_map(|i| TcpStream::connect(("127.0.0.1", ports[i])).ok());
                if let Some(backend) = backend {
                    pipe(client, backend);
                }
            }
        });
        Proxy { url, alive }
    }

    /// Says whether backend `i` is running.
    pub fn set_alive(&self, i: usize, running: bool) {
        self.alive.lock().unwrap()[i] = running;
    }
}

/// Copies bytes both ways until either side closes.
fn pipe(client: TcpStream, backend: TcpStream) {
    let (mut client_in, mut backend_out) = (client.try_clone().unwrap(), backend.try_clone().unwrap());
    let (mut backend_in, mut client_out) = (backend, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut backend_out);
        let _ = backend_out.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut backend_in, &mut client_out);
        let _ = client_out.shutdown(std::net::Shutdown::Write);
    });
}

/// A test guest's component, built by `make test-guest`.
pub fn guest(var: &str, file: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/wasm32-wasip2/wasm")
            .join(file)
    });
    assert!(path.exists(), "{} is missing; run `make test-guest`", path.display());
    path
}

pub fn hostile() -> String {
    guest("ASSETS_HOSTILE_GUEST", "hostile_guest.wasm")
        .display()
        .to_string()
}

pub fn misbehaving() -> String {
    guest("ASSETS_TEST_GUEST", "misbehaving_guest.wasm")
        .display()
        .to_string()
}

/// The hosted app `name`: its workspace, import source and web trigger.
pub fn app_named(server: &Server, name: &str) -> App {
    let (status, apps) = server.admin("GET", "/_admin/apps", None);
    assert_eq!(status, 200, "{apps}");
    let app = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no app {name}: {apps}"));
    App {
        workspace_id: app["workspaceId"].as_str().unwrap().to_owned(),
        import_source_id: app["importSourceId"].as_str().unwrap().to_owned(),
        callback_url: app["callbackUrl"].as_str().unwrap().to_owned(),
    }
}

/// Calls `app`'s web trigger as the platform would, signed with `secret`:
/// the status and the answer.
pub fn trigger(server: &Server, app: &App, secret: &str) -> (u16, Value) {
    let body = json!({
        "workspaceId": app.workspace_id,
        "importsourceId": app.import_source_id,
        "scheduled": false,
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let signature = assets_server::signing::sign(secret, now, body.as_bytes());
    server.call_with(
        "POST",
        &app.callback_url,
        Some(body),
        &[
            ("x-assets-timestamp", &now.to_string()),
            ("x-assets-signature", &signature),
        ],
    )
}

/// What the hostile guest reported (its run's failure reason, as JSON).
pub fn report(outcome: &Value) -> Value {
    let reason = outcome["failureReason"]
        .as_str()
        .unwrap_or_else(|| panic!("no report: {outcome}"));
    serde_json::from_str(reason).unwrap_or_else(|e| panic!("{e}: {reason}"))
}

/// A third party that answers every request with 200, counting them.
pub fn counting_responder() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, count)
}

/// How long a test waits for an event before it calls it a hang: a guard,
/// not a timing (the event comes far sooner on any machine).
pub const HANG_GUARD: Duration = Duration::from_secs(300);

/// Polls `ready` until it gives a value; panics naming `what` after
/// [`HANG_GUARD`].
pub fn wait_for<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let guard = Instant::now() + HANG_GUARD;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            Instant::now() < guard,
            "hang guard: still waiting for {what} after {HANG_GUARD:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The HTTP JSON importer composed by `make compose`.
pub fn composed_importer() -> PathBuf {
    std::env::var_os("ASSETS_COMPOSED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/composed"))
        .join("http-json-importer.wasm")
}

/// Every page of the ledger, read from `server`.
pub fn ledger(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/_admin/occurrences?cursor={c}"),
            None => "/_admin/occurrences".to_owned(),
        };
        let (status, page) = server.call("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        all.extend(page["occurrences"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// Settles a cluster's ledger, read and advanced through `server`: while
/// anything is delivering, the shared clock moves an hour at a time, at most
/// `hours` times (deliveries a dead node left are taken over once its lease
/// runs out, in platform time; each advance waits for the deliveries it
/// starts, so the ledger read back after it is the event to wait on); then
/// the nodes' own scheduler passes (every second) fail what is left once
/// its run's heartbeat lapses (wall-clock time), within `hang_guard`.
pub fn settle(server: &Server, hours: usize, hang_guard: Duration) {
    let mut advanced = 0;
    let mut guard = None;
    loop {
        let delivering = ledger(server).iter().filter(|e| e["state"] == "delivering").count();
        if delivering == 0 {
            return;
        }
        if advanced < hours {
            server.advance(3600);
            advanced += 1;
            continue;
        }
        let guard = *guard.get_or_insert_with(|| Instant::now() + hang_guard);
        assert!(
            Instant::now() < guard,
            "hang guard: {delivering} occurrences still delivering after {advanced} clock hours and {hang_guard:?}; \
             log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
