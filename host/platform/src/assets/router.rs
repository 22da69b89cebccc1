//! Paths and methods to handlers.
//!
//! Every endpoint lives under the seed's base path
//! `/jsm/assets/workspace/{workspaceId}/v1/importsource/{importSourceId}`.
//! Unknown paths are 404, known paths with the wrong method 405 (with an
//! `Allow` header) and query parameters an endpoint does not take 400, all
//! with JSON bodies, so a client's mistake is never mistaken for a server
//! fault. HEAD is answered wherever GET is, as GET is, without the body.

use super::journal::{Act, Writer};
use super::mapping::{self, Mapping};
use super::model::{
    bounded_chunk_id, AssetObject, DataChunk, Execution, ExecutionStatus, Progress, MAX_FAILURE_REASON_CHARS,
};
use super::schedule::timestamp;
use super::{body, schedules, ApiError, AssetsService, Delivery, Response, StateGuard};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::json;

/// Answers one request or says why it cannot. `by` is the delivery whose
/// app makes the call, when the platform knows it (a hosted app's calls
/// during a scheduled delivery): it marks the executions the call creates
/// and fences the execution writes it makes ([`State::may_write`]).
pub fn route(
    service: &AssetsService,
    method: &str,
    path: &str,
    body: &[u8],
    by: Option<&Delivery>,
) -> Result<Response, ApiError> {
    if !method.eq_ignore_ascii_case("HEAD") {
        return answer(service, method, path, body, by);
    }
    // HEAD is GET without the body (RFC 9110, section 9.3.2): the same
    // status and headers, a refusal's included; a path that takes no GET
    // refuses HEAD with 405, and its answer has no body either.
    let mut response = answer(service, method, path, body, by).unwrap_or_else(ApiError::into_response);
    response.body.clear();
    Ok(response)
}

/// The workspace and import source ids of a path under
/// `/jsm/assets/workspace/{workspaceId}/v1/importsource/{importSourceId}`,
/// read exactly as [`route`] reads it (fragment and query dropped, empty
/// segments skipped); `None` for any other path. For judging a token on the
/// source the request will reach.
pub fn source_of(path: &str) -> Option<(&str, &str)> {
    let (path, _) = split_query(path);
    under_source(path).map(|(workspace, source, _)| (workspace, source))
}

/// The path without its fragment, and its query (empty when none).
fn split_query(path: &str) -> (&str, &str) {
    let path = path.split('#').next().unwrap_or_default();
    path.split_once('?').unwrap_or((path, ""))
}

/// Workspace id, import source id and the segments after them.
fn under_source(path: &str) -> Option<(&str, &str, Vec<&str>)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["jsm", "assets", "workspace", ws, "v1", "importsource", src, rest @ ..] => Some((ws, src, rest.to_vec())),
        _ => None,
    }
}

