//! The real API's schema-and-mapping document: checked, then used to turn
//! real-form records into objects.
//!
//! In the real imports API an app uploads one document per import source
//! (`PUT …/mapping`): the object types and attributes it imports into
//! (`schema.objectSchema`) and, for each object type, a `selector` (the key
//! its records come under in a data chunk's `data`) and per attribute the
//! `attributeLocators` (dotted paths into each record) and whether the value
//! is part of the object's external id (`externalIdPart`).
//!
//! A document is checked twice: against Atlassian's JSON Schema (kept in
//! `real-api/`, validated with the `jsonschema` crate), then for the
//! consistency a schema cannot express: every mapping names a declared
//! object type and declared attributes, each mapped type has one label
//! attribute and at least one external-id part, selectors are unique. Every
//! refusal is a 400 naming the JSON path of what is wrong.

use super::model::AssetObject;
use super::ApiError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Atlassian's JSON Schema of the document (draft 2019-09), as published.
pub const SCHEMA_JSON: &str = include_str!("../../real-api/assets_mapping_2023_10_19.schema.json");

/// Joins the values of several `externalIdPart` attributes into one
/// external id (one part is its value alone).
pub const EXTERNAL_ID_SEPARATOR: &str = "/";

/// A checked mapping, ready to map records.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Object type mappings by selector.
    by_selector: HashMap<String, TypeMapping>,
}

/// How the records under one selector become objects of one type.
#[derive(Debug, Clone)]
struct TypeMapping {
    /// The object type's name: the objects are stored under it.
    type_name: String,
    attributes: Vec<AttributeMapping>,
}

#[derive(Debug, Clone)]
struct AttributeMapping {
    name: String,
    locators: Vec<String>,
    id_part: bool,
    label: bool,
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA_JSON).expect("the bundled JSON Schema parses");
        jsonschema::draft201909::new(&schema).expect("the bundled JSON Schema compiles")
    })
}

/// A JSON pointer (`/mapping/objectTypeMappings/0`) as the path people write
/// (`mapping.objectTypeMappings[0]`).
pub fn json_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    if path.is_empty() {
        "(body)".into()
    } else {
        path
    }
}

fn join(parent: &str, field: &str) -> String {
    if parent == "(body)" {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// Checks a whole document: the JSON Schema first, then consistency.
pub fn check(document: &Value) -> Result<Mapping, ApiError> {
    if let Some(error) = validator().iter_errors(document).next() {
        let at = json_path(error.instance_path.as_str());
        let field = match &error.kind {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                join(&at, property.as_str().unwrap_or_default())
            }
            _ => at,
        };
        return Err(ApiError::invalid_field(
            field.clone(),
            format!("{field}: {error} (the schema-and-mapping document's JSON Schema, version 2023_10_19)"),
        ));
    }
    Mapping::from_document(document)
}

/// A declared object type: its attributes by name and by external id.
struct Declared<'a> {
    attributes: Vec<&'a Value>,
}

