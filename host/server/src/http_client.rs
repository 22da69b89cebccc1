//! The real HTTP client, on the host side of the sandbox.
//!
//! One blocking client (`ureq`) behind the small traits the sandbox and the
//! scheduler already use, so a guest cannot tell an in-process call from a
//! network one:
//!
//! - [`HttpOutbound`]: an app's third-party calls ([`OutboundHttp`]); always
//!   wrapped in the app's [`EgressGuard`](assets_runtime::EgressGuard).
//!   Redirects are not followed — the guest sees the 3xx, and any follow-up
//!   request passes the allowlist again.
//! - [`HttpAssets`]: an app's Assets API calls ([`AssetsBackend`]) to a base
//!   URL, adding the host's credential; the guest never sees it.
//! - [`HttpCallbacks`]: the scheduler's signed callbacks to apps' web
//!   triggers ([`Callbacks`]), connecting only to addresses the
//!   [`PublicResolver`] lets through.

use crate::callback_targets::PublicResolver;
use crate::signing;
use assets_platform::assets::ImportSource;
use assets_platform::clock::{Clock, SystemClock};
use assets_platform::scheduler::Callbacks;
use assets_platform::trigger::TriggerOutcome;
use assets_runtime::bindings::assets_api::{CallError, Method, Response};
use assets_runtime::bindings::import_callback::TriggerEvent;
use assets_runtime::bindings::outbound_http::{self, HttpError};
use assets_runtime::{method_name, ApiPath, AssetsBackend, OutboundHttp, OutboundRequest};
use serde_json::json;
use std::collections::HashMap;
use std::io::Read as _;
use std::time::Duration;

/// Largest response body read from any peer; more is an error, so a peer
/// cannot exhaust host memory.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(timeout)
        .redirects(0)
        .build()
}

/// How a request got no answer.
enum Failure {
    Timeout(String),
    Connection(String),
    InvalidUrl(String),
}

fn failure(url: &str, error: ureq::Transport) -> Failure {
    use ureq::ErrorKind;
    let text = error.to_string();
    let timed_out = std::error::Error::source(&error)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock))
        || text.contains("timed out");
    match error.kind() {
        ErrorKind::InvalidUrl | ErrorKind::UnknownScheme => Failure::InvalidUrl(format!("{url}: {text}")),
        _ if timed_out => Failure::Timeout(format!("{url}: no answer in time")),
        _ => Failure::Connection(format!("{url}: {text}")),
    }
}

/// An answer of any status: status, lower-cased headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads an answer, at most [`MAX_RESPONSE_BYTES`] of body.
fn read(response: ureq::Response) -> Result<Answer, String> {
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_owned();
            Some((name.to_ascii_lowercase(), value))
        })
        .collect();
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("the answer was cut off: {e}"))?;
    if body.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"));
    }
    Ok((status, headers, body))
}

fn send(request: ureq::Request, url: &str, body: Option<&[u8]>) -> Result<Answer, Failure> {
    let result = match body {
        Some(body) => request.send_bytes(body),
        None => request.call(),
    };
    answer(result, url)
}

/// The answer of a request `ureq` sent, of any status, or how it failed.
fn answer(result: Result<ureq::Response, ureq::Error>, url: &str) -> Result<Answer, Failure> {
    match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => {
            read(response).map_err(|why| Failure::Connection(format!("{url}: {why}")))
        }
        Err(ureq::Error::Transport(error)) => Err(failure(url, error)),
    }
}

/// Third-party HTTP for one app's guests, over the network: one connection
/// pool per app (make one `HttpOutbound` per app), so no app's requests ride
/// on a connection another app opened. Names are resolved by
/// [`PublicNames`]: DNS cannot turn an allowed name into an internal
/// address.
pub struct HttpOutbound {
    agent: ureq::Agent,
}

impl Default for HttpOutbound {
    fn default() -> Self {
        HttpOutbound::with_pinned(HashMap::new())
    }
}

