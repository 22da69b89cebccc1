//! Field paths into JSON records.
//!
//! A path is dot-separated field names: `name`, `site.name`,
//! `status.value`. A segment ending in `[]` walks every element of a list
//! (`tags[].name` gives each tag's name); a numeric segment picks one element
//! (`interfaces.0.name`). A path can therefore give several values; a missing
//! field or `null` gives none.

use serde_json::Value;
use std::fmt;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
    /// A field that holds a list, every element of which is followed.
    Each(String),
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub String);

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Path {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Path, BadPath> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BadPath("the path is empty".into()));
        }
        let segments = text
            .split('.')
            .map(|segment| {
                if segment.is_empty() {
                    Err(BadPath(format!("{text:?} has an empty segment")))
                } else if let Some(field) = segment.strip_suffix("[]") {
                    if field.is_empty() || field.contains(['[', ']']) {
                        Err(BadPath(format!("{text:?}: {segment:?} is not `field[]`")))
                    } else {
                        Ok(Segment::Each(field.to_owned()))
                    }
                } else if segment.contains(['[', ']']) {
                    Err(BadPath(format!(
                        "{text:?}: {segment:?} is not a field; write `field[]` for every element or `field.0` for one"
                    )))
                } else if let Ok(index) = segment.parse::<usize>() {
                    Ok(Segment::Index(index))
                } else {
                    Ok(Segment::Field(segment.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Path {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the path reaches in `value`, in order; `null`s left out.
    pub fn resolve<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![value];
        for segment in &self.segments {
            let mut next = Vec::new();
            for v in current {
                match segment {
                    Segment::Field(name) => next.extend(v.get(name.as_str())),
                    Segment::Index(i) => next.extend(v.get(*i)),
                    Segment::Each(name) => {
                        if let Some(Value::Array(items)) = v.get(name.as_str()) {
                            next.extend(items.iter());
                        }
                    }
                }
            }
            current = next;
        }
        current.retain(|v| !v.is_null());
        current
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(path: &str, record: &Value) -> Vec<Value> {
        Path::parse(path)
            .unwrap()
            .resolve(record)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn nested_fields_lists_and_indexes() {
        let device = json!({
            "id": 7,
            "site": {"name": "ams1"},
            "tags": [{"name": "core"}, {"name": "prod"}],
            "interfaces": [{"name": "eth0"}, {"name": "eth1"}],
            "rack": null,
        });
        assert_eq!(values("id", &device), vec![json!(7)]);
        assert_eq!(values("site.name", &device), vec![json!("ams1")]);
        assert_eq!(values("tags[].name", &device), vec![json!("core"), json!("prod")]);
        assert_eq!(values("interfaces.1.name", &device), vec![json!("eth1")]);
        assert!(values("rack.name", &device).is_empty());
        assert!(values("rack", &device).is_empty(), "null gives no value");
        assert!(values("missing", &device).is_empty());
    }

    #[test]
    fn malformed_paths_say_why() {
        assert!(Path::parse("").is_err());
        assert!(Path::parse("a..b").unwrap_err().0.contains("empty segment"));
        assert!(Path::parse("tags[0]").unwrap_err().0.contains("field[]"));
        assert!(Path::parse("[]").is_err());
    }
}