fn declared_types<'a>(types: &'a [Value], out: &mut Vec<(&'a Value, Declared<'a>)>) {
    for t in types {
        let attributes = t["attributes"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        out.push((t, Declared { attributes }));
        if let Some(children) = t["children"].as_array() {
            declared_types(children, out);
        }
    }
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

impl Mapping {
    /// Reads a document that already passed the JSON Schema and checks its
    /// consistency.
    pub fn from_document(document: &Value) -> Result<Mapping, ApiError> {
        let types = document["schema"]["objectSchema"]["objectTypes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut declared = Vec::new();
        declared_types(types, &mut declared);
        let mappings = document["mapping"]["objectTypeMappings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut by_selector = HashMap::new();
        for (i, m) in mappings.iter().enumerate() {
            let at = format!("mapping.objectTypeMappings[{i}]");
            let name = text(m, "objectTypeName").unwrap_or_default();
            let external = text(m, "objectTypeExternalId");
            let found = declared.iter().find(|(t, _)| match external {
                Some(id) => text(t, "externalId") == Some(id),
                None => text(t, "name") == Some(name),
            });
            let Some((object_type, declared_type)) = found else {
                let (field, what) = match external {
                    Some(id) => ("objectTypeExternalId", format!("external id {id:?}")),
                    None => ("objectTypeName", format!("name {name:?}")),
                };
                return Err(ApiError::invalid_field(
                    format!("{at}.{field}"),
                    format!("{at}.{field}: no object type with {what} is declared in schema.objectSchema.objectTypes"),
                ));
            };
            let type_name = text(object_type, "name").unwrap_or(name).to_owned();
            let selector = text(m, "selector").unwrap_or_default().to_owned();
            if selector.trim().is_empty() {
                return Err(ApiError::invalid_field(
                    format!("{at}.selector"),
                    format!("{at}.selector must name the key the records come under in a data chunk's data"),
                ));
            }
            let mut attributes = Vec::new();
            let list = m["attributesMapping"].as_array().map(Vec::as_slice).unwrap_or_default();
            for (j, a) in list.iter().enumerate() {
                let at = format!("{at}.attributesMapping[{j}]");
                let name = text(a, "attributeName").unwrap_or_default();
                let external = text(a, "attributeExternalId");
                let found = declared_type.attributes.iter().find(|d| match external {
                    Some(id) => text(d, "externalId") == Some(id),
                    None => text(d, "name") == Some(name),
                });
                let Some(attribute) = found else {
                    let (field, what) = match external {
                        Some(id) => ("attributeExternalId", format!("external id {id:?}")),
                        None => ("attributeName", format!("name {name:?}")),
                    };
                    return Err(ApiError::invalid_field(
                        format!("{at}.{field}"),
                        format!("{at}.{field}: object type {type_name:?} declares no attribute with {what}"),
                    ));
                };
                let locators: Vec<String> = a["attributeLocators"]
                    .as_array()
                    .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                attributes.push(AttributeMapping {
                    name: text(attribute, "name").unwrap_or(name).to_owned(),
                    locators,
                    id_part: a["externalIdPart"].as_bool().unwrap_or(false),
                    label: attribute["label"].as_bool().unwrap_or(false),
                });
            }
            let labels = declared_type
                .attributes
                .iter()
                .filter(|d| d["label"].as_bool() == Some(true))
                .count();
            if labels != 1 {
                return Err(ApiError::invalid_field(
                    format!("{at}.objectTypeName"),
                    format!(
                        "{at}: object type {type_name:?} declares {labels} label attributes (\"label\": true); it needs exactly one"
                    ),
                ));
            }
            if !attributes.iter().any(|a| a.label) {
                return Err(ApiError::invalid_field(
                    format!("{at}.attributesMapping"),
                    format!("{at}.attributesMapping: the label attribute of {type_name:?} is not mapped; map it so objects get a name"),
                ));
            }
            if !attributes.iter().any(|a| a.id_part) {
                return Err(ApiError::invalid_field(
                    format!("{at}.attributesMapping"),
                    format!(
                        "{at}.attributesMapping: no attribute of {type_name:?} has \"externalIdPart\": true; at least one must, to identify objects"
                    ),
                ));
            }
            if by_selector.contains_key(&selector) {
                return Err(ApiError::invalid_field(
                    format!("{at}.selector"),
                    format!(
                        "{at}.selector {selector:?} is used by another object type mapping; selectors must be unique"
                    ),
                ));
            }
            by_selector.insert(selector, TypeMapping { type_name, attributes });
        }
        Ok(Mapping { by_selector })
    }

    /// Maps a real-form chunk's `data` into objects, grouped by object type
    /// name: 400 naming the path (`data.products[3].id`) of the first record
    /// that cannot be mapped.
    pub fn apply(&self, data: &Map<String, Value>) -> Result<Vec<(String, Vec<AssetObject>)>, ApiError> {
        let mut out = Vec::new();
        for (selector, records) in data {
            let at = format!("data.{selector}");
            let Some(mapping) = self.by_selector.get(selector) else {
                let mut known: Vec<&str> = self.by_selector.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(ApiError::invalid_field(
                    at.clone(),
                    format!(
                        "{at}: no object type mapping has selector {selector:?}; the mapping's selectors are {known:?}"
                    ),
                ));
            };
            let Some(records) = records.as_array() else {
                return Err(ApiError::invalid_field(
                    at.clone(),
                    format!("{at} must be an array of records"),
                ));
            };
            let mut objects = Vec::with_capacity(records.len());
            for (i, record) in records.iter().enumerate() {
                objects.push(mapping.object(record, &format!("{at}[{i}]"))?);
            }
            out.push((mapping.type_name.clone(), objects));
        }
        Ok(out)
    }
}

impl TypeMapping {
    fn object(&self, record: &Value, at: &str) -> Result<AssetObject, ApiError> {
        if !record.is_object() {
            return Err(ApiError::invalid_field(
                at,
                format!("{at} must be a JSON object (a record)"),
            ));
        }
        let mut attributes = BTreeMap::new();
        let mut id_parts = Vec::new();
        let mut label = None;
        for a in &self.attributes {
            let mut values = Vec::new();
            for locator in &a.locators {
                locate(record, locator, &mut values).map_err(|why| {
                    let field = format!("{at}.{locator}");
                    ApiError::invalid_field(field.clone(), format!("{field}: {why}"))
                })?;
            }
            if a.id_part || a.label {
                let Some(first) = values.first() else {
                    let field = format!("{at}.{}", a.locators.first().map(String::as_str).unwrap_or_default());
                    let role = if a.id_part {
                        "part of the external id"
                    } else {
                        "the label"
                    };
                    return Err(ApiError::invalid_field(
                        field.clone(),
                        format!(
                            "{field}: attribute {:?} is {role} but this record has no value there",
                            a.name
                        ),
                    ));
                };
                if a.id_part {
                    id_parts.push(first.clone());
                }
                if a.label {
                    label = Some(first.clone());
                }
            }
            if !values.is_empty() {
                attributes.insert(a.name.clone(), values);
            }
        }
        Ok(AssetObject {
            external_id: id_parts.join(EXTERNAL_ID_SEPARATOR),
            label: label.unwrap_or_default(),
            attributes,
        })
    }
}

/// The values at `locator`, a dotted path into `record`; an array on the
/// way gives one value per element. Strings are taken as they are, numbers
/// and booleans as written; null and absent give none; an object is not a
/// value.
fn locate(record: &Value, locator: &str, out: &mut Vec<String>) -> Result<(), String> {
    fn walk(value: &Value, path: &[&str], out: &mut Vec<String>) -> Result<(), String> {
        match (value, path.split_first()) {
            (Value::Array(items), _) => items.iter().try_for_each(|v| walk(v, path, out)),
            (Value::Object(fields), Some((head, rest))) => match fields.get(*head) {
                Some(v) => walk(v, rest, out),
                None => Ok(()),
            },
            (Value::Object(_), None) => Err("is an object, not a value; point the locator at a field inside it".into()),
            (_, Some(_)) | (Value::Null, None) => Ok(()),
            (Value::String(s), None) => {
                out.push(s.clone());
                Ok(())
            }
            (other, None) => {
                out.push(other.to_string());
                Ok(())
            }
        }
    }
    let path: Vec<&str> = locator.split('.').filter(|s| !s.is_empty()).collect();
    walk(record, &path, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn real_mapping() -> Value {
        serde_json::from_str(include_str!("../../real-api/mapping-configuration.json")).unwrap()
    }

    #[test]
    fn the_real_apps_mapping_passes_and_maps_the_real_chunk() {
        let mapping = check(&real_mapping()).unwrap();
        let chunk: Value = serde_json::from_str(include_str!("../../real-api/data-submission.json")).unwrap();
        let mapped = mapping.apply(chunk["data"].as_object().unwrap()).unwrap();
        assert_eq!(mapped.len(), 1);
        let (type_name, objects) = &mapped[0];
        assert_eq!(type_name, "Product");
        assert_eq!(objects.len(), 2);
        let first = &objects[0];
        assert_eq!(first.external_id, "1");
        assert_eq!(first.label, "Essence Mascara Lash Princess");
        assert_eq!(first.attributes["Price"], vec!["9.99"]);
        assert_eq!(first.attributes["Brand"], vec!["Essence"]);
        // Fields the mapping does not name do not become attributes.
        assert!(!first.attributes.contains_key("sku"));
        assert_eq!(first.attributes.len(), 8);
    }

    #[test]
    fn schema_errors_name_the_json_path() {
        let mut doc = real_mapping();
        doc["mapping"]["objectTypeMappings"][0]
            .as_object_mut()
            .unwrap()
            .remove("selector");
        let e = check(&doc).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("mapping.objectTypeMappings[0].selector"),
            "{e}"
        );
        let mut doc = real_mapping();
        doc["schema"]["objectSchema"]["objectTypes"][0]["attributes"][3]["type"] = json!("money");
        let e = check(&doc).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("schema.objectSchema.objectTypes[0].attributes[3].type"),
            "{e}"
        );
        let e = check(&json!({"schema": {}})).unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn consistency_errors_name_the_json_path() {
        let mut doc = real_mapping();
        doc["mapping"]["objectTypeMappings"][0]["objectTypeExternalId"] = json!("cmdb::externalId/nope");
        let e = check(&doc).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("mapping.objectTypeMappings[0].objectTypeExternalId")
        );

        let mut doc = real_mapping();
        doc["mapping"]["objectTypeMappings"][0]["attributesMapping"][2]["attributeExternalId"] = json!("x");
        let e = check(&doc).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("mapping.objectTypeMappings[0].attributesMapping[2].attributeExternalId")
        );

        let mut doc = real_mapping();
        doc["mapping"]["objectTypeMappings"][0]["attributesMapping"][0]["externalIdPart"] = json!(false);
        let e = check(&doc).unwrap_err();
        assert!(e.message.contains("externalIdPart"), "{e}");

        let mut doc = real_mapping();
        doc["schema"]["objectSchema"]["objectTypes"][0]["attributes"][0]["label"] = json!(true);
        let e = check(&doc).unwrap_err();
        assert!(e.message.contains("2 label attributes"), "{e}");
    }

    #[test]
    fn records_that_cannot_be_mapped_name_their_path() {
        let mapping = check(&real_mapping()).unwrap();
        let data = json!({"products": [{"id": 1, "title": "a"}, {"title": "no id"}]});
        let e = mapping.apply(data.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.products[1].id"), "{e}");
        let data = json!({"gadgets": []});
        let e = mapping.apply(data.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.gadgets"), "{e}");
        let data = json!({"products": [{"id": 2, "title": {"en": "x"}}]});
        let e = mapping.apply(data.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.products[0].title"), "{e}");
    }

    #[test]
    fn locators_walk_dotted_paths_and_arrays() {
        let record = json!({"site": {"name": "ams"}, "tags": [{"name": "a"}, {"name": "b"}], "n": null});
        let mut out = Vec::new();
        locate(&record, "site.name", &mut out).unwrap();
        locate(&record, "tags.name", &mut out).unwrap();
        locate(&record, "n", &mut out).unwrap();
        locate(&record, "missing.deep", &mut out).unwrap();
        assert_eq!(out, ["ams", "a", "b"]);
    }

    #[test]
    fn json_paths_from_pointers() {
        assert_eq!(json_path(""), "(body)");
        assert_eq!(
            json_path("/mapping/objectTypeMappings/0/selector"),
            "mapping.objectTypeMappings[0].selector"
        );
    }
}
