//! Paths and methods to handlers.
//!
//! Every endpoint lives under the seed's base path
//! `/jsm/assets/workspace/{workspaceId}/v1/importsource/{importSourceId}`.
//! Unknown paths are 404 and known paths with the wrong method 405, both with
//! JSON bodies, so a client's mistake is never mistaken for a server fault.

use super::model::{DataChunk, Execution, MAX_FAILURE_REASON_CHARS};
use super::{body, schedules, ApiError, AssetsService, Response};
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
        ["executions"] => allow("POST").and_then(|_| source.create_execution(body)),
        ["executions", "status"] => allow("GET").and_then(|_| source.latest_status()),
        ["executions", id] => allow("DELETE").and_then(|_| source.cancel(id)),
        ["executions", id, "status"] => allow("GET").and_then(|_| source.status(id)),
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FailureReport {
    failure_reason: String,
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
        state.source(self.workspace_id, self.source_id)?;
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

    fn submit_data(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        let chunk: DataChunk = body::parse(body)?;
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

    fn complete(&self, execution_id: &str) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        state.complete(self.source_id, execution_id, now)?;
        Ok(Response::json(200, &json!({ "result": "success" })))
    }

    fn fail(&self, execution_id: &str, body: &[u8]) -> Result<Response, ApiError> {
        let report: FailureReport = body::parse(body)?;
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
        Ok(Response::json(200, &status_body(&state, execution)))
    }

    fn latest_status(&self) -> Result<Response, ApiError> {
        let state = self.service.state();
        state.source(self.workspace_id, self.source_id)?;
        let execution = state
            .latest_execution(self.source_id)
            .ok_or_else(|| ApiError::not_found(format!("import source {} has no executions yet", self.source_id)))?;
        Ok(Response::json(200, &status_body(&state, execution)))
    }

    fn create_schedule(&self, body: &[u8]) -> Result<Response, ApiError> {
        let now = self.service.clock().now();
        let mut state = self.service.state();
        let created = schedules::create(&mut state, self.workspace_id, self.source_id, body, now)?;
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
        let updated = schedules::update(&mut state, self.workspace_id, self.source_id, schedule_id, body, now)?;
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

fn status_body(state: &super::State, execution: &Execution) -> serde_json::Value {
    let entry = state.history_of(&execution.id);
    json!({
        "executionId": execution.id,
        "status": execution.status,
        "scheduled": execution.scheduled,
        // The line's count: an ended execution's objects stay on disk.
        "objects": entry.map_or(execution.objects.len() as u64, |e| e.objects),
        "objectsReceived": execution.received,
        "chunks": execution.chunks,
        "startedAt": entry.map(|e| e.started_at),
        "endedAt": entry.and_then(|e| e.ended_at),
        "failureReason": entry.and_then(|e| e.failure_reason.clone()),
    })
}