impl HttpOutbound {
    /// A client that resolves each name of `pinned` to its address instead
    /// of asking DNS (curl's `--resolve`). The address is then judged like
    /// one DNS gave: a name pinned to an internal address is refused.
    pub fn with_pinned(pinned: HashMap<String, std::net::IpAddr>) -> HttpOutbound {
        let pinned = pinned
            .into_iter()
            .map(|(name, ip)| (name.to_ascii_lowercase(), ip))
            .collect();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(assets_runtime::outbound::DEFAULT_TIMEOUT)
            .redirects(0)
            .resolver(PublicNames { pinned })
            .build();
        HttpOutbound { agent }
    }
}

/// Resolves the hosts of an app's requests. A URL that names an address
/// (`http://10.0.0.7/`, `http://localhost:8000/`) is taken at its word: the
/// egress allowlist decided on exactly that. A domain name must resolve to
/// public addresses: internal ones (loopback, private, link-local and
/// metadata, ...) are dropped, so an allowlisted name whose DNS someone else
/// controls cannot point the app at the host's own network or its cloud's
/// metadata service. To reach an internal service, allow it and call it by
/// its address.
pub struct PublicNames {
    /// Names looked up here instead of in DNS (lowercase), see
    /// [`HttpOutbound::with_pinned`].
    pinned: HashMap<String, std::net::IpAddr>,
}

impl ureq::Resolver for PublicNames {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        use std::net::ToSocketAddrs as _;
        let (host, port) = netloc.rsplit_once(':').unwrap_or((netloc, ""));
        let pinned = match (self.pinned.get(&host.to_ascii_lowercase()), port.parse()) {
            (Some(ip), Ok(port)) => Some(std::net::SocketAddr::new(*ip, port)),
            _ => None,
        };
        let addresses: Vec<std::net::SocketAddr> = match pinned {
            Some(address) => vec![address],
            None => netloc.to_socket_addrs()?.collect(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_ok() || crate::callback_targets::is_localhost(host) {
            return Ok(addresses);
        }
        let mut refused = Vec::new();
        let public: Vec<std::net::SocketAddr> = addresses
            .into_iter()
            .filter(|a| match crate::address::internal(a.ip()) {
                Some(why) => {
                    refused.push(format!("{} ({why})", a.ip()));
                    false
                }
                None => true,
            })
            .collect();
        if public.is_empty() && !refused.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{host} resolves to {}: an app's requests reach an internal address only when its URL and \
                     its egress allowlist name that address itself",
                    refused.join(", ")
                ),
            ));
        }
        Ok(public)
    }
}

/// A request body read out within a deadline: `ureq` sets a socket's write
/// timeout once, so a peer that reads a few bytes at a time would keep an
/// upload going long past it; reading the body through this ends the
/// upload at the deadline.
struct DeadlineBody {
    body: Vec<u8>,
    sent: usize,
    deadline: std::time::Instant,
}

impl std::io::Read for DeadlineBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::time::Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body was not sent within the request's time limit",
            ));
        }
        // Small pieces, so the deadline is looked at often.
        let n = buf.len().min(16 * 1024).min(self.body.len() - self.sent);
        buf[..n].copy_from_slice(&self.body[self.sent..self.sent + n]);
        self.sent += n;
        Ok(n)
    }
}

