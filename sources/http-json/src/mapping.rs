//! One JSON record → one asset object, as the `map-*` settings say.

use crate::path::Path;
use serde_json::Value;

/// An asset object, ready for the importer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The record's id in the third-party system.
    pub external_id: String,
    /// Its display name.
    pub label: String,
    /// Attribute values by key, in the order the mapping lists them; an
    /// attribute with no value in this record is left out.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// How records become objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The Assets object type of every object (`map-object-type`).
    pub object_type_id: String,
    /// Path of the external id (`map-external-id`).
    pub external_id: Path,
    /// Path of the label (`map-label`).
    pub label: Path,
    /// Attribute key and path of each attribute (`map-attributes`).
    pub attributes: Vec<(String, Path)>,
}

/// A value that cannot become an attribute value.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

impl Mapping {
    /// Maps record number `index` (0-based, for messages).
    pub fn map(&self, record: &Value, index: usize) -> Result<Object, String> {
        let one = |path: &Path, key: &str| -> Result<String, String> {
            let values = path.resolve(record);
            match values.as_slice() {
                [] => Err(format!("record {index} has no value at `{path}` ({key})")),
                [value] => text(value).filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                    format!(
                        "record {index}: `{path}` ({key}) is {}, not a non-empty string or number",
                        kind(value)
                    )
                }),
                _ => Err(format!(
                    "record {index}: `{path}` ({key}) gives {} values; it must give one",
                    values.len()
                )),
            }
        };
        let external_id = one(&self.external_id, "map-external-id")?;
        let label = one(&self.label, "map-label")?;
        let mut attributes = Vec::with_capacity(self.attributes.len());
        for (key, path) in &self.attributes {
            let values = path
                .resolve(record)
                .into_iter()
                .map(|v| {
                    text(v).ok_or_else(|| {
                        format!(
                            "record {index}: attribute {key} at `{path}` is {}; map a field inside it, e.g. `{path}.name`",
                            kind(v)
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !values.is_empty() {
                attributes.push((key.clone(), values));
            }
        }
        Ok(Object {
            external_id,
            label,
            attributes,
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(attributes: &[(&str, &str)]) -> Mapping {
        Mapping {
            object_type_id: "device".into(),
            external_id: Path::parse("id").unwrap(),
            label: Path::parse("name").unwrap(),
            attributes: attributes
                .iter()
                .map(|(k, p)| ((*k).to_owned(), Path::parse(p).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn fields_nested_fields_and_lists_become_attributes() {
        let device = json!({
            "id": 42, "name": "edge-1", "serial": "SN42",
            "site": {"name": "ams1"}, "tags": [{"name": "core"}, {"name": "prod"}],
            "primary_ip": null, "active": true,
        });
        let m = mapping(&[
            ("serial", "serial"),
            ("site", "site.name"),
            ("tags", "tags[].name"),
            ("ip", "primary_ip.address"),
            ("active", "active"),
        ]);
        let object = m.map(&device, 0).unwrap();
        assert_eq!(object.external_id, "42");
        assert_eq!(object.label, "edge-1");
        assert_eq!(
            object.attributes,
            vec![
                ("serial".into(), vec!["SN42".into()]),
                ("site".into(), vec!["ams1".into()]),
                ("tags".into(), vec!["core".into(), "prod".into()]),
                ("active".into(), vec!["true".into()]),
            ],
            "an attribute with no value (ip) is left out"
        );
    }

    #[test]
    fn a_record_without_its_id_or_with_an_object_attribute_is_named() {
        let m = mapping(&[("site", "site")]);
        let e = m.map(&json!({"name": "x"}), 3).unwrap_err();
        assert!(e.contains("record 3") && e.contains("map-external-id"), "{e}");
        let e = m
            .map(&json!({"id": 1, "name": "x", "site": {"name": "ams1"}}), 0)
            .unwrap_err();
        assert!(e.contains("an object") && e.contains("site.name"), "{e}");
        let e = m.map(&json!({"id": 1, "name": ""}), 0).unwrap_err();
        assert!(e.contains("map-label"), "{e}");
    }
}
