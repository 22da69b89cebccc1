//! Paths and methods to handlers.
//!
//! Every endpoint lives under the seed's base path
//! `/jsm/assets/workspace/{workspaceId}/v1/importsource/{importSourceId}`.
//! Unknown paths are 404 and known paths with the wrong method 405, both with
//! JSON bodies, so a client's mistake is never mistaken for a server fault.

use super::mapping::{self, Mapping};
use super::model::{DataChunk, Execution, ExecutionStatus, MAX_FAILURE_REASON_CHARS};
use super::schedule::timestamp;
use super::{body, schedules, ApiError, AssetsService, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

/// Answers one request or says why it cannot.
pub fn route(service: &AssetsService, method: &str, path: &str, body: &[u8]) -> Result<Response, ApiError> {
    let (path, query) = match path.split('#').next().unwrap_or_default().split_once('?') {
        Some((path, query)) => (path, query),
        None => (path.split('#').next().unwrap_or_default(), ""),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (workspace_id, source_id, rest) = match segments.as_slice() {
        ["jsm", "assets", "workspace", ws, "v1", "importsource", src, rest @ ..] => (*ws, *src, rest),
        _ => {
            return Err(ApiError::not_found(format!(
                "no endpoint at {path}; import endpoints live under /jsm/assets/workspace/{{workspaceId}}/v1/importsource/{{importSourceId}}"
            )))
        }
    };
    let source = SourceRoute {
        service,
        workspace_id,
        source_id,
    };
    let allow = |allowed: &str| -> Result<(), ApiError> {
        if method.eq_ignore_ascii_case(allowed) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(method, allowed))
        }
    };
    match rest {
        [] => allow("GET").and_then(|_| source.details()),
        ["configstatus"] => allow("GET").and_then(|_| source.config_status()),
        ["mapping"] => match method.to_ascii_uppercase().as_str() {
            m @ ("PUT" | "PATCH") => source.set_mapping(m == "PATCH", query, body),
            _ => Err(ApiError::method_not_allowed(method, "PUT or PATCH")),
        },
        ["mapping", "progress", id] => allow("GET").and_then(|_| source.mapping_progress(id)),
        ["schema-and-mapping"] => allow("GET").and_then(|_| source.schema_and_mapping()),
        ["schedule"] => allow("GET").and_then(|_| source.schedule_links()),
        ["token"] => allow("POST").and_then(|_| source.token()),
        ["executions"] => allow("POST").and_then(|_| source.create_execution(body)),
        ["executions", "status"] => allow("GET").and_then(|_| source.latest_status()),
        ["executions", id] => allow("DELETE").and_then(|_| source.cancel(id)),
        ["executions", id, "status"] => allow("GET").and_then(|_| source.status(id)),
        ["executions", id, "progress"] => allow("PUT").and_then(|_| source.progress(id, body)),
        ["executions", id, "data"] => allow("POST").and_then(|_| source.submit_data(id, body)),
        ["executions", id, "history", "completed"] => allow("POST").and_then(|_| source.complete(id)),
        ["executions", id, "history", "failed"] => allow("POST").and_then(|_| source.fail(id, body)),
        ["history"] => allow("GET").and_then(|_| source.history(query)),
        ["importschedule"] => allow("POST").and_then(|_| source.create_schedule(body)),
        ["importschedule", id] => match method.to_ascii_uppercase().as_str() {
            "GET" => source.get_schedule(id),
            "PUT" => source.update_schedule(id, body),
            "DELETE" => source.delete_schedule(id),
            _ => Err(ApiError::method_not_allowed(method, "GET, PUT or DELETE")),
        },
        _ => Err(ApiError::not_found(format!("no endpoint at {path}"))),
    }
}

/// Most history lines one answer holds.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// Handlers for one import source.
struct SourceRoute<'a> {
    service: &'a AssetsService,
    workspace_id: &'a str,
    source_id: &'a str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateExecution {
    /// Absent means a manual run, as in the real API.
    #[serde(default)]
    scheduled: bool,
}

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
    #[serde(default)]
    client_generated_id: Option<String>,
    /// True closes ingestion (after this chunk's data, if any).
    #[serde(default)]
    completed: bool,
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

