//! An import schedule: what a client asks for, validated, and the
//! scheduler's bookkeeping.
//!
//! The fields the seed describes, plus `nextRunTime` and three optional
//! calendar policies. A schedule's runs come from its [`Rule`]; which of them
//! have already been handled is tracked here (`handled_until`) so the
//! scheduler never handles an occurrence twice. The HTTP resource that
//! creates and changes schedules is [`super::schedules`].

use super::import_source::{ImportSource, SourceType};
use super::ApiError;
use assets_calendar::{Frequency, Policies, Rule};
use chrono::{DateTime, Duration, NaiveDateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{json, Value};

/// How late a run may still start: an occurrence found due more than this
/// after its time is recorded as missed instead of run. A `ONCE` schedule
/// whose start is older than this is refused, since it could never run.
pub const CATCH_UP_WINDOW: Duration = Duration::hours(1);

/// The stable id of one occurrence: derived from the schedule id and the
/// occurrence's nominal UTC instant, so every re-delivery carries the same id.
pub fn occurrence_id(schedule_id: &str, instant: DateTime<Utc>) -> String {
    let name = format!("{schedule_id}@{}", timestamp(instant));
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// What a schedule asks for: everything a client can set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// ONCE, DAILY, WEEKLY or MONTHLY.
    pub frequency: Frequency,
    /// First run, UTC.
    pub start_time: DateTime<Utc>,
    /// IANA zone of the wall-clock rule.
    pub timezone: Tz,
    /// Where the platform calls the app (external imports).
    pub callback_url: Option<String>,
    /// DST and month-end policies.
    pub policies: Policies,
    /// False stops future runs without deleting the schedule.
    pub is_active: bool,
}

/// A stored schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Schedule id (`importScheduleId`).
    pub id: String,
    /// The import source it runs.
    pub import_source_id: String,
    /// The import source's workspace.
    pub workspace_id: String,
    /// The import source's type.
    pub source_type: SourceType,
    /// What the client asked for.
    pub spec: ScheduleSpec,
    /// The calendar rule derived from `spec`.
    pub rule: Rule,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Occurrences at or before this instant are handled (run, skipped or
    /// missed) or predate the schedule's current rule.
    pub handled_until: DateTime<Utc>,
}

impl Schedule {
    /// The next run, if the schedule is active and has one left.
    pub fn next_run_time(&self) -> Option<DateTime<Utc>> {
        if !self.spec.is_active {
            return None;
        }
        self.rule.next_run_after(self.handled_until).map(|o| o.instant)
    }

    /// The API's view of the schedule.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "id": self.id,
            "importSourceId": self.import_source_id,
            "runFrequency": self.spec.frequency,
            "startTime": timestamp(self.spec.start_time),
            "timezone": self.spec.timezone.name(),
            "isActive": self.spec.is_active,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
            "nextRunTime": self.next_run_time().map(timestamp),
            // The same facts under the names the published OpenAPI
            // description and its clients read.
            "runInterval": self.spec.frequency,
            "created": timestamp(self.created_at),
            "updated": timestamp(self.updated_at),
            "nextScheduledTime": self.next_run_time().map(timestamp),
            "dstGapPolicy": self.spec.policies.gap,
            "dstFoldPolicy": self.spec.policies.fold,
            "monthEndPolicy": self.spec.policies.month_end,
        });
        if let Some(url) = &self.spec.callback_url {
            value["callbackUrl"] = url.clone().into();
        }
        value
    }

    /// Sets a new rule. It runs from now on: what fell before the schedule
    /// existed is not owed — except the one run of a `ONCE` schedule whose
    /// start has just passed, which is due at once ("run once, now";
    /// [`check_once_start`] refuses one too old to run).
    pub(super) fn set_spec(&mut self, spec: ScheduleSpec, now: DateTime<Utc>) {
        self.rule = Rule::new(spec.frequency, spec.start_time, spec.timezone, spec.policies);
        self.handled_until = if spec.frequency == Frequency::Once && spec.start_time <= now {
            spec.start_time - Duration::nanoseconds(1)
        } else {
            now - Duration::nanoseconds(1)
        };
        self.spec = spec;
        self.updated_at = now;
    }

    /// True when `spec` gives the same runs as the schedule's own spec (only
    /// the callback URL or the active flag differ).
    pub fn same_rule(&self, spec: &ScheduleSpec) -> bool {
        let ScheduleSpec {
            frequency,
            start_time,
            timezone,
            policies,
            callback_url: _,
            is_active: _,
        } = spec;
        (*frequency, *start_time, *timezone, *policies)
            == (
                self.spec.frequency,
                self.spec.start_time,
                self.spec.timezone,
                self.spec.policies,
            )
    }
}

