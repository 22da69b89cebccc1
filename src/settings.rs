//! The app settings the importer reads from the `config` import, validated.
//!
//! A bad setting is an operator's mistake that no retry will fix, so it is
//! reported to the import history with the key and what is allowed — never
//! the value, which may be a credential pasted under the wrong key.
//!
//! Reading the settings also registers the app's secrets with
//! [`assets_redact`] (every value read, as [`assets_redact::register_setting`]
//! decides, and the data source's `source-url` and `source-headers`), so
//! every reason made afterwards ([`crate::reason::cut_reason`]) hides them
//! by value, in whatever form a server repeats them.

use std::fmt;
use std::ops::RangeInclusive;

/// Setting: the most objects in one data chunk.
pub const CHUNK_MAX_OBJECTS: &str = "chunk-max-objects";
/// Setting: the most serialized bytes in one data chunk (the whole JSON body).
pub const CHUNK_MAX_BYTES: &str = "chunk-max-bytes";

/// Setting: tries per API or source call, the first included.
pub const RETRY_MAX_ATTEMPTS: &str = "retry-max-attempts";
/// Setting: the first backoff delay in milliseconds; it doubles per retry.
pub const RETRY_BASE_DELAY_MS: &str = "retry-base-delay-ms";
/// Setting: the most milliseconds one run spends waiting between retries.
pub const RETRY_MAX_TOTAL_MS: &str = "retry-max-total-ms";
/// Setting: the most source pages one run reads (a backstop against a
/// source whose pages never end).
pub const SOURCE_MAX_PAGES: &str = "source-max-pages";
/// Setting: stop at a checkpoint when an invocation has less than this many
/// milliseconds left, so the platform can call again to continue.
pub const TIME_LIMIT_MARGIN_MS: &str = "time-limit-margin-ms";

/// Setting: which dialect of the Assets import API to speak: `seed` (the
/// default: `objectTypeId` + `objects` chunks, `history/completed`) or
/// `cloud` (the real API's: a schema-and-mapping document, `data` chunks by
/// selector, `completed: true`, progress reports).
pub const API_DIALECT: &str = "api-dialect";
/// Setting: in the `cloud` dialect, the schema-and-mapping document to put
/// in place before the first execution (JSON). Unset, the importer derives
/// one from the object types and attribute keys of the source's first page.
pub const CLOUD_MAPPING: &str = "cloud-mapping";

/// The data source's settings that carry credentials, read here only to
/// register them: a source's error text reaches this app's reasons.
pub const SOURCE_SECRET_KEYS: [&str; 2] = ["source-url", "source-headers"];

/// Objects per chunk when the setting is absent. Reference apps send tens to
/// hundreds of records per chunk; 500 keeps requests small and few.
pub const DEFAULT_MAX_OBJECTS: usize = 500;
/// Bytes per chunk when the setting is absent: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

const MAX_OBJECTS_RANGE: RangeInclusive<usize> = 1..=100_000;
// The smallest chunk must still hold a typical object; the largest stays well
// under the API's request-size limit.
const MAX_BYTES_RANGE: RangeInclusive<usize> = 256..=(16 << 20);

/// Limits on one data chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most objects per chunk.
    pub max_objects: usize,
    /// Most bytes per chunk body.
    pub max_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_objects: DEFAULT_MAX_OBJECTS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per call, the first included (1 = no retries).
    pub max_attempts: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub base_delay_ms: u64,
    /// Most time one run spends waiting between retries.
    pub max_total_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 500,
            max_total_ms: 120_000,
        }
    }
}

/// How long one run may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Most source pages per run.
    pub max_pages: u64,
    /// Pause when an invocation has less time left than this.
    pub margin_ms: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_pages: 100_000,
            margin_ms: 10_000,
        }
    }
}

/// The dialect of the Assets import API the importer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// The seed's contract.
    #[default]
    Seed,
    /// The real (cloud) API's.
    Cloud,
}