fn answer(
    service: &AssetsService,
    method: &str,
    path: &str,
    body: &[u8],
    by: Option<&Delivery>,
) -> Result<Response, ApiError> {
    let (path, query) = split_query(path);
    let (workspace_id, source_id, rest) = under_source(path).ok_or_else(|| {
        ApiError::not_found(format!(
            "no endpoint at {path}; import endpoints live under /jsm/assets/workspace/{{workspaceId}}/v1/importsource/{{importSourceId}}"
        ))
    })?;
    let endpoint = Endpoint::of(&rest).ok_or_else(|| ApiError::not_found(format!("no endpoint at {path}")))?;
    let allowed = endpoint.methods();
    let upper = method.to_ascii_uppercase();
    // HEAD runs the GET handler; `route` drops the body.
    let handler_method = match upper.as_str() {
        "HEAD" => "GET",
        other => other,
    };
    if !allowed.contains(&upper.as_str()) {
        return Err(ApiError::method_not_allowed(method, allowed));
    }
    let query = Query::parse(query, endpoint.parameters())?;
    let source = SourceRoute {
        service,
        workspace_id,
        source_id,
        by,
    };
    use Endpoint::*;
    match (endpoint, handler_method) {
        (Details, "GET") => source.details(),
        (ConfigStatus, "GET") => source.config_status(),
        (Mapping, m @ ("PUT" | "PATCH")) => source.set_mapping(m == "PATCH", &query, body),
        (MappingProgress(id), "GET") => source.mapping_progress(id),
        (SchemaAndMapping, "GET") => source.schema_and_mapping(),
        (ScheduleLinks, "GET") => source.schedule_links(),
        (Token, "POST") => source.token(),
        (Executions, "POST") => source.create_execution(body),
        (LatestStatus, "GET") => source.latest_status(),
        (Execution(id), "DELETE") => source.cancel(id),
        (Status(id), "GET") => source.status(id),
        (Progress(id), "PUT") => source.progress(id, body),
        (Data(id), "POST") => source.submit_data(id, body),
        (Completed(id), "POST") => source.complete(id, body),
        (Failed(id), "POST") => source.fail(id, body),
        (History, "GET") => source.history(&query),
        (Schedules, "POST") => source.create_schedule(body),
        (Schedule(id), "GET") => source.get_schedule(id),
        (Schedule(id), "PUT") => source.update_schedule(id, body),
        (Schedule(id), "DELETE") => source.delete_schedule(id),
        // Only if `methods` lists a method no arm above takes: the fuzz
        // test sends every method an `Allow` lists.
        _ => Err(ApiError::method_not_allowed(method, allowed)),
    }
}

