//! Import sources: where one import's configuration lives, and what kind of
//! import it is (scheduling rules depend on the kind).

use serde::{Deserialize, Serialize};

/// What kind of import an import source is; scheduling rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// An import performed by an external app (a Forge-like app): the
    /// platform calls the app back when a schedule fires.
    External,
    /// A CSV import.
    Csv,
    /// A JSON import.
    Json,
    /// A Data Manager import.
    Datamanager,
    /// A Discovery import; Discovery schedules itself.
    Discovery,
}

impl SourceType {
    /// Every type, for help texts and validation messages.
    pub const ALL: [SourceType; 5] = [
        SourceType::External,
        SourceType::Csv,
        SourceType::Json,
        SourceType::Datamanager,
        SourceType::Discovery,
    ];

    /// The wire name (`external`, `csv`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::External => "external",
            SourceType::Csv => "csv",
            SourceType::Json => "json",
            SourceType::Datamanager => "datamanager",
            SourceType::Discovery => "discovery",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<SourceType> {
        SourceType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// An import source: where one import's configuration lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSource {
    /// Import source id.
    pub id: String,
    /// Workspace it belongs to.
    pub workspace_id: String,
    /// Kind of import.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// For external imports, the app that performs them.
    pub app: Option<String>,
    /// The real API's rule for sources fed with real-form chunks: no
    /// execution starts (`MISSING_MAPPING`) until a schema-and-mapping
    /// document is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_mapping: bool,
    /// The schema-and-mapping document last set (`PUT|PATCH …/mapping`),
    /// already checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<serde_json::Value>,
    /// The id of the last mapping operation, whose progress
    /// `GET …/mapping/progress/{resourceId}` reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_resource_id: Option<String>,
    /// The bearer token `POST …/token` generated for this source: it
    /// authenticates calls to this source's own endpoints only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The secret the platform signs this source's scheduled callbacks with
    /// when no app it hosts performs them: made when an external source is
    /// created, handed out once, never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

impl ImportSource {
    /// A source with no mapping and no token.
    pub fn new(id: String, workspace_id: String, source_type: SourceType, app: Option<String>) -> ImportSource {
        ImportSource {
            id,
            workspace_id,
            source_type,
            app,
            requires_mapping: false,
            mapping: None,
            mapping_resource_id: None,
            token: None,
            signing_secret: None,
        }
    }

    /// The real API's configuration status: `RUNNING` while an execution
    /// ingests or processes, else `MISSING_MAPPING` when a mapping is
    /// required and not set, else `IDLE`. (`DISABLED` needs a switch the
    /// mock does not have.)
    pub fn config_status(&self, running: bool) -> &'static str {
        if running {
            "RUNNING"
        } else if self.requires_mapping && self.mapping.is_none() {
            "MISSING_MAPPING"
        } else {
            "IDLE"
        }
    }
}
