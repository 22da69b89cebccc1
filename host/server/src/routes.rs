//! The HTTP surface of serve mode.
//!
//! - `/jsm/assets/workspace/{workspaceId}/v1/...`: the Assets API, answered
//!   by the mock's one router ([`AssetsService::handle_authorized`](assets_platform::assets::AssetsService::handle_authorized)), so the
//!   in-process and the served API cannot drift apart.
//! - `POST /apps/{name}/webtrigger`: an app's web trigger; checks the
//!   callback's signature, then runs the app's `import-callback` in the
//!   sandbox and answers with the run's outcome.
//! - `/_admin/...`: local conveniences: create import sources, list the
//!   hosted apps, read and move the virtual clock.
//!
//! Every answer to a bad request is a 4xx with a JSON body naming the
//! problem (413 for a body over the limit); blocking work (the state lock,
//! SQLite, guests) runs off the async workers.

use crate::serve::{Profile, Server, FORGE};
use crate::signing::{Refusal, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use assets_platform::assets::ledger::{Fence, LedgerEntry, OccurrenceState};
use assets_platform::assets::schedule::timestamp;
use assets_platform::assets::{body, same_secret, ApiError, Delivery, SourceType};
use assets_platform::clock::Clock as _;
use assets_platform::scheduler::Heartbeat;
use assets_platform::trigger;
use assets_runtime::bindings::import_callback::TriggerEvent;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/_admin/apps", get(list_apps))
        .route("/_admin/importsource", post(create_import_source))
        .route("/_admin/occurrences", get(list_occurrences))
        .route("/_admin/journal", get(read_journal))
        .route("/_admin/clock", get(read_clock))
        .route("/_admin/clock/advance", post(advance_clock))
        .route("/apps/{name}/webtrigger", post(webtrigger))
        .fallback(assets_api)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost last: log, then authenticate from the headers, then
        // count the request against its caller's limit, and only then read
        // the body. A stranger is refused before it holds anything.
        .layer(middleware::from_fn_with_state(server.clone(), buffer_body))
        .layer(middleware::from_fn_with_state(server.clone(), limit_concurrency))
        // `buffer_body` enforces the server's own limit, with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(server.clone(), authenticate_first))
        .layer(middleware::from_fn(log_request))
        .with_state(server)
}

/// Largest web-trigger body: a callback is a few hundred bytes, and its
/// signature can only be checked once the body is read, so an unsigned
/// sender must not make the server read much.
pub const WEBTRIGGER_BODY_LIMIT: usize = 64 * 1024;

/// Longest a web-trigger body may take to arrive: its sender has not been
/// verified yet, so it may not hold the connection longer than a real
/// callback (sent whole, at once) ever needs.
pub const WEBTRIGGER_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the server reads (and drops) the small body of a request it
/// has already refused, so an honest client still sending sees the 401.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Seconds a client told 429 should wait before trying again.
const RETRY_AFTER_SECS: u64 = 1;