impl OutboundHttp for HttpOutbound {
    fn send(&self, mut request: OutboundRequest) -> Result<outbound_http::Response, HttpError> {
        // The URL object the allowlist decided on, not a string parsed
        // again; the method and headers are `http`'s types, already checked.
        let body = request.body.take();
        let url = request.url();
        let mut call = self
            .agent
            .request_url(request.method.as_str(), url)
            .timeout(request.timeout);
        for (name, value) in &request.headers {
            // `OutboundRequest` holds visible ASCII only; should that ever
            // change, the request is refused, never a panic.
            let value = value.to_str().map_err(|_| {
                HttpError::InvalidRequest(format!("header {name}: not visible ASCII; nothing was sent"))
            })?;
            call = call.set(name.as_str(), value);
        }
        let deadline = std::time::Instant::now() + request.timeout;
        let target = url.to_string();
        let exchange = move || match body {
            // The length is the host's to set (the app may not); the body
            // goes out through a reader that stops at the deadline.
            Some(body) => {
                let call = call.set("content-length", &body.len().to_string());
                let body = DeadlineBody {
                    body,
                    sent: 0,
                    deadline,
                };
                answer(call.send(body), &target)
            }
            None => send(call, &target, None),
        };
        // On a thread of its own, waited for until the deadline and no
        // longer: a socket write blocked on a peer that stopped reading
        // waits out the socket's own timeout, which `ureq` set once, for
        // the whole request; the app is answered at its deadline instead,
        // and the thread ends at that timeout (it can never outlive it).
        let (finished, outcome) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("outbound-http".into())
            .spawn(move || drop(finished.send(exchange())));
        if let Err(e) = spawned {
            return Err(HttpError::Connection(format!(
                "{url}: not sent: no thread for it ({e})"
            )));
        }
        let grace = Duration::from_millis(100);
        let result = outcome.recv_timeout(request.timeout + grace).unwrap_or_else(|_| {
            Err(Failure::Timeout(format!(
                "{url}: no answer within {} ms; the request was abandoned",
                request.timeout.as_millis()
            )))
        });
        match result {
            Ok((status, headers, body)) => Ok(outbound_http::Response { status, headers, body }),
            Err(Failure::Timeout(why)) => Err(HttpError::Timeout(why)),
            Err(Failure::Connection(why)) => Err(HttpError::Connection(why)),
            Err(Failure::InvalidUrl(why)) => Err(HttpError::InvalidUrl(why)),
        }
    }
}

/// The Assets API at a base URL (`http://127.0.0.1:8080`,
/// `https://api.atlassian.com`), called with the host's credential.
pub struct HttpAssets {
    agent: ureq::Agent,
    base: url::Url,
    authorization: Option<String>,
}

impl HttpAssets {
    /// Calls `base_url`, sending `Authorization: Bearer {token}` when a token
    /// is given.
    pub fn new(base_url: &str, token: Option<&str>) -> anyhow::Result<HttpAssets> {
        let base = url::Url::parse(base_url)
            .map_err(|e| anyhow::anyhow!("the Assets API URL {base_url:?} is not a URL: {e}"))?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https") && base.host().is_some() && base.query().is_none(),
            "the Assets API URL {base_url:?} must be an http(s) URL with a host and no query"
        );
        Ok(HttpAssets {
            agent: agent(assets_runtime::outbound::DEFAULT_TIMEOUT),
            base,
            authorization: token.map(|t| format!("Bearer {t}")),
        })
    }

    /// The URL a call to `path` goes to: the base's origin and path prefix,
    /// then exactly the path and query the sandbox checked.
    pub fn url(&self, path: &ApiPath) -> url::Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{}", path.path()));
        url.set_query(path.query());
        url
    }
}