/// Refuses a `ONCE` schedule whose start is older than the catch-up window:
/// it would be created and never run.
pub fn check_once_start(spec: &ScheduleSpec, now: DateTime<Utc>) -> Result<(), ApiError> {
    let age = now - spec.start_time;
    if spec.frequency != Frequency::Once || age <= CATCH_UP_WINDOW {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        "startTime",
        format!(
            "startTime {} is {} minutes in the past: a ONCE schedule runs at most {} minutes late, so this one \
             would never run. Give a time within the last {} minutes (it runs at once) or in the future",
            timestamp(spec.start_time),
            age.num_minutes(),
            CATCH_UP_WINDOW.num_minutes(),
            CATCH_UP_WINDOW.num_minutes(),
        ),
    ))
}

/// RFC 3339 in UTC with a `Z`, as the API writes times.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The request body of POST and PUT: every field optional here, required
/// ones checked by [`validate`]. A field given as `null` is `Some(None)`,
/// told from one left out (`None`): for an optional field it clears the
/// field (back to its default); for a rule field it is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ScheduleFields {
    #[serde(default, deserialize_with = "nullable")]
    run_frequency: Option<Option<String>>,
    /// The published OpenAPI description's name for `runFrequency`; a
    /// request that uses it is in the published form, where `timezone`
    /// does not exist and times are UTC.
    #[serde(default, deserialize_with = "nullable")]
    run_interval: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    start_time: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    timezone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    callback_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    dst_gap_policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    dst_fold_policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    month_end_policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    is_active: Option<Option<bool>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Validates a POST (`current` is `None`) or PUT body into a spec: 400s name