/// 429 with `Retry-After`, naming what is full.
fn too_many(what: String) -> Response {
    let mut response = error(ApiError {
        status: 429,
        code: "TOO_MANY_REQUESTS",
        field: None,
        message: format!("{what}; retry in {RETRY_AFTER_SECS} s"),
        allow: &[],
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Who a request proved itself to be, from its headers alone
/// ([`authenticate_first`]); the limits and handlers downstream read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The server's token (or a server that has none).
    Operator,
    /// An import source's own token: that source's endpoints only.
    Source(String),
    /// A web-trigger request with both signing headers; its signature is
    /// checked once its (small, quickly read) body is in.
    Callback,
}

/// True when `path` is a web trigger, `/apps/{name}/webtrigger`, exactly as
/// the router matches it (one non-empty segment for the name).
fn is_webtrigger(path: &str) -> bool {
    let mut segments = path.split('/');
    matches!(
        [(); 5].map(|_| segments.next()),
        [Some(""), Some("apps"), Some(name), Some("webtrigger"), None] if !name.is_empty()
    )
}

/// Refuses a request that cannot be authenticated from its headers before
/// a byte of its body is read or a concurrency permit is taken, and says
/// who the caller is. Everything needs the server's token (when it has
/// one) except a web trigger, which needs both signing headers, and the
/// API, which also takes the token of the source it addresses.
async fn authenticate_first(State(server): State<Arc<Server>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers();
    let caller = if is_webtrigger(&path) {
        match [TIMESTAMP_HEADER, SIGNATURE_HEADER]
            .into_iter()
            .find(|name| !headers.contains_key(*name))
        {
            Some(missing) => Err(ApiError {
                status: 401,
                code: "CALLBACK_REFUSED",
                field: None,
                message: Refusal::Missing(missing).to_string(),
                allow: &[],
            }),
            None => Ok(Caller::Callback),
        }
    } else if authorize(&server, headers).is_ok() {
        Ok(Caller::Operator)
    } else if path.starts_with("/jsm/") {
        // Not the server's token: perhaps the source's own, looked up
        // under the state lock (only for text shaped like one).
        let target = request
            .uri()
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
        let authorization = bearer(headers).map(str::to_owned);
        let assets = server.assets.clone();
        match blocking(move || assets.caller(&target, authorization.as_deref())).await {
            Ok(Some(assets_platform::assets::Caller::Source(id))) => Ok(Caller::Source(id)),
            Ok(Some(assets_platform::assets::Caller::Platform)) => Ok(Caller::Operator),
            Ok(None) => Err(ApiError::unauthorized()),
            Err(unread) => Err(unread),
        }
    } else {
        Err(ApiError::unauthorized())
    };
    let refused = match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            return next.run(request).await;
        }
        Err(refused) => refused,
    };
    // A small body is read and dropped first, briefly, so an honest client
    // still sending it sees the 401 rather than a broken connection; a
    // large or slow one is not waited for.
    let small = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|length| length <= DRAIN_LIMIT);
    if small {
        let drain = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    error(refused).into_response()
}

/// Most bytes of an unauthenticated body read (and dropped) before the 401.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Serves at most so many requests of one caller at once; beyond, 429 at
/// once rather than a queue that grows without bound. The operator's
/// requests have their own limit and each source token its own, so no
/// caller can use up another's. Web triggers are counted where their
/// bodies are read ([`buffer_body`]), and only while they are: a verified
/// call's run is counted by its app's import cap instead.
async fn limit_concurrency(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    match caller {
        Some(Caller::Callback) => next.run(request).await,
        Some(Caller::Source(id)) => match server.source_permits(&id).try_acquire_owned() {
            Ok(_permit) => next.run(request).await,
            Err(_) => too_many(format!(
                "import source {id}'s token is already making as many requests at once as it may ({})",
                server.max_concurrent_per_source
            )),
        },
        // The operator, and anything `authenticate_first` did not mark
        // (nothing, today): the shared limit.
        Some(Caller::Operator) | None => match server.requests.try_acquire() {
            Ok(_permit) => next.run(request).await,
            Err(_) => too_many(format!(
                "the server is serving as many requests as it takes at once ({})",
                server.max_concurrent_requests
            )),
        },
    }
}

/// Web-trigger bodies one client may have being read at once (a client is
/// an IPv4 address, or an IPv6 /64): they are read before their signatures
/// can be checked, so this is what a stranger can hold, for at most
/// [`WEBTRIGGER_BODY_TIMEOUT`] each.
pub const CALLBACKS_PER_PEER: usize = 32;

/// One web-trigger call counted against its peer's share while it lives.
struct CallbackShare {
    server: Arc<Server>,
    peer: std::net::IpAddr,
}

impl CallbackShare {
    /// Counts a call from `peer`, or `None` when the peer has its
    /// [`CALLBACKS_PER_PEER`] in flight. A call whose peer is unknown (not
    /// over the network) is not counted.
    fn take(server: &Arc<Server>, peer: Option<std::net::IpAddr>) -> Option<Option<CallbackShare>> {
        let Some(peer) = peer.map(client_of) else {
            return Some(None);
        };
        let mut peers = server.callback_peers.lock().unwrap_or_else(|e| e.into_inner());
        let held = peers.entry(peer).or_insert(0);
        if *held >= CALLBACKS_PER_PEER {
            return None;
        }
        *held += 1;
        Some(Some(CallbackShare {
            server: server.clone(),
            peer,
        }))
    }
}