/// Everything the importer reads from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Chunk limits.
    pub chunk: ChunkLimits,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Page cap and time-limit margin.
    pub run: RunLimits,
    /// The API dialect.
    pub dialect: Dialect,
    /// In the cloud dialect, the mapping document to use, parsed.
    pub mapping: Option<serde_json::Value>,
}

/// A setting whose value is not allowed. It names the key and what is
/// allowed, and holds no part of the value: that goes to the history, and
/// the value may be a credential set under the wrong key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting's key.
    pub key: &'static str,
    /// What is allowed.
    pub allowed: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "App setting {} is invalid: set it to {} (its value is not repeated here, in case it is a credential)",
            self.key, self.allowed
        )
    }
}

impl std::error::Error for SettingError {}

impl Settings {
    /// Reads and validates the settings through `get` (the `config` import);
    /// absent settings take their defaults. Every value read, and the data
    /// source's [`SOURCE_SECRET_KEYS`], registers its secrets for this
    /// instance's reasons first.
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingError> {
        let get = |key: &str| {
            let value = get(key);
            if let Some(value) = &value {
                assets_redact::register_setting(key, value);
            }
            value
        };
        for key in SOURCE_SECRET_KEYS {
            get(key);
        }
        let defaults = ChunkLimits::default();
        Ok(Settings {
            chunk: ChunkLimits {
                max_objects: whole_number(
                    CHUNK_MAX_OBJECTS,
                    get(CHUNK_MAX_OBJECTS),
                    MAX_OBJECTS_RANGE,
                    defaults.max_objects,
                )?,
                max_bytes: whole_number(
                    CHUNK_MAX_BYTES,
                    get(CHUNK_MAX_BYTES),
                    MAX_BYTES_RANGE,
                    defaults.max_bytes,
                )?,
            },
            retry: RetryPolicy {
                max_attempts: whole_number(RETRY_MAX_ATTEMPTS, get(RETRY_MAX_ATTEMPTS), 1..=20, 5)? as u32,
                base_delay_ms: whole_number(RETRY_BASE_DELAY_MS, get(RETRY_BASE_DELAY_MS), 0..=60_000, 500)? as u64,
                max_total_ms: whole_number(RETRY_MAX_TOTAL_MS, get(RETRY_MAX_TOTAL_MS), 0..=900_000, 120_000)? as u64,
            },
            run: RunLimits {
                max_pages: whole_number(SOURCE_MAX_PAGES, get(SOURCE_MAX_PAGES), 1..=100_000_000, 100_000)? as u64,
                margin_ms: whole_number(TIME_LIMIT_MARGIN_MS, get(TIME_LIMIT_MARGIN_MS), 0..=600_000, 10_000)? as u64,
            },
            dialect: match get(API_DIALECT).as_deref().map(str::trim) {
                None | Some("seed") => Dialect::Seed,
                Some("cloud") => Dialect::Cloud,
                Some(_) => {
                    return Err(SettingError {
                        key: API_DIALECT,
                        allowed: "seed or cloud".into(),
                    })
                }
            },
            mapping: match get(CLOUD_MAPPING) {
                None => None,
                Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(value) if value.is_object() => Some(value),
                    // Where the JSON breaks, not what it says there.
                    result => {
                        let at = result
                            .err()
                            .map(|e| format!(" (the JSON breaks at line {}, column {})", e.line(), e.column()))
                            .unwrap_or_else(|| " (it is JSON, but not an object)".into());
                        return Err(SettingError {
                            key: CLOUD_MAPPING,
                            allowed: format!(
                                "a schema-and-mapping document: a JSON object with schema and mapping{at}"
                            ),
                        });
                    }
                },
            },
        })
    }
}

