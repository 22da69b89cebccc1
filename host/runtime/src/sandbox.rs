//! What a guest instance can reach: the per-trigger store state and the
//! host side of every import in the `importer` world.
//!
//! A guest gets exactly these capabilities and nothing else:
//!
//! - WASI with no preopened directories, no environment, no arguments and no
//!   sockets; stdout and stderr are captured (bounded) and logged by the host,
//!   with every credential setting the guest read hidden by value
//!   ([`GuestLog`]);
//! - `assets-api`, confined to the app's workspace base path: each path is
//!   read once into an [`ApiPath`], which is what the backend sends; the
//!   credential is added by the [`AssetsBackend`] on the host side and never
//!   enters the guest;
//! - `data-source`, `config` and `outbound-http`, as granted per app; each
//!   request is read once into an [`OutboundRequest`] (a closed set of
//!   methods, `http` header types, no platform-owned headers, the timeout cut
//!   to the time left);
//! - `storage` (the app's own key-value store) and `timer` (the platform's
//!   clock: a wait on a virtual clock is instant, a real wait is cut at the
//!   invocation's deadline).
//!
//! What each import reaches is the embedder's choice, through [`Grants`].
//!
//! The store also carries the instance's [`MemoryLimiter`] and, when the
//! invocation has a request rate limit, its [`RateLimit`], counted in the
//! app's shared [`RequestWindow`].

use crate::api_path::ApiPath;
use crate::bindings::{assets_api, config, data_source, outbound_http, storage, timer, types};
use crate::capabilities::{
    AssetsBackend, Config, DataSourceProvider, NoDataSource, NoEgress, OutboundHttp, Storage, SystemTimer, Timer,
};
use crate::outbound::OutboundRequest;
use crate::storage::AppStorage;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The capabilities one app is granted for one trigger: one implementation
/// of each import's trait.
#[derive(Clone)]
pub struct Grants {
    /// The workspace the app is installed in; its API calls are confined to it.
    pub workspace_id: String,
    /// The Assets API.
    pub assets: Arc<dyn AssetsBackend>,
    /// The data source behind the `data-source` import.
    pub source: Arc<dyn DataSourceProvider>,
    /// App settings behind the `config` import.
    pub config: Arc<dyn Config>,
    /// Outbound HTTP.
    pub http: Arc<dyn OutboundHttp>,
    /// The app's storage.
    pub storage: Arc<dyn Storage>,
    /// The platform's clock, behind the `timer` import.
    pub timer: Arc<dyn Timer>,
    /// The app's outbound requests of the last minute, counted against
    /// [`Limits::outbound_per_minute`](crate::Limits): keep one per app
    /// across its invocations, so the limit is per app, not per call.
    pub requests: Arc<RequestWindow>,
}

impl Grants {
    /// Grants for an app in `workspace_id` whose Assets API calls go to
    /// `assets`, with the defaults for the rest: no data source, no settings,
    /// no egress, fresh in-memory storage and the system clock.
    pub fn new(workspace_id: impl Into<String>, assets: Arc<dyn AssetsBackend>) -> Grants {
        Grants {
            workspace_id: workspace_id.into(),
            assets,
            source: Arc::new(NoDataSource),
            config: Arc::new(BTreeMap::new()),
            http: Arc::new(NoEgress),
            storage: Arc::new(AppStorage::default()),
            timer: Arc::new(SystemTimer),
            requests: Arc::new(RequestWindow::default()),
        }
    }

    /// Sets the data source.
    pub fn with_source(mut self, source: Arc<dyn DataSourceProvider>) -> Grants {
        self.source = source;
        self
    }

    /// Sets the settings.
    pub fn with_config(mut self, config: Arc<dyn Config>) -> Grants {
        self.config = config;
        self
    }

    /// Sets outbound HTTP (wrap it in an [`EgressGuard`](crate::EgressGuard)).
    pub fn with_http(mut self, http: Arc<dyn OutboundHttp>) -> Grants {
        self.http = http;
        self
    }

    /// Sets the storage; keep it across triggers of the same app.
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Grants {
        self.storage = storage;
        self
    }

    /// Sets the clock.
    pub fn with_timer(mut self, timer: Arc<dyn Timer>) -> Grants {
        self.timer = timer;
        self
    }

    /// Counts outbound requests in `window`; share one per app.
    pub fn with_request_window(mut self, window: Arc<RequestWindow>) -> Grants {
        self.requests = window;
        self
    }
}