/// An endpoint under an import source, with the ids its path carries.
#[derive(Debug, Clone, Copy)]
enum Endpoint<'p> {
    Details,
    ConfigStatus,
    Mapping,
    MappingProgress(&'p str),
    SchemaAndMapping,
    ScheduleLinks,
    Token,
    Executions,
    LatestStatus,
    Execution(&'p str),
    Status(&'p str),
    Progress(&'p str),
    Data(&'p str),
    Completed(&'p str),
    Failed(&'p str),
    History,
    Schedules,
    Schedule(&'p str),
}

/// GET, and HEAD with it.
const GET: &[&str] = &["GET", "HEAD"];
/// POST only.
const POST: &[&str] = &["POST"];

impl<'p> Endpoint<'p> {
    /// The endpoint at the path segments after `…/importsource/{id}`.
    fn of(rest: &[&'p str]) -> Option<Endpoint<'p>> {
        use Endpoint::*;
        Some(match rest {
            [] => Details,
            ["configstatus"] => ConfigStatus,
            ["mapping"] => Mapping,
            ["mapping", "progress", id] => MappingProgress(id),
            ["schema-and-mapping"] => SchemaAndMapping,
            ["schedule"] => ScheduleLinks,
            ["token"] => Token,
            ["executions"] => Executions,
            ["executions", "status"] => LatestStatus,
            ["executions", id] => Execution(id),
            ["executions", id, "status"] => Status(id),
            ["executions", id, "progress"] => Progress(id),
            ["executions", id, "data"] => Data(id),
            ["executions", id, "history", "completed"] => Completed(id),
            ["executions", id, "history", "failed"] => Failed(id),
            ["history"] => History,
            ["importschedule"] => Schedules,
            ["importschedule", id] => Schedule(id),
            _ => return None,
        })
    }

    /// The methods it takes: what a 405 lists in its message and `Allow`.
    fn methods(self) -> &'static [&'static str] {
        use Endpoint::*;
        match self {
            Details | ConfigStatus | MappingProgress(_) | SchemaAndMapping | ScheduleLinks | LatestStatus
            | Status(_) | History => GET,
            Token | Executions | Data(_) | Completed(_) | Failed(_) | Schedules => POST,
            Mapping => &["PUT", "PATCH"],
            Execution(_) => &["DELETE"],
            Progress(_) => &["PUT"],
            Schedule(_) => &["GET", "HEAD", "PUT", "DELETE"],
        }
    }

    /// The query parameters it takes; any other is a 400.
    fn parameters(self) -> &'static [&'static str] {
        match self {
            Endpoint::Mapping => &["async"],
            Endpoint::History => &["limit", "cursor"],
            _ => &[],
        }
    }
}

/// A request's query parameters, percent-decoded, checked once against the
/// names its endpoint takes (the server's admin endpoints use it too, so
/// every endpoint refuses what it does not take alike).
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// 400 naming the first parameter that is not one of `takes`, or that is
    /// given twice (which of the two values would be meant is a guess).
    pub fn parse(query: &str, takes: &[&str]) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !takes.contains(&name.as_ref()) {
                let listed = match takes {
                    [] => "none".to_owned(),
                    _ => takes.join(", "),
                };
                return Err(ApiError::invalid_field(
                    name.as_ref(),
                    format!("unknown query parameter {name:?}; this endpoint takes {listed}"),
                ));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::invalid_field(
                    name.as_ref(),
                    format!("query parameter {name} is given twice; give it once"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Query { pairs })
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Most history lines one answer holds.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// Handlers for one import source.
struct SourceRoute<'a> {
    service: &'a AssetsService,
    workspace_id: &'a str,
    source_id: &'a str,
    /// The delivery whose app calls, when the platform knows it.
    by: Option<&'a Delivery>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateExecution {
    /// Absent means a manual run, as in the real API.
    #[serde(default)]
    scheduled: bool,
}

/// A body with no fields: `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FailureReport {
    /// Required by the seed; a client that sends no body at all (the
    /// published API marks it optional) gets a reason saying so.
    failure_reason: String,
}

/// A data chunk in the real API's form: records under selectors, mapped by
/// the source's schema-and-mapping document.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RealChunk {
    #[serde(default)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    /// At most [`super::model::MAX_CLIENT_GENERATED_ID_BYTES`], as in the
    /// seed's form.
    #[serde(default, deserialize_with = "bounded_chunk_id")]
    client_generated_id: Option<String>,
    /// True closes ingestion (after this chunk's data, if any).
    #[serde(default)]
    completed: bool,
}

/// Which form a data chunk that is not a valid seed-form chunk means to be
/// in: the seed's fields, present. Read without keeping their values, so a
/// 16 MB chunk with one bad value is not parsed into a tree to find out.
#[derive(Debug, Default, Deserialize)]
struct ChunkForm {
    #[serde(rename = "objectTypeId", default, deserialize_with = "present")]
    object_type_id: bool,
    #[serde(default, deserialize_with = "present")]
    objects: bool,
}

/// True for a field that is there, whatever its value.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The real API's 404 `MISSING_MAPPING`: the source has no
/// schema-and-mapping document yet.
fn missing_mapping(source_id: &str) -> ApiError {
    ApiError {
        status: 404,
        code: "MISSING_MAPPING",
        field: None,
        message: format!(
            "import source {source_id} has no schema-and-mapping document yet; set one with PUT …/importsource/{source_id}/mapping"
        ),
        allow: &[],
    }
}

/// The real API's module key of a source type.
fn module_key(source_type: super::SourceType) -> &'static str {
    use super::SourceType::*;
    match source_type {
        External => "rlabs-import-type-external",
        Csv => "rlabs-import-type-csv",
        Json => "rlabs-import-type-json",
        Datamanager => "rlabs-import-type-dm-csv",
        Discovery => "insight-discovery-import",
    }
}

impl<'a> SourceRoute<'a> {
    /// The state, locked, for a write to execution `execution_id`: the
    /// source must exist and, during a delivery, the delivery must own the
    /// execution ([`State::may_write`]) — checked under the lock the write
    /// is made under, so no take-over can slip in between. Every handler
    /// that changes an execution takes the state this way.
    fn writing(&self, execution_id: &str) -> Result<StateGuard<'a>, ApiError> {
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        if let Some(delivery) = self.by {
            if let Err(refusal) = state.may_write(execution_id, delivery) {
                // Journaled under the occurrence the execution belongs to.
                let occurrence = state
                    .execution_by_id(execution_id)
                    .and_then(|e| e.created_by.as_ref())
                    .map(|creator| creator.fence.occurrence_id.clone())
                    .unwrap_or_default();
                let now = self.service.clock().now();
                let why = Some(refusal.message.clone());
                let attempt = Some(delivery.fence.attempt);
                let by = Writer::of(Some(delivery));
                state.journal(now, &occurrence, attempt, Some(execution_id), Act::Wrote, &by, why);
                return Err(refusal);
            }
        }
        Ok(state)
    }

    fn base(&self) -> String {
        format!(
            "{}/jsm/assets/workspace/{}/v1/importsource/{}",
            self.service.base_url(),
            self.workspace_id,
            self.source_id
        )
    }

    fn create_execution(&self, body: &[u8]) -> Result<Response, ApiError> {
        let request: CreateExecution = body::parse_or_default(body)?;
        let now = self.service.clock().now();
        let mut state = self.service.state();
        let source = state.source(self.workspace_id, self.source_id)?;
        if source.config_status(false) == "MISSING_MAPPING" {
            return Err(ApiError::conflict(
                "MISSING_MAPPING",
                format!(
                    "import source {} needs a schema-and-mapping document before an import can start; set one with PUT …/mapping",
                    self.source_id
                ),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        state.start_execution(self.source_id, id.clone(), request.scheduled, self.by, now)?;
        let execution = format!("{}/executions/{id}", self.base());
        // The real API's answer: links only, the id is inside them.
        Ok(Response::json(
            201,
            &json!({
                "result": "success",
                "links": {
                    "submitProgress": format!("{execution}/progress"),
                    "submitResults": format!("{execution}/data"),
                    "getExecutionStatus": format!("{execution}/status"),
                    "cancel": execution,
                }
            }),
        ))
    }

    /// `POST …/data` in either dialect: the seed's `{objectTypeId, objects}`
    /// or the real API's `{data, clientGeneratedId, completed}`.
    fn submit_data(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        // The seed's form is the fast path: one typed parse.
        let chunk: DataChunk = match body::try_parse(body) {
            Some(chunk) => chunk,
            None if body.iter().all(u8::is_ascii_whitespace) => {
                return self.submit_real_data(execution_id, RealChunk::default())
            }
            None => {
                // Not a JSON object is said as such; otherwise the errors
                // are named in the form the body means to be in.
                let form: ChunkForm = body::parse(body)?;
                if !(form.object_type_id || form.objects) {
                    return self.submit_real_data(execution_id, body::parse(body)?);
                }
                body::parse(body)?
            }
        };
        if chunk.object_type_id.trim().is_empty() {
            return Err(ApiError::invalid_field(
                "objectTypeId",
                "objectTypeId must not be empty",
            ));
        }
        if let Some(i) = chunk.objects.iter().position(|o| o.external_id.trim().is_empty()) {
            return Err(ApiError::invalid_field(
                format!("objects[{i}].externalId"),
                format!("objects[{i}].externalId must not be empty"),
            ));
        }
        let quotas = self.service.quotas();
        let max = quotas.object_bytes as u64;
        if let Some((i, bytes)) = chunk
            .objects
            .iter()
            .map(AssetObject::held_bytes)
            .enumerate()
            .find(|&(_, b)| b > max)
        {
            return Err(ApiError::invalid_field(
                format!("objects[{i}]"),
                format!(
                    "objects[{i}] is {bytes} bytes (its external id, label, attribute names and values); an object \
                     is at most {max} bytes (quota object_bytes)"
                ),
            ));
        }
        let mut state = self.writing(execution_id)?;
        let accepted = state.add_chunk(self.source_id, execution_id, chunk, quotas)?;
        Ok(Response::json(
            200,
            &json!({ "result": "success", "objectsAccepted": accepted }),
        ))
    }

    fn submit_real_data(&self, execution_id: &str, chunk: RealChunk) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let quotas = self.service.quotas();
        let data = chunk.data.unwrap_or_default();
        let groups = if data.is_empty() {
            None
        } else {
            let mapping = {
                let state = self.service.read()?;
                let source = state.source(self.workspace_id, self.source_id)?;
                let document = source.mapping.as_ref().ok_or_else(|| missing_mapping(self.source_id))?;
                Mapping::from_document(document)?
            };
            // The records are mapped with the lock free: a chunk is as large
            // as the server takes. The mapping cannot change meanwhile for
            // an execution that is ingesting, and any other is refused below.
            Some(mapping.apply(&data, quotas.object_bytes as u64)?)
        };
        let mut state = self.writing(execution_id)?;
        let mut accepted = 0;
        if let Some(groups) = groups {
            accepted = state.add_objects(self.source_id, execution_id, chunk.client_generated_id, groups, quotas)?;
        } else if !chunk.completed {
            // Nothing to store, but an ended execution still says so.
            state.ingesting_execution(self.source_id, execution_id, "data can be sent")?;
        }
        if chunk.completed {
            let execution = state.execution(self.source_id, execution_id)?;
            // Completion is a state the client asserts: saying it again
            // (an answer lost on the way back) is not an error.
            if matches!(
                state.status_at(execution, now),
                ExecutionStatus::Processing | ExecutionStatus::Done
            ) {
                return Ok(Response::json(
                    200,
                    &json!({ "result": "success", "objectsAccepted": accepted, "completed": true }),
                ));
            }
            state.complete(self.source_id, execution_id, now, &Writer::of(self.by))?;
        }
        Ok(Response::json(
            200,
            &json!({ "result": "success", "objectsAccepted": accepted, "completed": chunk.completed }),
        ))
    }

    /// `PUT …/executions/{id}/progress`: any JSON object up to the
    /// `progress_bytes` quota, kept as sent (in the history line, for ever)
    /// and shown in the execution's status.
    fn progress(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        // Measured as sent, before parsing: a body too large to keep is not
        // worth reading either.
        let limit = self.service.quotas().progress_bytes;
        if body.len() > limit {
            return Err(ApiError::limit_exceeded(format!(
                "the progress body is {} bytes; at most {limit} bytes of progress are kept per execution \
                 (quota progress_bytes). Nothing was stored",
                body.len()
            )));
        }
        let progress: serde_json::Map<String, serde_json::Value> = body::parse_or_default(body)?;
        let progress = Progress::new(&progress);
        let mut state = self.writing(execution_id)?;
        state.set_progress(self.source_id, execution_id, progress)?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    /// `PUT|PATCH …/mapping[?async=true]`: checks the document (JSON
    /// Schema, then consistency) and sets it. PATCH replaces the `schema`
    /// and/or `mapping` it gives and keeps the other. With `async=true` the
    /// answer is 202 with a `resourceId` whose progress can be read; the
    /// check itself is always done at once, so a bad document is a 400
    /// either way.
    ///
    /// The check takes time in proportion to the document (up to the
    /// `mapping_bytes` quota), so it is done with the state lock free: the
    /// lock is taken briefly before it (the source must exist; a PATCH reads
    /// the document it merges into) and again to store the result. A PATCH
    /// whose document changed in between (another PUT or PATCH) is refused
    /// with 409 `MAPPING_CHANGED` rather than merged again: storing its
    /// merge would silently undo that change, and the client, told so, can
    /// read the document and decide.
    fn set_mapping(&self, patch: bool, query: &Query, body: &[u8]) -> Result<Response, ApiError> {
        let asynchronous = match query.get("async") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::invalid_field(
                    "async",
                    format!("async must be true or false; got {other:?}"),
                ))
            }
        };
        let limit = self.service.quotas().mapping_bytes;
        if body.len() > limit {
            return Err(ApiError::limit_exceeded(format!(
                "the schema-and-mapping document is {} bytes; a document is at most {limit} bytes (quota \
                 mapping_bytes). Nothing was changed",
                body.len()
            )));
        }
        let given: serde_json::Map<String, serde_json::Value> = body::parse(body)?;
        // What this change starts from: for a PATCH, the document and the
        // operation that set it (a new one for every change).
        let base = {
            let state = self.service.read()?;
            let source = state.source(self.workspace_id, self.source_id)?;
            match (patch, &source.mapping) {
                (false, _) => None,
                (true, None) => return Err(missing_mapping(self.source_id)),
                (true, Some(current)) => Some((current.clone(), source.mapping_resource_id.clone())),
            }
        };
        let (document, read) = match base {
            None => (serde_json::Value::Object(given), None),
            Some((mut merged, read)) => {
                for (key, value) in given {
                    merged[key] = value;
                }
                (merged, Some(read))
            }
        };
        mapping::check(&document)?;
        self.service.run_after_mapping_check();
        let mut state = self.service.state();
        let source = state.source(self.workspace_id, self.source_id)?;
        if let Some(read) = read {
            if source.mapping_resource_id != read {
                return Err(ApiError::conflict(
                    "MAPPING_CHANGED",
                    "the schema-and-mapping document changed while this PATCH was being checked; read it again \
                     (GET …/schema-and-mapping) and send the PATCH again. Nothing was changed",
                ));
            }
        }
        if let Some(running) = state.ingesting(self.source_id) {
            return Err(ApiError::conflict(
                "IN_PROGRESS",
                format!(
                    "execution {} is ingesting; the mapping can change only between imports",
                    running.id
                ),
            ));
        }
        let resource_id = uuid::Uuid::new_v4().to_string();
        let source = state.source_mut(self.source_id)?;
        let replaced = source.mapping.replace(document);
        source.mapping_resource_id = Some(resource_id.clone());
        // Saved as the guard goes; the old document is freed after, with
        // the lock free.
        drop(state);
        drop(replaced);
        if asynchronous {
            let progress = format!("{}/mapping/progress/{resource_id}", self.base());
            Ok(Response::json(
                202,
                &json!({ "result": "success", "resourceId": resource_id, "links": { "progress": progress } }),
            ))
        } else {
            Ok(Response::json(200, &json!({ "result": "success" })))
        }
    }

    /// `GET …/mapping/progress/{resourceId}`: the mock checks and sets a
    /// mapping within the call, so a known operation is always complete.
    fn mapping_progress(&self, resource_id: &str) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        let source = state.source(self.workspace_id, self.source_id)?;
        if source.mapping_resource_id.as_deref() != Some(resource_id) {
            return Err(ApiError::not_found(format!(
                "no mapping operation {resource_id} for import source {}",
                self.source_id
            )));
        }
        Ok(Response::json(
            200,
            &json!({ "resourceId": resource_id, "status": "COMPLETED", "progress": 100 }),
        ))
    }

    /// `GET …/schema-and-mapping`: the document as set; 404
    /// `MISSING_MAPPING` before one is.
    fn schema_and_mapping(&self) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        let source = state.source(self.workspace_id, self.source_id)?;
        let document = source.mapping.as_ref().ok_or_else(|| missing_mapping(self.source_id))?;
        Ok(Response::json(200, document))
    }

    /// `GET …/configstatus`.
    fn config_status(&self) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let state = self.service.read()?;
        let source = state.source(self.workspace_id, self.source_id)?;
        let status = source.config_status(state.running(self.source_id, now));
        Ok(Response::json(200, &json!({ "status": status })))
    }

    /// `GET …/schedule`: where to create the source's schedule, and where
    /// its schedule is when it has one.
    fn schedule_links(&self) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        state.source(self.workspace_id, self.source_id)?;
        let create = format!("{}/importschedule", self.base());
        let mut links = json!({ "createSchedule": create });
        if let Some(id) = state.schedule_of_source.get(self.source_id) {
            links["schedule"] = format!("{create}/{id}").into();
        }
        Ok(Response::json(200, &json!({ "result": "success", "links": links })))
    }

    /// `GET /importsource/{id}`: the source, with `scheduledImportDetails`
    /// when it has a schedule.
    fn details(&self) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        let source = state.source(self.workspace_id, self.source_id)?;
        let details = state
            .schedule_of_source
            .get(self.source_id)
            .and_then(|id| state.schedule(id))
            .map(|s| {
                json!({
                    "importScheduleId": s.id,
                    "startTime": timestamp(s.spec.start_time),
                    "runFrequency": s.spec.frequency,
                    "nextScheduledTime": s.next_run_time().map(timestamp),
                    "createdAt": timestamp(s.created_at),
                })
            });
        Ok(Response::json(
            200,
            &json!({
                "id": source.id,
                "workspaceId": source.workspace_id,
                "type": source.source_type,
                "app": source.app,
                "importSourceModuleKey": module_key(source.source_type),
                "isImportSourceSchedulingEnabled": source.source_type != super::SourceType::Discovery,
                "tokenGenerated": source.token.is_some(),
                "requiresMapping": source.requires_mapping,
                "scheduledImportDetails": details,
            }),
        ))
    }

    /// `POST …/token`: a new bearer token for this source's own endpoints
    /// (it replaces the one before). Apps never reach this: the platform
    /// refuses the path to guests.
    fn token(&self) -> Result<Response, ApiError> {
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        let token = format!("{}{}", super::SOURCE_TOKEN_PREFIX, uuid::Uuid::new_v4().simple());
        state.source_mut(self.source_id)?.token = Some(token.clone());
        Ok(Response::json(200, &json!({ "result": "success", "token": token })))
    }

    /// `POST …/history/completed` takes no body, or `{}`: anything else
    /// (`{"completed": false}`, say) is refused rather than ignored, since
    /// it would complete the execution whatever it said.
    fn complete(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        let _: NoFields = body::parse_or_default(body)?;
        let now = self.service.clock().now();
        let mut state = self.writing(execution_id)?;
        state.complete(self.source_id, execution_id, now, &Writer::of(self.by))?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    fn fail(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        let mut report: FailureReport = body::parse_or_default(body)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            report.failure_reason = "the app reported a failure without a reason (the request had no body)".into();
        }
        // Counted in UTF-16 code units, as a Java server counts `length()`:
        // an app that counts Unicode scalar values and sends 1,024 emoji
        // (2,048 units) is refused here as it would be there.
        let units = report.failure_reason.encode_utf16().count();
        if units > MAX_FAILURE_REASON_CHARS {
            return Err(ApiError::invalid_field(
                "failureReason",
                format!(
                    "failureReason is {units} characters long counted in UTF-16 code units (an emoji counts 2); at most {MAX_FAILURE_REASON_CHARS} are allowed"
                ),
            ));
        }
        if report.failure_reason.trim().is_empty() {
            return Err(ApiError::invalid_field(
                "failureReason",
                "failureReason must say why the import failed; it is empty",
            ));
        }
        let now = self.service.clock().now();
        let mut state = self.writing(execution_id)?;
        state.fail(
            self.source_id,
            execution_id,
            report.failure_reason,
            now,
            &Writer::of(self.by),
        )?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    fn cancel(&self, execution_id: &str) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.writing(execution_id)?;
        state.cancel(self.source_id, execution_id, now, &Writer::of(self.by))?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    fn status(&self, execution_id: &str) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        state.source(self.workspace_id, self.source_id)?;
        let execution = state.execution(self.source_id, execution_id)?;
        Ok(Response::json(
            200,
            &status_body(&state, execution, self.service.clock().now()),
        ))
    }

    fn latest_status(&self) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        state.source(self.workspace_id, self.source_id)?;
        let execution = state
            .latest_execution(self.source_id)
            .ok_or_else(|| ApiError::not_found(format!("import source {} has no executions yet", self.source_id)))?;
        Ok(Response::json(
            200,
            &status_body(&state, execution, self.service.clock().now()),
        ))
    }

    fn create_schedule(&self, body: &[u8]) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        let created = schedules::create(
            &mut state,
            self.workspace_id,
            self.source_id,
            body,
            now,
            self.service.callback_targets(),
        )?;
        Ok(Response::json(201, &created))
    }

    fn get_schedule(&self, schedule_id: &str) -> Result<Response, ApiError> {
        let state = self.service.read()?;
        Ok(Response::json(
            200,
            &schedules::get(&state, self.workspace_id, self.source_id, schedule_id)?,
        ))
    }

    fn update_schedule(&self, schedule_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        let updated = schedules::update(
            &mut state,
            self.workspace_id,
            self.source_id,
            schedule_id,
            body,
            now,
            self.service.callback_targets(),
        )?;
        Ok(Response::json(200, &updated))
    }

    fn delete_schedule(&self, schedule_id: &str) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        schedules::delete(&mut state, self.workspace_id, self.source_id, schedule_id, now)?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    /// `GET …/history[?limit=N][&cursor=C]`: the history oldest first, a
    /// page at a time: at most `limit` lines (1 to 1000, default 1000) and
    /// at most the `history_page_bytes` quota of JSON, a page ending before
    /// the line that would take it over (but holding at least one line, so
    /// paging always moves on). When there is more, the answer has
    /// `Link: <…?limit=N&cursor=C>; rel="next"` (RFC 8288) and the same
    /// cursor in `x-next-cursor`.
    fn history(&self, query: &Query) -> Result<Response, ApiError> {
        let limit = match query.get("limit") {
            None => MAX_HISTORY_PAGE,
            Some(value) => value
                .parse()
                .ok()
                .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "limit",
                        format!("limit must be a whole number from 1 to {MAX_HISTORY_PAGE}; got {value:?}"),
                    )
                })?,
        };
        let after = match query.get("cursor") {
            None => None,
            Some(value) => Some(value.parse::<usize>().map_err(|_| {
                ApiError::invalid_field("cursor", format!("cursor {value:?} is not one this API gave out"))
            })?),
        };
        let budget = self.service.quotas().history_page_bytes;
        let state = self.service.read()?;
        state.source(self.workspace_id, self.source_id)?;
        // The body is the JSON array written here, "[" + lines joined by
        // "," + "]", so that its size is known line by line.
        let mut body = String::from("[");
        let mut last = None;
        let mut next = None;
        for (lines, (index, entry)) in state.history_after(self.source_id, after).enumerate() {
            if lines == limit {
                next = last;
                break;
            }
            let line = serde_json::to_string(entry).expect("history lines serialize");
            if lines > 0 {
                // This line, its comma and the closing bracket must fit.
                if body.len() + 1 + line.len() + 1 > budget {
                    next = last;
                    break;
                }
                body.push(',');
            }
            body.push_str(&line);
            last = Some(index);
        }
        body.push(']');
        drop(state);
        let mut response = Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        };
        if let Some(next) = next {
            let url = format!(
                "{}/jsm/assets/workspace/{}/v1/importsource/{}/history?limit={limit}&cursor={next}",
                self.service.base_url(),
                self.workspace_id,
                self.source_id
            );
            response.headers.push(("link".into(), format!("<{url}>; rel=\"next\"")));
            response.headers.push(("x-next-cursor".into(), next.to_string()));
        }
        Ok(response)
    }
}

fn status_body(state: &super::State, execution: &Execution, now: DateTime<Utc>) -> serde_json::Value {
    let entry = state.history_of(&execution.id);
    json!({
        "executionId": execution.id,
        "status": state.status_at(execution, now).wire_name(),
        "scheduled": execution.scheduled,
        // The line's count: an ended execution's objects stay on disk.
        "objects": entry.map_or(execution.objects.len() as u64, |e| e.objects),
        "objectsReceived": execution.received,
        "chunks": execution.chunks,
        "startedAt": entry.map(|e| e.started_at),
        "endedAt": entry.and_then(|e| e.ended_at),
        "failureReason": entry.and_then(|e| e.failure_reason.clone()),
        "processedAt": entry.and_then(|e| e.processed_at),
        "progress": entry.and_then(|e| e.progress.clone()),
    })
}