fn whole_number(
    key: &'static str,
    value: Option<String>,
    range: RangeInclusive<usize>,
    default: usize,
) -> Result<usize, SettingError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(SettingError {
            key,
            allowed: format!("a whole number from {} to {}", range.start(), range.end()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
    }

    #[test]
    fn absent_settings_take_defaults() {
        assert_eq!(Settings::from_config(config(&[])).unwrap(), Settings::default());
    }

    #[test]
    fn settings_are_read() {
        let s = Settings::from_config(config(&[(CHUNK_MAX_OBJECTS, "100"), (CHUNK_MAX_BYTES, "4096")])).unwrap();
        assert_eq!(
            s.chunk,
            ChunkLimits {
                max_objects: 100,
                max_bytes: 4096
            }
        );
    }

    #[test]
    fn the_dialect_is_seed_unless_cloud_is_asked_for() {
        assert_eq!(Settings::from_config(config(&[])).unwrap().dialect, Dialect::Seed);
        let s = Settings::from_config(config(&[(API_DIALECT, "cloud"), (CLOUD_MAPPING, r#"{"schema":{}}"#)])).unwrap();
        assert_eq!(s.dialect, Dialect::Cloud);
        assert!(s.mapping.is_some());
        let e = Settings::from_config(config(&[(API_DIALECT, "jira")])).unwrap_err();
        assert_eq!((e.key, e.allowed.as_str()), (API_DIALECT, "seed or cloud"));
        let e = Settings::from_config(config(&[(CLOUD_MAPPING, "{not json")])).unwrap_err();
        assert_eq!(e.key, CLOUD_MAPPING);
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        for bad in ["abc", "0", "-5", "100001", ""] {
            let pairs: &'static [(&str, &str)] = Box::leak(vec![(CHUNK_MAX_OBJECTS, bad)].into_boxed_slice());
            let err = Settings::from_config(config(pairs)).unwrap_err();
            assert_eq!(err.key, CHUNK_MAX_OBJECTS);
            let text = err.to_string();
            assert!(text.contains("chunk-max-objects"), "{text}");
            assert!(text.contains("1 to 100000"), "{text}");
        }
        let err = Settings::from_config(config(&[(CHUNK_MAX_BYTES, "10")])).unwrap_err();
        assert_eq!(err.key, CHUNK_MAX_BYTES);
    }

    #[test]
    fn a_malformed_setting_names_the_key_and_never_its_value() {
        // A token pasted under the wrong key; a mapping whose JSON breaks
        // after a credential.
        for (key, value) in [
            (CHUNK_MAX_OBJECTS, "ghp-SECRET1234"),
            (API_DIALECT, "ghp-SECRET1234"),
            (CLOUD_MAPPING, r#"{"schema": {"auth": "ghp-SECRET1234"#),
            (CLOUD_MAPPING, r#"["ghp-SECRET1234"]"#),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(vec![(key, value)].into_boxed_slice());
            let text = Settings::from_config(config(pairs)).unwrap_err().to_string();
            assert!(text.contains(key), "{text}");
            assert!(!text.contains("SECRET") && !text.contains("ghp"), "{key}: {text}");
        }
        let text = Settings::from_config(config(&[(CLOUD_MAPPING, "{\n  \"schema\": ,")]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("line 2, column 13"), "where it breaks: {text}");
    }

    #[test]
    fn reading_the_settings_registers_the_apps_secrets_for_its_reasons() {
        // A thread of its own: its registry is fresh and seen by no other test.
        std::thread::spawn(|| {
            let before = "HTTP 429: key SUPERSECRET123 is over quota; tok-abcdef refused";
            assert_eq!(crate::reason::cut_reason(before), before);
            Settings::from_config(config(&[
                (
                    "source-url",
                    "https://api.example.com/v1/hosts?limit=50&key=SUPERSECRET123",
                ),
                ("source-headers", "Authorization: Bearer tok-abcdef"),
            ]))
            .unwrap();
            assert_eq!(
                crate::reason::cut_reason(before),
                "HTTP 429: key *** is over quota; *** refused"
            );
        })
        .join()
        .unwrap();
    }
}