/// Most bytes of guest stdout/stderr kept per trigger; the rest is dropped
/// (and counted), so a chatty guest cannot exhaust host memory.
pub const GUEST_LOG_LIMIT: usize = 64 * 1024;

/// Output kept beyond [`GUEST_LOG_LIMIT`] until it is scrubbed, so a secret
/// the limit would cut through is still whole when it is hidden.
const SCRUB_SLACK: usize = 4 * 1024;

/// The store state of one guest instance.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    grants: Grants,
    /// The instance's memory limit.
    pub limiter: MemoryLimiter,
    /// The invocation's outbound request limit, when it has one
    /// ([`Sandbox::with_request_limit`]).
    pub rate: Option<RateLimit>,
    /// When the instance was made: WASI's monotonic clock counts from here.
    started: Instant,
    /// When the invocation's time limit runs out; real waits stop here.
    deadline: Instant,
    /// The same limit by the platform's clock (a virtual clock's simulated
    /// time), in epoch milliseconds.
    clock_deadline_ms: u64,
    /// Where the guest's output goes; learns the secrets in the settings
    /// the guest reads.
    log: GuestLog,
}

/// Caps the linear memory of one instance, and remembers whether the guest
/// hit the cap so the host can name the cause of the trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    used: usize,
    /// The most linear memory the instance held at once, in bytes.
    pub peak: usize,
    /// Set when a growth was refused.
    pub exceeded: bool,
}

impl MemoryLimiter {
    /// A limiter of `limit` bytes across the instance's memories.
    pub fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            used: 0,
            peak: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let used = self.used - current.min(self.used) + desired;
        if used > self.limit {
            self.exceeded = true;
            // An error traps at once, naming the cause, instead of letting
            // the guest's allocator abort with a bare `unreachable`.
            wasmtime::bail!(
                "memory limit of {} MiB exceeded (asked for {} MiB)",
                self.limit >> 20,
                desired >> 20
            );
        }
        self.used = used;
        self.peak = self.peak.max(used);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real
        // guest and keeps a runaway one from exhausting host memory.
        Ok(desired <= 1_000_000)
    }
}

/// How far back [`RequestWindow`] counts requests.
pub const REQUEST_WINDOW: Duration = Duration::from_secs(60);

/// An app's outbound HTTP requests in the last [`REQUEST_WINDOW`]: shared
/// by all its invocations ([`Grants::requests`]), so a limit of N a minute
/// holds across them, not anew at each.
///
/// A sliding window rather than a per-minute counter: a fixed minute would
/// let an app send twice the limit across a minute boundary.
#[derive(Debug, Default)]
pub struct RequestWindow {
    /// When each admitted request of the last window went out, oldest first.
    sent: Mutex<VecDeque<Instant>>,
}

impl RequestWindow {
    /// Whether a request at `now` is within `per_minute`: fewer than that
    /// were admitted in the [`REQUEST_WINDOW`] before it. An admitted request
    /// is counted; a refused one is not (it is not sent). The answer depends
    /// on the window alone, so a request is admitted again once old ones age
    /// out.
    pub fn admit(&self, now: Instant, per_minute: u32) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        while sent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= REQUEST_WINDOW)
        {
            sent.pop_front();
        }
        if sent.len() < per_minute as usize {
            sent.push_back(now);
            true
        } else {
            false
        }
    }
}

/// One invocation's outbound request limit, and whether the guest went over
/// it, so the host can fail the invocation by name.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// The limit, in requests per minute.
    pub per_minute: u32,
    /// Set when a request of this invocation was refused.
    pub exceeded: bool,
}

