//! The import-schedule resource: `POST|GET|PUT|DELETE
//! .../importsource/{id}/importschedule[/{scheduleId}]`, as the seed
//! describes, over the [`State`]; the schedule itself and its validation are
//! [`super::schedule`].

use super::body;
use super::model::State;
use super::schedule::{validate, Schedule, ScheduleFields};
use super::ApiError;
use super::SourceType;
use assets_calendar::Rule;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// `POST .../importschedule`.
pub fn create(
    state: &mut State,
    workspace_id: &str,
    source_id: &str,
    request: &[u8],
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let source = state.source(workspace_id, source_id)?.clone();
    let fields: ScheduleFields = body::parse(request)?;
    if source.source_type == SourceType::Discovery {
        return Err(ApiError::invalid_state(
            "SCHEDULING_NOT_SUPPORTED",
            "Scheduled imports are not supported for discovery imports; the Discovery tool schedules itself",
        ));
    }
    let spec = validate(fields, None, &source)?;
    if let Some(existing) = state.schedule_of_source.get(source_id) {
        return Err(ApiError::invalid_state(
            "SCHEDULE_EXISTS",
            format!("import source {source_id} already has schedule {existing}; update it with PUT or delete it first"),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let rule = Rule::new(spec.frequency, spec.start_time, spec.timezone, spec.policies);
    let mut schedule = Schedule {
        id: id.clone(),
        import_source_id: source_id.to_owned(),
        workspace_id: workspace_id.to_owned(),
        source_type: source.source_type,
        spec: spec.clone(),
        rule,
        created_at: now,
        updated_at: now,
        handled_until: now,
    };
    schedule.set_spec(spec, now);
    let body = schedule.to_json();
    state.touch(|c| {
        c.schedules.insert(id.clone());
    });
    state.schedule_of_source.insert(source_id.to_owned(), id.clone());
    state.schedules.insert(id, schedule);
    Ok(body)
}

/// `GET .../importschedule/{id}`.
pub fn get(state: &State, workspace_id: &str, source_id: &str, schedule_id: &str) -> Result<Value, ApiError> {
    state.source(workspace_id, source_id)?;
    Ok(find(state, source_id, schedule_id)?.to_json())
}

/// `PUT .../importschedule/{id}`: fields left out keep their value; the next
/// run is recomputed from the new rule.
pub fn update(
    state: &mut State,
    workspace_id: &str,
    source_id: &str,
    schedule_id: &str,
    request: &[u8],
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let source = state.source(workspace_id, source_id)?.clone();
    find(state, source_id, schedule_id)?;
    let fields: ScheduleFields = body::parse(request)?;
    let schedule = state.schedule_mut(schedule_id).expect("found above");
    let spec = validate(fields, Some(&schedule.spec), &source)?;
    schedule.set_spec(spec, now);
    Ok(schedule.to_json())
}

/// `DELETE .../importschedule/{id}`: no future runs.
pub fn delete(state: &mut State, workspace_id: &str, source_id: &str, schedule_id: &str) -> Result<(), ApiError> {
    state.source(workspace_id, source_id)?;
    find(state, source_id, schedule_id)?;
    state.schedules.remove(schedule_id);
    state.schedule_of_source.remove(source_id);
    state.touch(|c| {
        c.schedules.insert(schedule_id.to_owned());
    });
    Ok(())
}

fn find<'a>(state: &'a State, source_id: &str, schedule_id: &str) -> Result<&'a Schedule, ApiError> {
    state
        .schedules
        .get(schedule_id)
        .filter(|s| s.import_source_id == source_id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "schedule {schedule_id} does not exist for import source {source_id}"
            ))
        })
}
