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
}