impl SourceRoute<'_> {
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
        state.start_execution(self.source_id, id.clone(), request.scheduled, now)?;
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
        let chunk: DataChunk = match serde_json::from_slice(body) {
            Ok(chunk) => chunk,
            Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
                return self.submit_real_data(execution_id, RealChunk::default())
            }
            Err(_) => {
                // Not JSON at all is said as such; otherwise the errors are
                // named in the form the body means to be in.
                let value: serde_json::Value = body::parse(body)?;
                let seed = value
                    .as_object()
                    .is_some_and(|o| o.contains_key("objectTypeId") || o.contains_key("objects"));
                if !seed {
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
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        let accepted = state.add_chunk(self.source_id, execution_id, chunk)?;
        Ok(Response::json(
            200,
            &json!({ "result": "success", "objectsAccepted": accepted }),
        ))
    }

    fn submit_real_data(&self, execution_id: &str, chunk: RealChunk) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        let source = state.source(self.workspace_id, self.source_id)?;
        let data = chunk.data.unwrap_or_default();
        let mut accepted = 0;
        if !data.is_empty() {
            let document = source.mapping.as_ref().ok_or_else(|| missing_mapping(self.source_id))?;
            let groups = Mapping::from_document(document)?.apply(&data)?;
            accepted = state.add_objects(self.source_id, execution_id, chunk.client_generated_id, groups)?;
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
            state.complete(self.source_id, execution_id, now)?;
        }
        Ok(Response::json(
            200,
            &json!({ "result": "success", "objectsAccepted": accepted, "completed": chunk.completed }),
        ))
    }

    /// `PUT …/executions/{id}/progress`: any JSON object, kept as sent and
    /// shown in the execution's status.
    fn progress(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        let progress: serde_json::Map<String, serde_json::Value> = body::parse_or_default(body)?;
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        state.set_progress(self.source_id, execution_id, progress.into())?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    /// `PUT|PATCH …/mapping[?async=true]`: checks the document (JSON
    /// Schema, then consistency) and sets it. PATCH replaces the `schema`
    /// and/or `mapping` it gives and keeps the other. With `async=true` the
    /// answer is 202 with a `resourceId` whose progress can be read; the
    /// check itself is always done at once, so a bad document is a 400
    /// either way.
    fn set_mapping(&self, patch: bool, query: &str, body: &[u8]) -> Result<Response, ApiError> {
        let mut asynchronous = false;
        for (name, value) in query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            match (name, value) {
                ("async", "true") => asynchronous = true,
                ("async", "false") => asynchronous = false,
                ("async", other) => {
                    return Err(ApiError::invalid_field(
                        "async",
                        format!("async must be true or false; got {other:?}"),
                    ))
                }
                (other, _) => {
                    return Err(ApiError::invalid_field(
                        other,
                        format!("unknown query parameter {other:?}; the mapping takes async"),
                    ))
                }
            }
        }
        let given: serde_json::Value = body::parse(body)?;
        if !given.is_object() {
            return Err(ApiError::invalid_body(
                "the schema-and-mapping document must be a JSON object",
            ));
        }
        let mut state = self.service.state();
        let source = state.source(self.workspace_id, self.source_id)?;
        let document = match (patch, &source.mapping) {
            (false, _) => given,
            (true, None) => return Err(missing_mapping(self.source_id)),
            (true, Some(current)) => {
                let mut merged = current.clone();
                for (key, value) in given.as_object().expect("checked above") {
                    merged[key] = value.clone();
                }
                merged
            }
        };
        mapping::check(&document)?;
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
        source.mapping = Some(document);
        source.mapping_resource_id = Some(resource_id.clone());
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
        let state = self.service.state();
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
        let state = self.service.state();
        let source = state.source(self.workspace_id, self.source_id)?;
        let document = source.mapping.as_ref().ok_or_else(|| missing_mapping(self.source_id))?;
        Ok(Response::json(200, document))
    }

    /// `GET …/configstatus`.
    fn config_status(&self) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let state = self.service.state();
        let source = state.source(self.workspace_id, self.source_id)?;
        let status = source.config_status(state.running(self.source_id, now));
        Ok(Response::json(200, &json!({ "status": status })))
    }

    /// `GET …/schedule`: where to create the source's schedule, and where
    /// its schedule is when it has one.
    fn schedule_links(&self) -> Result<Response, ApiError> {
        let state = self.service.state();
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
        let state = self.service.state();
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
        let token = format!("ist-{}", uuid::Uuid::new_v4().simple());
        state.source_mut(self.source_id)?.token = Some(token.clone());
        Ok(Response::json(200, &json!({ "result": "success", "token": token })))
    }

    fn complete(&self, execution_id: &str) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        state.complete(self.source_id, execution_id, now)?;
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
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        state.fail(self.source_id, execution_id, report.failure_reason, now)?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    fn cancel(&self, execution_id: &str) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        state.cancel(self.source_id, execution_id, now)?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    fn status(&self, execution_id: &str) -> Result<Response, ApiError> {
        let state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        let execution = state.execution(self.source_id, execution_id)?;
        Ok(Response::json(
            200,
            &status_body(&state, execution, self.service.clock().now()),
        ))
    }

    fn latest_status(&self) -> Result<Response, ApiError> {
        let state = self.service.state();
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
        let state = self.service.state();
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
        let mut state = self.service.state();
        schedules::delete(&mut state, self.workspace_id, self.source_id, schedule_id)?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    /// `GET …/history[?limit=N][&cursor=C]`: the history oldest first, a
    /// page at a time (`limit` 1 to 1000, default 1000). When there is more,
    /// the answer has `Link: <…?limit=N&cursor=C>; rel="next"` (RFC 8288)
    /// and the same cursor in `x-next-cursor`.
    fn history(&self, query: &str) -> Result<Response, ApiError> {
        let mut limit = MAX_HISTORY_PAGE;
        let mut after = None;
        for (name, value) in query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            match name {
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid_field(
                                "limit",
                                format!("limit must be a whole number from 1 to {MAX_HISTORY_PAGE}; got {value:?}"),
                            )
                        })?
                }
                "cursor" => {
                    after = Some(value.parse::<usize>().map_err(|_| {
                        ApiError::invalid_field("cursor", format!("cursor {value:?} is not one this API gave out"))
                    })?)
                }
                other => {
                    return Err(ApiError::invalid_field(
                        other,
                        format!("unknown query parameter {other:?}; the history takes limit and cursor"),
                    ))
                }
            }
        }
        let state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        let (page, next) = state.history_page(self.source_id, after, limit);
        drop(state);
        let mut response = Response::json(200, &page);
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