/// the field the client sent and what is allowed.
///
/// `null` means "no value", never "the default" in disguise:
///
/// - The rule fields `runFrequency`, `runInterval` and `startTime` have no
///   default, so `null` is a 400 naming the field, on PUT as on POST (a PUT
///   keeps a value by leaving the field out, not by sending `null`).
/// - `timezone: null` depends on the request's form, the request's and not
///   the schedule's. In the published form (the request sends `runInterval`
///   and not `runFrequency`) there is no zone and times are UTC, so `null`,
///   like leaving it out, is UTC. In the seed's form (`runFrequency`, or no
///   frequency at all, as in a PUT of other fields) the zone is required,
///   and a client sending `null` most likely lost a value on the way (an
///   unset variable), so it is a 400 on POST and PUT alike, rather than a
///   silent move of every run to UTC. Wanting UTC, send `"UTC"`.
/// - The optional fields (`callbackUrl`, the policies, `isActive`) go back
///   to their defaults on `null` (a missing `callbackUrl` is then refused
///   for external sources, as when it is left out).
pub(super) fn validate(
    fields: ScheduleFields,
    current: Option<&ScheduleSpec>,
    source: &ImportSource,
) -> Result<ScheduleSpec, ApiError> {
    let frequencies = format!("one of {}", Frequency::NAMES);
    let run_frequency = not_null("runFrequency", fields.run_frequency, &frequencies)?;
    let run_interval = not_null("runInterval", fields.run_interval, &frequencies)?;
    let start_time = not_null("startTime", fields.start_time, START_TIME_FORM)?;
    // The published form names the frequency runInterval and has no zone.
    let published = run_interval.is_some() && run_frequency.is_none();
    let (frequency_field, frequency_text) = match (run_frequency, run_interval) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid_field(
                "runFrequency",
                format!(
                "runFrequency {a:?} and runInterval {b:?} (the published API's name for it) disagree; give one of them"
            ),
            ))
        }
        (Some(a), _) => ("runFrequency", Some(a)),
        (None, Some(a)) => ("runInterval", Some(a)),
        (None, None) => ("runFrequency", None),
    };
    let frequency = match (frequency_text, current) {
        (Some(text), _) => Frequency::parse(&text).ok_or_else(|| {
            ApiError::invalid_field(
                frequency_field,
                format!("{frequency_field} must be one of {}; got {text:?}", Frequency::NAMES),
            )
        })?,
        (None, Some(c)) => c.frequency,
        (None, None) => {
            return Err(missing(
                "runFrequency",
                format!(
                    "one of {} (the published API calls it runInterval; with runInterval, timezone may be left out and is UTC)",
                    Frequency::NAMES
                ),
            ))
        }
    };
    let start_time = match (start_time, current) {
        (Some(text), _) => parse_start_time(&text)?,
        (None, Some(c)) => c.start_time,
        (None, None) => return Err(missing("startTime", START_TIME_FORM)),
    };
    let timezone = match (fields.timezone, current) {
        (Some(Some(text)), _) => text.parse::<Tz>().map_err(|_| {
            ApiError::invalid_field(
                "timezone",
                format!(
                    "timezone must be an IANA time zone name such as America/New_York or Europe/London; got {text:?}"
                ),
            )
        })?,
        // The published form has no zone: null there is UTC, as leaving it out is.
        (Some(None), _) if published => Tz::UTC,
        (Some(None), _) => {
            return Err(ApiError::invalid_field(
                "timezone",
                "timezone is null, but in the seed's form (runFrequency, not runInterval) a zone is required: give \
                 an IANA time zone name such as America/New_York, or \"UTC\" for UTC (or send runInterval, the \
                 published API's form, whose times are UTC)",
            ))
        }
        (None, Some(c)) => c.timezone,
        (None, None) if published => Tz::UTC,
        (None, None) => {
            return Err(missing(
                "timezone",
                "an IANA time zone name such as America/New_York (or send runInterval, the published API's form, whose times are UTC)",
            ))
        }
    };
    let callback_url = match (fields.callback_url, current) {
        (Some(Some(url)), _) => Some(check_callback_url(url)?),
        (Some(None), _) => None,
        (None, Some(c)) => c.callback_url.clone(),
        (None, None) => None,
    };
    if source.source_type == SourceType::External && callback_url.is_none() {
        return Err(missing(
            "callbackUrl",
            "the URL the platform calls when the schedule fires (required for external-app import sources)",
        ));
    }
    let defaults = current.map(|c| c.policies).unwrap_or_default();
    let policies = Policies {
        gap: policy(
            fields.dst_gap_policy,
            "dstGapPolicy",
            "SHIFT_FORWARD, SKIP, AT_TRANSITION",
            defaults.gap,
        )?,
        fold: policy(
            fields.dst_fold_policy,
            "dstFoldPolicy",
            "EARLIER, LATER, BOTH",
            defaults.fold,
        )?,
        month_end: policy(
            fields.month_end_policy,
            "monthEndPolicy",
            "LAST_DAY, SKIP",
            defaults.month_end,
        )?,
    };
    let is_active = match fields.is_active {
        Some(given) => given.unwrap_or(true),
        None => current.is_none_or(|c| c.is_active),
    };
    Ok(ScheduleSpec {
        frequency,
        start_time,
        timezone,
        callback_url,
        policies,
        is_active,
    })
}

/// What `startTime` must be, for the errors that say so.
const START_TIME_FORM: &str = "an ISO 8601 date-time in UTC, e.g. 2025-12-30T03:50:33Z";