impl Sandbox {
    /// A sandbox with `grants`, writing guest output to `log`, limited to
    /// `memory_limit` bytes and (for real waits) `deadline`.
    pub fn new(grants: Grants, log: &GuestLog, memory_limit: usize, deadline: Instant) -> Sandbox {
        // The builder's defaults already deny what matters (no preopens, no
        // env, no args, sockets denied); spelled out here because they are the
        // sandbox's promise, not an accident of defaults.
        let started = Instant::now();
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .monotonic_clock(SinceStart(started))
            .build();
        let limit = deadline.saturating_duration_since(Instant::now());
        let clock_deadline_ms = grants.timer.now_ms().saturating_add(limit.as_millis() as u64);
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            grants,
            limiter: MemoryLimiter::new(memory_limit),
            rate: None,
            started,
            deadline,
            clock_deadline_ms,
            log: log.clone(),
        }
    }

    /// Limits the app to `per_minute` outbound HTTP requests in any 60 s,
    /// counted in its [`Grants::requests`] window; `None` lifts the limit.
    pub fn with_request_limit(mut self, per_minute: Option<u32>) -> Sandbox {
        self.rate = per_minute.map(|per_minute| RateLimit {
            per_minute,
            exceeded: false,
        });
        self
    }

    /// Wall time left before the invocation's deadline.
    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A WASI pollable ready after `wait`, or at the invocation's deadline
    /// if that comes first: what `wasi:clocks/monotonic-clock`'s
    /// `subscribe-duration` gives a guest here ([`crate::engine`] puts it in
    /// place of WASI's own). The epoch deadline cannot interrupt a host
    /// call, so a wait longer than the time left (`std::thread::sleep`
    /// included) would hold the invocation, and shutdown, past its limit.
    pub fn subscribe_duration(&mut self, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let until = tokio::time::Instant::now() + wait.min(self.time_left());
        let pollable = self.table.push(Wait(until))?;
        wasmtime_wasi::p2::subscribe(&mut self.table, pollable)
    }

    /// [`Sandbox::subscribe_duration`] for an instant of WASI's monotonic
    /// clock (nanoseconds since the instance was made).
    pub fn subscribe_instant(&mut self, when_ns: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now_ns = self.started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.subscribe_duration(Duration::from_nanos(when_ns.saturating_sub(now_ns)))
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl assets_api::Host for Sandbox {
    fn call(
        &mut self,
        method: assets_api::Method,
        path: String,
        body: Option<String>,
    ) -> Result<assets_api::Response, assets_api::CallError> {
        // Read once; the backend sends exactly what was checked.
        let path = ApiPath::parse(&self.grants.workspace_id, &path)
            .map_err(|refusal| assets_api::CallError::InvalidPath(refusal.0))?;
        self.grants.assets.call(method, &path, body.as_deref())
    }
}

impl data_source::Host for Sandbox {
    fn next_page(&mut self, cursor: Option<String>) -> Result<data_source::Page, data_source::SourceError> {
        self.grants.source.next_page(cursor.as_deref())
    }
}

impl config::Host for Sandbox {
    fn get(&mut self, key: String) -> Option<String> {
        let value = self.grants.config.get(&key);
        // A guest can only print a setting it has read: every one it reads
        // is hidden in its output from now on.
        if let Some(value) = &value {
            self.log.mask_setting(&key, value);
        }
        value
    }
}

impl outbound_http::Host for Sandbox {
    fn send(&mut self, request: outbound_http::Request) -> Result<outbound_http::Response, outbound_http::HttpError> {
        let request = OutboundRequest::from_guest(request, self.time_left())?;
        if let Some(rate) = &mut self.rate {
            // After a breach the invocation has failed whatever the guest
            // does, so nothing more goes out on its behalf, even once the
            // window has room again.
            if rate.exceeded || !self.grants.requests.admit(Instant::now(), rate.per_minute) {
                rate.exceeded = true;
                return Err(outbound_http::HttpError::Denied(format!(
                    "{}: not sent: the app exceeded the limit of {} outbound HTTP requests per minute",
                    request.url(),
                    rate.per_minute
                )));
            }
        }
        self.grants.http.send(request)
    }
}

impl storage::Host for Sandbox {
    fn get(&mut self, key: String) -> Option<String> {
        self.grants.storage.get(&key)
    }
    fn set(&mut self, key: String, value: String) -> Result<(), String> {
        self.grants.storage.set(key, value)
    }
    fn delete(&mut self, key: String) {
        self.grants.storage.delete(&key)
    }
}

impl timer::Host for Sandbox {
    fn now_ms(&mut self) -> u64 {
        self.grants.timer.now_ms()
    }
    fn sleep_ms(&mut self, ms: u64) {
        // A host call is not interrupted by the epoch deadline, so a real
        // wait must end there itself; the guest is stopped right after.
        self.grants.timer.sleep(Duration::from_millis(ms).min(self.time_left()));
    }
    fn time_left_ms(&mut self) -> u64 {
        let wall = self.deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        let clock = self.clock_deadline_ms.saturating_sub(self.grants.timer.now_ms());
        wall.min(clock)
    }
}

impl types::Host for Sandbox {}

/// WASI's monotonic clock for one instance: nanoseconds since it was made,
/// the same count [`Sandbox::subscribe_instant`] measures waits by.
struct SinceStart(Instant);

impl wasmtime_wasi::HostMonotonicClock for SinceStart {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos().min(u64::MAX as u128) as u64
    }
}