/// The client an address belongs to: an IPv4 address as itself (an IPv4
/// address mapped into IPv6 too), an IPv6 address by its /64, the block one
/// host is usually given.
fn client_of(address: std::net::IpAddr) -> std::net::IpAddr {
    match address {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

impl Drop for CallbackShare {
    fn drop(&mut self) {
        let mut peers = self.server.callback_peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = peers.get_mut(&self.peer) {
            *held -= 1;
            // Only peers with calls in flight are kept: the map stays small.
            if *held == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// The `Authorization` header's value, with the header present.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// The mock's answers and errors, as HTTP.
enum Answer {
    /// One of the mock's answers or errors.
    Mock(assets_platform::assets::Response),
    /// An answer built here (a 429 with its header, say).
    Raw(Response),
}

impl Answer {
    fn raw(response: Response) -> Answer {
        Answer::Raw(response)
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let answer = match self {
            Answer::Mock(answer) => answer,
            Answer::Raw(response) => return response,
        };
        let mut response = Response::new(Body::from(answer.body));
        *response.status_mut() =
            axum::http::StatusCode::from_u16(answer.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in answer.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                header::HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn error(e: ApiError) -> Answer {
    Answer::Mock(e.into_response())
}

fn json_answer(status: u16, body: &impl serde::Serialize) -> Answer {
    Answer::Mock(assets_platform::assets::Response::json(status, body))
}

/// Reads a body of at most `limit` bytes within `within`: 413 beyond the
/// size, 408 past the time.
async fn read_body(limit: usize, within: Duration, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = |size: Option<usize>| ApiError {
        status: 413,
        code: "PAYLOAD_TOO_LARGE",
        field: None,
        message: format!(
            "the request body{} is larger than the {limit}-byte limit; send the data in smaller chunks",
            size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
        ),
        allow: &[],
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|size| size > limit) {
        return Err(too_large(declared));
    }
    match tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        // Over the limit only when that is what went wrong: a malformed
        // chunked body is the client's other mistake, and said as such.
        Ok(Err(e)) => match e.into_inner().downcast::<http_body_util::LengthLimitError>() {
            Ok(_) => Err(too_large(None)),
            Err(other) => Err(ApiError::invalid_body(format!(
                "the request body could not be read: {other}"
            ))),
        },
        Err(_) => Err(ApiError {
            status: 408,
            code: "REQUEST_TIMEOUT",
            field: None,
            message: format!(
                "the request body did not arrive within {} s; send it whole, at once",
                within.as_secs_f64()
            ),
            allow: &[],
        }),
    }
}

/// The admin endpoints require the API's token when the server has one,
/// compared in constant time.
fn authorize(server: &Server, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &server.token else { return Ok(()) };
    let presented = bearer(headers).and_then(assets_platform::assets::bearer_token);
    match presented {
        Some(presented) if same_secret(presented, token) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// 400 naming the first query parameter of an endpoint that takes none, as
/// the API's own endpoints answer.
fn takes_no_query(uri: &Uri) -> Result<(), ApiError> {
    assets_platform::assets::router::Query::parse(uri.query().unwrap_or_default(), &[]).map(drop)
}

/// Runs blocking work (the state lock, SQLite, a guest) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Reads every request body (up to the limit, else 413) before routing: an
/// answer given early, a 404 say, must not cut off a client still sending,
/// which would see a broken connection instead of the answer.
async fn buffer_body(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if parts.extensions.get::<Caller>() != Some(&Caller::Callback) {
        return match read_body(server.max_body_bytes, server.body_timeout, &parts.headers, body).await {
            Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
            Err(e) => error(e).into_response(),
        };
    }
    // A web trigger's body is read before its signature can be checked:
    // counted against its client's share and the server's, while it is read
    // and no longer, so strangers can hold only what they send.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let read = {
        let Some(_share) = CallbackShare::take(&server, peer) else {
            return too_many(format!(
                "this client is sending as many web-trigger calls at once as one client may ({CALLBACKS_PER_PEER})"
            ));
        };
        let Ok(_permit) = server.callbacks.try_acquire() else {
            return too_many(format!(
                "the server is reading as many web-trigger calls at once as it takes ({})",
                server.max_concurrent_requests
            ));
        };
        let limit = WEBTRIGGER_BODY_LIMIT.min(server.max_body_bytes);
        read_body(
            limit,
            WEBTRIGGER_BODY_TIMEOUT.min(server.body_timeout),
            &parts.headers,
            body,
        )
        .await
    };
    match read {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(e) => error(e).into_response(),
    }
}

/// A known path with another method: JSON 405, like the API's own.
async fn method_not_allowed(request: Request) -> Answer {
    let allowed: &'static [&'static str] = match request.uri().path() {
        "/_admin/apps" | "/_admin/clock" | "/_admin/occurrences" | "/_admin/journal" => &["GET"],
        _ => &["POST"],
    };
    error(ApiError::method_not_allowed(request.method().as_str(), allowed))
}

/// Everything not matched above: the Assets API, or a JSON 404.
async fn assets_api(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    if !path.starts_with("/jsm/") {
        return error(ApiError::not_found(format!(
            "no endpoint at {path}; the API lives under /jsm/assets/workspace/{{workspaceId}}/v1/, \
             web triggers at /apps/{{name}}/webtrigger, admin endpoints under /_admin/"
        )));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The delivery a hosted app's call is made for, as the platform sent it
    // beside the call (`AssetsBackend::call_for`): taken from the
    // platform's own credential only.
    let delivery = match headers.get(assets_runtime::DELIVERY_HEADER) {
        None => None,
        Some(value) => match value.to_str().map_err(|e| e.to_string()) {
            Ok(text) => Some(text.to_owned()),
            Err(e) => {
                return error(ApiError::invalid_field(
                    assets_runtime::DELIVERY_HEADER,
                    format!("{} is not text: {e}", assets_runtime::DELIVERY_HEADER),
                ))
            }
        },
    };
    let method = method.as_str().to_owned();
    let assets = server.assets.clone();
    Answer::Mock(
        blocking(move || {
            let Some(delivery) = delivery else {
                return assets.handle_authorized(&method, &path, authorization.as_deref(), &body);
            };
            let caller = match assets.caller(&path, authorization.as_deref()) {
                Ok(caller) => caller,
                Err(unread) => return unread.into_response(),
            };
            if caller != Some(assets_platform::assets::Caller::Platform) {
                return ApiError::forbidden(format!(
                    "{} is the platform's own: only a call with the platform's credential may say which delivery it is made for",
                    assets_runtime::DELIVERY_HEADER
                ))
                .into_response();
            }
            match Delivery::parse(&delivery) {
                Ok(delivery) => {
                    assets.handle_for(&method, &path, authorization.as_deref(), &body, Some(&delivery))
                }
                Err(refusal) => refusal.into_response(),
            }
        })
        .await,
    )
}

/// `GET /_admin/apps`: the hosted apps, their import sources and web triggers.
async fn list_apps(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Answer {
    if let Err(e) = authorize(&server, &headers).and_then(|_| takes_no_query(&uri)) {
        return error(e);
    }
    let mut apps: Vec<_> = server
        .apps
        .iter()
        .map(|(name, app)| {
            json!({
                "name": name,
                "workspaceId": server.workspace_id,
                "importSourceId": app.import_source_id,
                "callbackUrl": app.callback_url,
            })
        })
        .collect();
    apps.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json_answer(200, &apps)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewImportSource {
    workspace_id: String,
    #[serde(rename = "type")]
    source_type: String,
    #[serde(default)]
    app: Option<String>,
    /// The real API's rule: no execution until a mapping is set.
    #[serde(default)]
    requires_mapping: bool,
}

/// `POST /_admin/importsource` `{"workspaceId", "type", "app"?,
/// "requiresMapping"?}` → 201 `{"id", ...}`.
async fn create_import_source(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Answer {
    let result = async {
        authorize(&server, &headers)?;
        takes_no_query(&uri)?;
        let request: NewImportSource = body::parse(&body)?;
        let source_type = SourceType::parse(&request.source_type).ok_or_else(|| {
            let names: Vec<&str> = SourceType::ALL.iter().map(|t| t.as_str()).collect();
            ApiError::invalid_field(
                "type",
                format!(
                    "type must be one of {}; got {:?}",
                    names.join(", "),
                    request.source_type
                ),
            )
        })?;
        let assets = server.assets.clone();
        let (workspace, app) = (request.workspace_id.clone(), request.app.clone());
        let requires_mapping = request.requires_mapping;
        let (id, secret) = blocking(move || {
            let id = assets.create_import_source(&workspace, source_type, app)?;
            if requires_mapping {
                assets.require_mapping(&id)?;
            }
            let secret = assets.read()?.source_by_id(&id).and_then(|s| s.signing_secret.clone());
            Ok::<_, ApiError>((id, secret))
        })
        .await?;
        let mut created = json!({
            "id": id,
            "workspaceId": request.workspace_id,
            "type": source_type,
            "app": request.app,
            "requiresMapping": requires_mapping,
        });
        // A hosted app's callbacks are signed with the app's secret (in the
        // banner); any other external source's with its own, shown here
        // once and never again.
        let hosted = request.app.as_ref().is_some_and(|a| server.apps.contains_key(a));
        if let (Some(secret), false) = (secret, hosted) {
            created["signingSecret"] = secret.into();
        }
        Ok::<_, ApiError>(created)
    }
    .await;
    match result {
        Ok(created) => json_answer(201, &created),
        Err(e) => error(e),
    }
}

fn clock_kind(server: &Server) -> &'static str {
    if server.virtual_clock.is_some() {
        "virtual"
    } else {
        "system"
    }
}

/// The filters and page of `GET /_admin/occurrences`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OccurrenceQuery {
    #[serde(default)]
    schedule_id: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Largest page of `GET /_admin/occurrences`.
const MAX_OCCURRENCE_PAGE: usize = 1000;

/// `GET /_admin/occurrences[?scheduleId=…][&state=…][&limit=N][&cursor=C]`:
/// the occurrence ledger, ordered by nominal time then occurrence id, a page
/// at a time (`limit` default and maximum 1000). The answer's `nextCursor`,
/// passed as `cursor`, gives the next page; it is null on the last.
async fn list_occurrences(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Answer {
    // The state lock may read a shared database: off the async threads.
    let result = tokio::task::block_in_place(|| {
        authorize(&server, &headers)?;
        let query: OccurrenceQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default())
            .map_err(|e| ApiError::invalid_field("query", format!("unreadable query string: {e}")))?;
        let state = match &query.state {
            Some(name) => Some(OccurrenceState::from_name(name).ok_or_else(|| {
                ApiError::invalid_field(
                    "state",
                    format!("unknown state {name:?}; one of delivering, completed, failed, skipped, missed"),
                )
            })?),
            None => None,
        };
        let limit = query.limit.unwrap_or(MAX_OCCURRENCE_PAGE);
        if limit == 0 || limit > MAX_OCCURRENCE_PAGE {
            return Err(ApiError::invalid_field(
                "limit",
                format!("limit must be between 1 and {MAX_OCCURRENCE_PAGE}; got {limit}"),
            ));
        }
        let after = match &query.cursor {
            Some(cursor) => Some(parse_cursor(cursor)?),
            None => None,
        };
        let assets = server.assets.read()?;
        let mut page: Vec<&LedgerEntry> = assets
            .ledger()
            .filter(|e| query.schedule_id.as_ref().is_none_or(|id| &e.schedule_id == id))
            .filter(|e| state.is_none_or(|s| e.state == s))
            .filter(|e| {
                after
                    .as_ref()
                    .is_none_or(|(t, id)| (e.nominal_time, &e.occurrence_id) > (*t, id))
            })
            .collect();
        page.sort_by(|a, b| (a.nominal_time, &a.occurrence_id).cmp(&(b.nominal_time, &b.occurrence_id)));
        let more = page.len() > limit;
        page.truncate(limit);
        let next = page.last().filter(|_| more).map(|e| {
            format!(
                "{}_{}",
                e.nominal_time.timestamp_nanos_opt().unwrap_or_default(),
                e.occurrence_id
            )
        });
        Ok(json!({ "occurrences": page, "nextCursor": next }))
    });
    match result {
        Ok(page) => json_answer(200, &page),
        Err(e) => error(e),
    }
}

/// The page of `GET /_admin/journal`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JournalQuery {
    /// The sequence number after which the page starts (0: the first).
    #[serde(default)]
    after: i64,
    #[serde(default)]
    limit: Option<usize>,
}

/// Largest page of `GET /_admin/journal`.
const MAX_JOURNAL_PAGE: usize = 1000;

/// `GET /_admin/journal[?after=SEQ][&limit=N]`: the fenced writes to
/// occurrences and their executions, who made each and whether it took
/// effect, oldest first (`assets::journal`), read from the database a page
/// at a time; `next` is the `after` of the next page, `null` at the end.
async fn read_journal(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Answer {
    let result = tokio::task::block_in_place(|| {
        authorize(&server, &headers)?;
        let query: JournalQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default())
            .map_err(|e| ApiError::invalid_field("query", format!("unreadable query string: {e}")))?;
        let limit = query.limit.unwrap_or(MAX_JOURNAL_PAGE);
        if limit == 0 || limit > MAX_JOURNAL_PAGE {
            return Err(ApiError::invalid_field(
                "limit",
                format!("limit must be between 1 and {MAX_JOURNAL_PAGE}; got {limit}"),
            ));
        }
        let page = server.assets.journal_page(query.after, limit).map_err(|e| {
            tracing::error!("cannot read the journal: {e:#}");
            ApiError::not_saved()
        })?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|stored| stored.seq))
            .flatten();
        let writes: Vec<serde_json::Value> = page
            .into_iter()
            .map(|stored| {
                let mut value = serde_json::to_value(stored.written).unwrap_or_default();
                value["seq"] = stored.seq.into();
                value["node"] = stored.node.into();
                value
            })
            .collect();
        Ok(json!({ "writes": writes, "next": next }))
    });
    match result {
        Ok(page) => json_answer(200, &page),
        Err(e) => error(e),
    }
}

/// Reads a `nextCursor`: the nominal time in nanoseconds and the occurrence id.
fn parse_cursor(cursor: &str) -> Result<(chrono::DateTime<chrono::Utc>, String), ApiError> {
    let bad = || ApiError::invalid_field("cursor", format!("cursor {cursor:?} is not one this server gave out"));
    let (nanos, id) = cursor.split_once('_').ok_or_else(bad)?;
    let nanos: i64 = nanos.parse().map_err(|_| bad())?;
    Ok((chrono::DateTime::from_timestamp_nanos(nanos), id.to_owned()))
}

/// `GET /_admin/clock`.
async fn read_clock(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Answer {
    if let Err(e) = authorize(&server, &headers).and_then(|_| takes_no_query(&uri)) {
        return error(e);
    }
    // On a shared database another node may have moved the clock; reading
    // the state reads it.
    if let Err(unread) = tokio::task::block_in_place(|| server.assets.read().map(drop)) {
        return error(unread);
    }
    json_answer(
        200,
        &json!({ "clock": clock_kind(&server), "now": timestamp(server.assets.clock().now()) }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: u64,
}

/// Ten years: more is certainly a mistake.
const MAX_ADVANCE_SECS: u64 = 10 * 366 * 24 * 3600;

/// `POST /_admin/clock/advance` `{"seconds": N}`: moves the virtual clock and
/// answers once every run that fell due has finished.
async fn advance_clock(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Answer {
    let result = async {
        authorize(&server, &headers)?;
        takes_no_query(&uri)?;
        let Some(clock) = server.virtual_clock.clone() else {
            return Err(ApiError::conflict(
                "CLOCK_NOT_VIRTUAL",
                "the server follows the system clock; start it with --clock virtual to move time",
            ));
        };
        let advance: Advance = body::parse(&body)?;
        if advance.seconds > MAX_ADVANCE_SECS {
            return Err(ApiError::invalid_field(
                "seconds",
                format!(
                    "seconds must be at most {MAX_ADVANCE_SECS} (ten years); got {}",
                    advance.seconds
                ),
            ));
        }
        let _one_at_a_time = server.advancing.lock().await;
        let (scheduler, shared) = (server.scheduler.clone(), server.shared.clone());
        let firings = blocking(move || {
            // From the shared clock as it stands, if another node moved it.
            scheduler.assets().read().map(drop)?;
            let by = chrono::Duration::seconds(advance.seconds as i64);
            // Several nodes: after every advance asked before this one, on
            // any node, so advances sent at once add up.
            let end = match &shared {
                Some(store) => store.reserve_advance(by).map_err(|e| {
                    tracing::error!("{e:#}");
                    ApiError::not_saved()
                })?,
                None => clock.now() + by,
            };
            let firings = scheduler.run_until(&clock, end).map_err(|halted| {
                // The next advance goes on from where this one stopped; if
                // that cannot be stored, the answer says where it goes on from.
                let given_back = shared.as_ref().is_none_or(|store| {
                    store
                        .give_back_advance(end, by, halted.at)
                        .map_err(|e| tracing::error!("{e:#}"))
                        .is_ok()
                });
                let from = if given_back { halted.at } else { end };
                ApiError {
                    message: format!(
                        "the clock stopped at {}: what fell due then could not be stored in the database (see the \
                         server log), so nothing from then on was handled; the next advance goes on from {}",
                        timestamp(halted.at),
                        timestamp(from)
                    ),
                    ..ApiError::not_saved()
                }
            })?;
            Ok::<_, ApiError>((firings, clock.now()))
        })
        .await?;
        Ok(json!({ "now": timestamp(firings.1), "firings": firings.0 }))
    }
    .await;
    match result {
        Ok(done) => json_answer(200, &done),
        Err(e) => error(e),
    }
}

/// A callback body as the platform sends it. Unknown fields are allowed: a
/// platform may add some.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Callback {
    workspace_id: String,
    #[serde(default)]
    import_source_id: Option<String>,
    /// The real platform's spelling.
    #[serde(default, rename = "importsourceId")]
    importsource_id: Option<String>,
    #[serde(default)]
    scheduled: bool,
    #[serde(default)]
    schedule_id: Option<String>,
    #[serde(default)]
    occurrence_id: Option<String>,
    #[serde(default)]
    nominal_time: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
}

/// Counts a run, for graceful shutdown and for its app's cap, while it lives.
struct Running {
    server: Arc<Server>,
    app: String,
}

impl Running {
    /// Counts a run of `app`, or says the app already runs as many as it may.
    fn start(server: &Arc<Server>, app: &str) -> Result<Running, Box<Response>> {
        let hosted = &server.apps[app];
        let cap = server.max_imports_per_app;
        if hosted
            .running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < cap).then_some(n + 1))
            .is_err()
        {
            return Err(Box::new(too_many(format!(
                "app {app} is already running {cap} imports, as many as it may at once"
            ))));
        }
        server.running.fetch_add(1, Ordering::SeqCst);
        Ok(Running {
            server: server.clone(),
            app: app.to_owned(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.apps[&self.app].running.fetch_sub(1, Ordering::SeqCst);
        self.server.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `POST /apps/{name}/webtrigger`: verify, then run the app.
async fn webtrigger(
    State(server): State<Arc<Server>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    // A name no app has is checked against a secret nobody holds: the
    // answer (and the work) is the same as for a hosted app's bad
    // signature, so app names cannot be probed for.
    let name = name.ok().map(|Path(name)| name).filter(|n| server.apps.contains_key(n));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (timestamp_header, signature_header) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    // The time the sending node stamped it by: on several nodes, the
    // database's.
    let now = server.assets.wall_now().timestamp();
    let verified = {
        let (server, name, body) = (server.clone(), name.clone(), body.clone());
        // The replay record may be the shared database: off the async threads.
        blocking(move || {
            let verifier = name
                .as_ref()
                .map_or(&server.strangers, |name| &server.apps[name].verifier);
            verifier.verify(timestamp_header.as_deref(), signature_header.as_deref(), &body, now)
        })
        .await
    };
    let (name, digest) = match (name, verified) {
        (Some(name), Ok(digest)) => (name, digest),
        (name, Err(refusal)) => {
            tracing::warn!(app = ?name, %refusal, "callback refused");
            let status = if matches!(refusal, Refusal::Unavailable(_)) {
                503
            } else {
                401
            };
            return error(ApiError {
                status,
                code: if status == 503 {
                    "CALLBACK_NOT_CHECKED"
                } else {
                    "CALLBACK_REFUSED"
                },
                field: None,
                message: refusal.to_string(),
                allow: &[],
            });
        }
        (None, Ok(_)) => unreachable!("nobody holds the strangers' secret"),
    };
    let hosted = &server.apps[&name];
    let event = match callback_event(&server, &body, &digest) {
        Ok(event) => event,
        Err(e) => return error(e),
    };
    // An app runs every import source made for it (one per installation or
    // configuration), not only the one created for it at start-up.
    let (assets, source_id, app_name) = (server.assets.clone(), event.import_source_id.clone(), name.clone());
    let performs = blocking(move || {
        let state = assets.read()?;
        Ok::<_, ApiError>(
            state
                .source_by_id(&source_id)
                .is_some_and(|s| s.app.as_deref() == Some(app_name.as_str())),
        )
    })
    .await;
    let performs = match performs {
        Ok(performs) => performs,
        // Not known: a 503 the platform retries, not a refusal it records.
        Err(unread) => return error(unread),
    };
    if !performs {
        return error(ApiError {
            status: 403,
            code: "FORBIDDEN",
            field: Some("importSourceId".into()),
            message: format!(
                "app {name} does not perform import source {} in workspace {}; create one for it with \
                 POST /_admin/importsource {{\"workspaceId\", \"type\": \"external\", \"app\": \"{name}\"}}",
                event.import_source_id, event.workspace_id
            ),
            allow: &[],
        });
    }
    let running = match Running::start(&server, &name) {
        Ok(running) => running,
        Err(refused) => return Answer::raw(*refused),
    };
    let (app, assets) = (hosted.app.clone(), server.assets.clone());
    // A scheduled run says it is alive while the app is invoked, so no node
    // fails it as abandoned however long it goes on (the forge profile's
    // run goes on after the answer); fenced by the attempt delivered.
    let fence = event.scheduled.then(|| Fence {
        occurrence_id: event.occurrence_id.clone(),
        attempt: event.attempt,
    });
    if server.profile == Profile::Local {
        let outcome = blocking(move || {
            let _running = running;
            let _alive = fence.map(|fence| Heartbeat::start(assets.clone(), fence));
            trigger::deliver(&app, &assets, &event)
        })
        .await;
        return json_answer(200, &outcome);
    }
    // On a Forge-like platform the web trigger answers within its own
    // invocation: if the run goes on past it, the rest is queued work that
    // finishes after the answer, and the app reports it through the API.
    let (continuing, went_on) = tokio::sync::oneshot::channel::<()>();
    let on_continue: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = continuing.send(());
    });
    let mut run = tokio::task::spawn_blocking(move || {
        let _running = running;
        let _alive = fence.map(|fence| Heartbeat::start(assets.clone(), fence));
        trigger::deliver_with(&app, &assets, &event, Some(on_continue))
    });
    tokio::select! {
        finished = &mut run => match finished {
            Ok(outcome) => json_answer(200, &outcome),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        Ok(()) = went_on => json_answer(202, &json!({
            "accepted": true,
            "message": format!(
                "the run went on past the web trigger's {} s invocation; it goes on as queued work and reports through the API",
                FORGE.web_trigger.as_secs()
            ),
        })),
    }
}

/// The trigger event a verified callback asks for, in this server's
/// workspace. A callback that names no occurrence (a manual run) is named
/// by its signature's `digest`: one signed request is one occurrence, so
/// even a replay that got past the replay record would replay the first
/// run instead of starting another.
fn callback_event(server: &Server, body: &[u8], digest: &str) -> Result<TriggerEvent, ApiError> {
    let callback: Callback = body::parse(body)?;
    let source_id = match (callback.import_source_id, callback.importsource_id) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid_field(
                "importSourceId",
                format!("importSourceId {a:?} and importsourceId {b:?} disagree"),
            ))
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            return Err(ApiError::invalid_field(
                "importSourceId",
                "importSourceId (or importsourceId) is required",
            ))
        }
    };
    if callback.workspace_id != server.workspace_id {
        return Err(ApiError {
            status: 403,
            code: "FORBIDDEN",
            field: Some("workspaceId".into()),
            message: format!(
                "this server's apps live in workspace {}; they do not run imports in {}",
                server.workspace_id, callback.workspace_id
            ),
            allow: &[],
        });
    }
    Ok(TriggerEvent {
        workspace_id: callback.workspace_id,
        import_source_id: source_id,
        scheduled: callback.scheduled,
        schedule_id: callback.schedule_id,
        occurrence_id: callback
            .occurrence_id
            .unwrap_or_else(|| uuid::Uuid::new_v5(&MANUAL_RUNS, digest.as_bytes()).to_string()),
        nominal_time: callback
            .nominal_time
            .unwrap_or_else(|| timestamp(server.assets.clock().now())),
        attempt: callback.attempt.unwrap_or(1),
    })
}

/// The name space of the occurrence ids of manual runs, derived from their
/// callbacks' signatures.
const MANUAL_RUNS: uuid::Uuid = uuid::Uuid::from_u128(0x6d61_6e75_616c_2d72_756e_2d63_616c_6c62);

/// One log line per request.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // The path is the client's text; logged escaped.
    let path = assets_redact::printable(request.uri().path()).into_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if method == Method::GET && status < 400 {
        tracing::debug!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{client_of, is_webtrigger};
    use std::net::IpAddr;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_of(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:bbbb::9")),
            client_of(ip("2001:db8:1:2:aaaa::1")),
            "one /64, one client"
        );
        assert_ne!(client_of(ip("2001:db8:1:3::1")), client_of(ip("2001:db8:1:2::1")));
    }

    #[test]
    fn a_web_trigger_path_is_exactly_the_routers() {
        assert!(is_webtrigger("/apps/demo/webtrigger"));
        for path in [
            "/apps//webtrigger",
            "/apps/demo/webtrigger/",
            "//apps/demo/webtrigger",
            "/apps/demo/x/webtrigger",
            "/apps/demo",
        ] {
            assert!(!is_webtrigger(path), "{path}");
        }
    }
}
