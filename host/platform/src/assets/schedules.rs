//! The import-schedule resource: `POST|GET|PUT|DELETE
//! .../importsource/{id}/importschedule[/{scheduleId}]`, as the seed
//! describes, over the [`State`]; the schedule itself and its validation are
//! [`super::schedule`].

use super::body;
use super::journal::Writer;
use super::model::{HistoryEntry, Outcome, State};
use super::schedule::{check_once_start, occurrence_id, timestamp, validate, Schedule, ScheduleFields};
use super::ApiError;
use super::{CallbackTargets, ImportSource, SourceType};
use assets_calendar::{Frequency, Occurrence, Rule};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// `POST .../importschedule`.
pub fn create(
    state: &mut State,
    workspace_id: &str,
    source_id: &str,
    request: &[u8],
    now: DateTime<Utc>,
    targets: Option<&dyn CallbackTargets>,
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
    check_target(targets, &source, spec.callback_url.as_deref(), None)?;
    check_once_start(&spec, now)?;
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

/// Checks a callback URL the request sets against the operator's policy: a
/// 400 on `callbackUrl` saying why. An unchanged URL is not checked again
/// here (so pausing a schedule never fails on it); the scheduler checks
/// every URL again before it calls it.
fn check_target(
    targets: Option<&dyn CallbackTargets>,
    source: &ImportSource,
    url: Option<&str>,
    current: Option<&str>,
) -> Result<(), ApiError> {
    match (targets, url) {
        (Some(targets), Some(url)) if Some(url) != current => targets
            .check(source, url)
            .map_err(|why| ApiError::invalid_field("callbackUrl", why)),
        _ => Ok(()),
    }
}

/// `GET .../importschedule/{id}`.
pub fn get(state: &State, workspace_id: &str, source_id: &str, schedule_id: &str) -> Result<Value, ApiError> {
    state.source(workspace_id, source_id)?;
    Ok(find(state, source_id, schedule_id)?.to_json())
}

/// `PUT .../importschedule/{id}`: fields left out keep their value.
///
/// - Only the callback URL changes: the bookkeeping stays, so a run that is
///   due but not yet started still runs.
/// - The rule changes (frequency, start, zone, policies): what fell due under
///   the old rule and was not started is recorded as missed, and the new
///   rule runs from now on.
/// - `isActive: false` pauses; `isActive: true` resumes from that moment on:
///   what fell due while paused is recorded as skipped, not run late.
pub fn update(
    state: &mut State,
    workspace_id: &str,
    source_id: &str,
    schedule_id: &str,
    request: &[u8],
    now: DateTime<Utc>,
    targets: Option<&dyn CallbackTargets>,
) -> Result<Value, ApiError> {
    let source = state.source(workspace_id, source_id)?.clone();
    let current = find(state, source_id, schedule_id)?.clone();
    let fields: ScheduleFields = body::parse(request)?;
    let spec = validate(fields, Some(&current.spec), &source)?;
    check_target(
        targets,
        &source,
        spec.callback_url.as_deref(),
        current.spec.callback_url.as_deref(),
    )?;
    let same_rule = current.same_rule(&spec);
    if !same_rule {
        check_once_start(&spec, now)?;
        settle(state, &current, now, Outcome::Missed, |due| {
            format!(
                "missed: fell due at {due}, but the schedule was changed at {} before it started; the new rule runs from then on",
                timestamp(now)
            )
        });
    } else if current.spec.is_active && !spec.is_active {
        settle(state, &current, now, Outcome::Skipped, |due| {
            format!(
                "skipped: fell due at {due}, but the schedule was paused (isActive false) at {} before it started",
                timestamp(now)
            )
        });
    } else if !current.spec.is_active && spec.is_active {
        settle(state, &current, now, Outcome::Skipped, |due| {
            format!("skipped: fell due at {due} while the schedule was paused (isActive false)")
        });
    }
    let schedule = state.schedule_mut(schedule_id).expect("found above");
    if same_rule {
        schedule.spec = spec;
        schedule.updated_at = now;
    } else {
        schedule.set_spec(spec, now);
    }
    past_what_ended(state, schedule_id);
    Ok(state.schedule(schedule_id).expect("found above").to_json())
}

/// Moves a schedule's bookkeeping past the occurrences the ledger already
/// has: a change that keeps an instant (a `ONCE` schedule's new time zone)
/// keeps its occurrence id, and an occurrence runs once. A `ONCE` schedule
/// with nothing left to run is inactive, and says so.
fn past_what_ended(state: &mut State, schedule_id: &str) {
    let Some(schedule) = state.schedule(schedule_id) else {
        return;
    };
    let mut until = schedule.handled_until;
    let mut left = false;
    for occurrence in schedule.rule.occurrences_after(schedule.handled_until) {
        if state
            .occurrence(&occurrence_id(&schedule.id, occurrence.instant))
            .is_none()
        {
            left = true;
            break;
        }
        until = occurrence.instant;
    }
    let finished = schedule.spec.frequency == Frequency::Once && !left;
    if until == schedule.handled_until && !(finished && schedule.spec.is_active) {
        return;
    }
    let schedule = state.schedule_mut(schedule_id).expect("found above");
    schedule.handled_until = until;
    if finished {
        schedule.spec.is_active = false;
    }
}

/// Records each occurrence of `schedule` that fell due by `now` and was not
/// claimed yet as `outcome`, with `reason(nominal time)`, and moves the
/// bookkeeping past them: nothing that was due leaves the history silently.
fn settle(
    state: &mut State,
    schedule: &Schedule,
    now: DateTime<Utc>,
    outcome: Outcome,
    reason: impl Fn(String) -> String,
) {
    let due: Vec<Occurrence> = schedule
        .rule
        .occurrences_after(schedule.handled_until)
        .take_while(|o| o.instant <= now)
        .collect();
    for occurrence in &due {
        let id = occurrence_id(&schedule.id, occurrence.instant);
        let why = reason(timestamp(occurrence.instant));
        state.end_unrun(unrun_entry(schedule, occurrence, &id, outcome, why), &Writer::Api);
    }
    if let (Some(last), Some(s)) = (due.last(), state.schedule_mut(&schedule.id)) {
        s.handled_until = last.instant;
    }
}

/// The history line of an occurrence that did not run (skipped or missed),
/// with the reason people read.
pub fn unrun_entry(
    schedule: &Schedule,
    occurrence: &Occurrence,
    occurrence_id: &str,
    status: Outcome,
    reason: String,
) -> HistoryEntry {
    HistoryEntry {
        execution_id: None,
        import_source_id: schedule.import_source_id.clone(),
        scheduled: true,
        schedule_id: Some(schedule.id.clone()),
        occurrence_id: Some(occurrence_id.to_owned()),
        status,
        failure_reason: Some(reason),
        objects: 0,
        started_at: occurrence.instant,
        ended_at: Some(occurrence.instant),
        invocations: None,
        processed_at: None,
        progress: None,
    }
}

/// `DELETE .../importschedule/{id}`: no future runs. What fell due and was
/// not started is recorded first: skipped while the schedule was paused,
/// missed while it was active (the scheduler had not come to it).
pub fn delete(
    state: &mut State,
    workspace_id: &str,
    source_id: &str,
    schedule_id: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    state.source(workspace_id, source_id)?;
    let current = find(state, source_id, schedule_id)?.clone();
    let deleted = timestamp(now);
    if current.spec.is_active {
        settle(state, &current, now, Outcome::Missed, |due| {
            format!("missed: fell due at {due}, but the schedule was deleted at {deleted} before it started")
        });
    } else {
        settle(state, &current, now, Outcome::Skipped, |due| {
            format!("skipped: fell due at {due} while the schedule was paused (isActive false); it was deleted at {deleted}")
        });
    }
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