/// A WASI wait that ends at an instant ([`Sandbox::subscribe_duration`]).
struct Wait(tokio::time::Instant);

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for Wait {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

/// Captures a guest's stdout and stderr, bounded by [`GUEST_LOG_LIMIT`],
/// and hides in it the secrets of every setting the guest read
/// ([`GuestLog::mask_setting`]) — scrubbed first, then cut to the limit.
#[derive(Clone, Default)]
pub struct GuestLog {
    inner: Arc<Mutex<LogBuffer>>,
}

#[derive(Default)]
struct LogBuffer {
    bytes: Vec<u8>,
    dropped: usize,
    secrets: assets_redact::Secrets,
}

impl GuestLog {
    /// What the guest wrote, lossily decoded, the secrets of the settings
    /// it read hidden, cut to [`GUEST_LOG_LIMIT`] bytes, with a note if some
    /// was dropped.
    pub fn text(&self) -> String {
        let buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = buffer.secrets.scrub(&String::from_utf8_lossy(&buffer.bytes));
        let mut dropped = buffer.dropped;
        if text.len() > GUEST_LOG_LIMIT {
            let mut cut = GUEST_LOG_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            dropped += text.len() - cut;
            text.truncate(cut);
        }
        if dropped > 0 {
            text.push_str(&format!("\n[{dropped} more bytes of guest output dropped]"));
        }
        text
    }

    /// Hides the secrets of setting `key` = `value` in everything the guest
    /// wrote or will write ([`assets_redact::Secrets::add_setting`]).
    pub fn mask_setting(&self, key: &str, value: &str) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        buffer.secrets.add_setting(key, value);
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = (GUEST_LOG_LIMIT + SCRUB_SLACK).saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += bytes.len() - kept;
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for GuestLog {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        // Always accept: excess output is dropped, never an error the guest
        // must handle.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_log_is_bounded() {
        let log = GuestLog::default();
        log.append(&vec![b'a'; GUEST_LOG_LIMIT + 10]);
        let text = log.text();
        assert!(text.contains("[10 more bytes of guest output dropped]"));
        log.append(&vec![b'a'; 2 * GUEST_LOG_LIMIT]);
        assert!(log.text().len() < GUEST_LOG_LIMIT + 100);
    }

    #[test]
    fn a_setting_the_guest_read_is_hidden_in_its_output_even_across_the_limit() {
        struct NoApi;
        impl AssetsBackend for NoApi {
            fn call(
                &self,
                _: assets_api::Method,
                _: &ApiPath,
                _: Option<&str>,
            ) -> Result<assets_api::Response, assets_api::CallError> {
                Err(assets_api::CallError::Unreachable("none".into()))
            }
        }
        let config = BTreeMap::from([("source-headers".to_owned(), "X-Api-Key: k-SECRET-42".to_owned())]);
        let grants = Grants::new("w", Arc::new(NoApi)).with_config(Arc::new(config));
        let log = GuestLog::default();
        let mut sandbox = Sandbox::new(grants, &log, 1 << 20, Instant::now() + Duration::from_secs(1));
        log.append(b"early k-SECRET-42\n");
        assert!(log.text().contains("k-SECRET-42"), "not read yet, so not known");
        config::Host::get(&mut sandbox, "source-headers".into());
        // Base64, and split by the limit: neither shows.
        log.append(b"b64 ay1TRUNSRVQtNDI=\n");
        // The secret starts 5 bytes before the limit.
        let written = "early k-SECRET-42\nb64 ay1TRUNSRVQtNDI=\n".len();
        log.append(&vec![b'.'; GUEST_LOG_LIMIT - written - 5]);
        log.append(b"k-SECRET-42 end");
        let text = log.text();
        assert!(
            !text.contains("k-SE") && !text.contains("ay1TRUNSRVQtNDI"),
            "{}",
            &text[..100]
        );
        assert!(text.starts_with("early ***\nb64 ***\n"), "{}", &text[..100]);
    }
}