impl AssetsBackend for HttpAssets {
    fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
        self.call_for(method, path, body, None)
    }

    fn call_for(
        &self,
        method: Method,
        path: &ApiPath,
        body: Option<&str>,
        delivery: Option<&str>,
    ) -> Result<Response, CallError> {
        let url = self.url(path);
        let mut request = self.agent.request_url(method_name(method), &url);
        if let Some(authorization) = &self.authorization {
            request = request.set("authorization", authorization);
        }
        if let Some(delivery) = delivery {
            request = request.set(assets_runtime::DELIVERY_HEADER, delivery);
        }
        if body.is_some() {
            request = request.set("content-type", "application/json");
        }
        match send(request, url.as_str(), body.map(str::as_bytes)) {
            Ok((status, headers, body)) => Ok(Response {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
            Err(Failure::Timeout(why)) => Err(CallError::Timeout(why)),
            Err(Failure::Connection(why) | Failure::InvalidUrl(why)) => Err(CallError::Unreachable(why)),
        }
    }
}

/// Tries of a callback its target answers 429, the first included.
pub const CALLBACK_TRIES: u32 = 5;

/// Longest wait before trying a 429'd callback again, whatever the
/// target's `Retry-After` asks. The waits double from 1 s (1, 2, 4, 8):
/// 15 s in all, longer than a stranger can hold a web trigger's body
/// (`routes::WEBTRIGGER_BODY_TIMEOUT`, 5 s).
pub const MAX_RETRY_AFTER_SECS: u64 = 8;

/// Signed scheduled callbacks over HTTP: a hosted app's with the app's
/// secret, any other source's with its own; never unsigned.
pub struct HttpCallbacks {
    agent: ureq::Agent,
    secrets: HashMap<String, String>,
    /// What a signature's timestamp is read from: the time the receiver
    /// checks it against ([`HttpCallbacks::with_wall_clock`]).
    wall: std::sync::Arc<dyn Clock>,
}

impl HttpCallbacks {
    /// Callbacks that give up after `timeout` (the whole run happens inside
    /// the call, so this is the longest a run may take), signed with
    /// `secrets` by hosted app name, connecting only where `resolver` lets
    /// them.
    pub fn new(timeout: Duration, secrets: HashMap<String, String>, resolver: PublicResolver) -> HttpCallbacks {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(timeout)
            .redirects(0)
            .resolver(resolver)
            .build();
        HttpCallbacks {
            agent,
            secrets,
            wall: std::sync::Arc::new(SystemClock),
        }
    }

    /// Stamps signatures with `wall`'s time: on several nodes the database's,
    /// which the receiving node checks them against.
    pub fn with_wall_clock(mut self, wall: std::sync::Arc<dyn Clock>) -> HttpCallbacks {
        self.wall = wall;
        self
    }
}

/// The callback body: what the real platform sends (`workspaceId`,
/// `importsourceId` as it spells it, `scheduled: true`), the
/// `importSourceId` spelling the API itself uses, and the occurrence fields
/// an idempotent receiver needs.
pub fn callback_body(event: &TriggerEvent) -> serde_json::Value {
    json!({
        "workspaceId": event.workspace_id,
        "importSourceId": event.import_source_id,
        "importsourceId": event.import_source_id,
        "scheduled": event.scheduled,
        "scheduleId": event.schedule_id,
        "occurrenceId": event.occurrence_id,
        "nominalTime": event.nominal_time,
        "attempt": event.attempt,
    })
}

impl Callbacks for HttpCallbacks {
    fn call(&self, source: &ImportSource, url: &str, event: &TriggerEvent) -> Result<Option<TriggerOutcome>, String> {
        let hosted = source.app.as_deref().and_then(|a| self.secrets.get(a));
        let Some(secret) = hosted.or(source.signing_secret.as_ref()) else {
            return Err(format!(
                "import source {} has no signing secret and callbacks are never sent unsigned; \
                 create a new source with POST /_admin/importsource, whose answer carries its secret",
                source.id
            ));
        };
        let body = serde_json::to_vec(&callback_body(event)).expect("callback bodies serialize");
        let mut tries = 0;
        let (status, answer) = loop {
            tries += 1;
            // Signed anew each time: a fresh timestamp, a signature never
            // seen, so a retry is not a replay.
            let now = self.wall.now().timestamp();
            let request = self
                .agent
                .post(url)
                .set("content-type", "application/json")
                .set(signing::TIMESTAMP_HEADER, &now.to_string())
                .set(signing::SIGNATURE_HEADER, &signing::sign(secret, now, &body));
            let (status, headers, answer) = send(request, url, Some(&body)).map_err(|f| match f {
                Failure::Timeout(_) => "the app did not answer in time".to_owned(),
                Failure::Connection(why) | Failure::InvalidUrl(why) => why,
            })?;
            // 429: the target is busy (or someone is keeping it busy);
            // asked to come back, the platform does, a few times, briefly.
            if status != 429 || tries >= CALLBACK_TRIES {
                break (status, answer);
            }
            let backoff = 1u64 << (tries - 1).min(8);
            let asked = headers
                .iter()
                .find(|(name, _)| name == "retry-after")
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let wait = asked.max(backoff).min(MAX_RETRY_AFTER_SECS);
            std::thread::sleep(Duration::from_secs(wait));
        };
        // The status only: the target's body is not the platform's to
        // repeat, and an app could read it back from the history.
        if !(200..300).contains(&status) {
            let after = match tries {
                1 => String::new(),
                n => format!(" ({n} tries)"),
            };
            return Err(format!("the callback target answered HTTP {status}{after}"));
        }
        // A receiver that runs the import itself answers with its outcome;
        // any other 2xx means "accepted", and the app reports through the API.
        Ok(serde_json::from_slice(&answer).ok())
    }
}