/// A rule field's value, `None` when left out; a 400 naming `field` when it
/// is `null`, since a rule field has no default to go back to.
fn not_null(field: &str, value: Option<Option<String>>, allowed: &str) -> Result<Option<String>, ApiError> {
    match value {
        Some(None) => Err(ApiError::invalid_field(
            field,
            format!("{field} is null; it must be {allowed} (leave it out of a PUT to keep the current value)"),
        )),
        Some(Some(text)) => Ok(Some(text)),
        None => Ok(None),
    }
}

fn missing(field: &str, allowed: impl AsRef<str>) -> ApiError {
    ApiError::invalid_field(field, format!("{field} is required: {}", allowed.as_ref()))
}

fn policy<P: for<'de> Deserialize<'de> + Default>(
    text: Option<Option<String>>,
    field: &str,
    allowed: &str,
    current: P,
) -> Result<P, ApiError> {
    match text {
        None => Ok(current),
        Some(None) => Ok(P::default()),
        Some(Some(text)) => serde_json::from_value(Value::String(text.clone()))
            .map_err(|_| ApiError::invalid_field(field, format!("{field} must be one of {allowed}; got {text:?}"))),
    }
}

/// `startTime`: ISO 8601 (RFC 3339 profile) and in UTC.
pub fn parse_start_time(text: &str) -> Result<DateTime<Utc>, ApiError> {
    let example = "e.g. 2025-12-30T03:50:33Z";
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) if t.offset().local_minus_utc() == 0 => Ok(t.with_timezone(&Utc)),
        Ok(t) => Err(ApiError::invalid_field(
            "startTime",
            format!(
                "startTime must be in UTC; {text:?} has offset {}. Give the same instant in UTC with a Z suffix: {}",
                t.offset(),
                timestamp(t.with_timezone(&Utc))
            ),
        )),
        Err(_) if NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok() => Err(ApiError::invalid_field(
            "startTime",
            format!("startTime must be in UTC; {text:?} has no time zone designator. Add a Z suffix, {example}"),
        )),
        Err(_) => Err(ApiError::invalid_field(
            "startTime",
            format!("startTime must be an ISO 8601 date-time in UTC, {example}; got {text:?}"),
        )),
    }
}

fn check_callback_url(text: String) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_field(
            "callbackUrl",
            format!("callbackUrl must be an absolute http(s) URL; {text:?} {why}"),
        )
    };
    let url = url::Url::parse(&text).map_err(|e| bad(&format!("does not parse ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(&format!("has scheme {:?}", url.scheme())));
    }
    if url.host_str().unwrap_or_default().is_empty() {
        return Err(bad("has no host"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_must_be_iso_8601_in_utc() {
        assert!(parse_start_time("2025-12-30T03:50:33Z").is_ok());
        assert!(parse_start_time("2025-12-30T03:50:33.250Z").is_ok());
        assert!(parse_start_time("2025-12-30T03:50:33+00:00").is_ok());
        let e = parse_start_time("2025-12-30T05:50:33+02:00").unwrap_err();
        assert!(
            e.message.contains("must be in UTC") && e.message.contains("2025-12-30T03:50:33Z"),
            "{}",
            e.message
        );
        let e = parse_start_time("2025-12-30T03:50:33").unwrap_err();
        assert!(e.message.contains("no time zone designator"), "{}", e.message);
        let e = parse_start_time("tomorrow at 3").unwrap_err();
        assert!(e.message.contains("ISO 8601"), "{}", e.message);
    }

    #[test]
    fn callback_urls_must_be_absolute_http() {
        assert!(check_callback_url("https://app.example.com/cb".into()).is_ok());
        assert!(check_callback_url("http://127.0.0.1:8080/apps/x/webtrigger".into()).is_ok());
        for bad in [
            "/relative/path",
            "ftp://example.com/x",
            "not a url",
            "mailto:me@example.com",
        ] {
            assert!(check_callback_url(bad.into()).is_err(), "{bad}");
        }
    }
}
