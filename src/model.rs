//! Asset records and the data-source contract, in plain Rust.
//!
//! These mirror the WIT `types` and `data-source` interfaces so the lifecycle
//! can be tested natively; the component glue converts by moving the strings,
//! never copying them.

use std::fmt;

/// One asset record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetObject {
    /// Stable id of the record in the outside system.
    pub external_id: String,
    /// Display name.
    pub label: String,
    /// Attribute key and values, in source order.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// Objects of one object type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectBatch {
    /// The Assets object type the objects go into.
    pub object_type_id: String,
    /// The objects.
    pub objects: Vec<AssetObject>,
}

/// One page read from a data source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Records of the page, grouped by object type.
    pub batches: Vec<ObjectBatch>,
    /// Cursor of the next page; `None` after the last page.
    pub next_cursor: Option<String>,
}

/// Why a data source could not deliver a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The third-party system did not answer in time.
    Timeout(String),
    /// The third-party system could not be reached.
    Connection(String),
    /// The third-party system is throttling or briefly unavailable (429,
    /// 503): worth a retry, after `retry_after_ms` when it said.
    Busy {
        /// What was called and what it answered.
        message: String,
        /// Its `Retry-After`, in milliseconds from its answer.
        retry_after_ms: Option<u64>,
    },
    /// The answer was unusable (error status, unparsable body).
    BadResponse(String),
    /// The platform's egress allowlist refused the call.
    Denied(String),
    /// A source setting is missing or contradictory.
    Config(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for SourceError {
    /// Renders the error the way the import history shows it: what failed,
    /// then the source's own words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Timeout(m) => {
                write!(f, "Failed to fetch data from third-party API: Connection timeout ({m})")
            }
            SourceError::Connection(m) => {
                write!(f, "Failed to fetch data from third-party API: Connection failed ({m})")
            }
            SourceError::Busy { message, .. } => write!(
                f,
                "Failed to fetch data from third-party API: Throttled or unavailable ({message}); \
                 if it lasts, schedule the import when the API is less busy"
            ),
            SourceError::BadResponse(m) => {
                write!(f, "Failed to fetch data from third-party API: Bad response ({m})")
            }
            SourceError::Denied(m) => write!(
                f,
                "Failed to fetch data from third-party API: the app's egress allowlist refused the call ({m})"
            ),
            SourceError::Config(m) => write!(f, "Data source is misconfigured: {m}"),
            SourceError::Other(m) => write!(f, "Data source failed: {m}"),
        }
    }
}

/// Where the records come from: pages behind an opaque cursor.
pub trait DataSource {
    /// Reads the page at `cursor`; `None` reads the first page.
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError>;
}
