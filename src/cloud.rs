//! The real (cloud) API's dialect: the schema-and-mapping document an
//! import source needs before its first execution, and how chunks are
//! shaped for it.
//!
//! Records go out as the importer holds them —
//! `{"externalId", "label", "attributes": {key: [values]}}` — under the
//! selector of their object type, so a mapping locates them with
//! `externalId`, `label` and `attributes.<key>`. The importer either uses the
//! document given in its `cloud-mapping` setting, or derives one from the
//! object types and attribute keys of its source's first page (merged with
//! a mapping it derived before, so keys seen in earlier runs stay mapped).

use crate::chunker::{CloudType, Envelope};
use crate::model::Page;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The object schema name of a derived document: how the importer tells
/// its own derived mapping from one an operator set.
pub const DERIVED_SCHEMA_NAME: &str = "Derived by assets-scheduled-import";
/// The attribute that holds each object's external id in a derived mapping.
pub const EXTERNAL_ID_ATTRIBUTE: &str = "External ID";
/// The label attribute in a derived mapping.
pub const LABEL_ATTRIBUTE: &str = "Name";

/// Object types and the attribute keys seen for each.
pub type Shape = BTreeMap<String, BTreeSet<String>>;

/// The object types and attribute keys of `page`.
pub fn shape_of(page: &Page) -> Shape {
    let mut shape = Shape::new();
    for batch in &page.batches {
        let keys = shape.entry(batch.object_type_id.clone()).or_default();
        for object in &batch.objects {
            keys.extend(object.attributes.iter().map(|(k, _)| k.clone()));
        }
    }
    shape
}

/// The shape a derived document was made from; `None` for a document the
/// importer did not derive (it is never merged into).
pub fn derived_shape(document: &Value) -> Option<Shape> {
    if document["schema"]["objectSchema"]["name"] != DERIVED_SCHEMA_NAME {
        return None;
    }
    let envelope = envelope(document).ok()?;
    let Envelope::Cloud(types) = envelope else { return None };
    Some(
        types
            .into_iter()
            .map(|t| (t.object_type_id, t.keys.into_iter().collect()))
            .collect(),
    )
}

/// A schema-and-mapping document for `shape`: per object type an
/// `External ID` attribute (the external id), a `Name` label and one text
/// attribute per key, each located in the importer's records. Refuses keys a
/// dotted locator cannot reach or that clash with those two.
pub fn derive(shape: &Shape) -> Result<Value, String> {
    if shape.is_empty() {
        return Err(
            "The data source's first page has no objects, so no mapping can be derived for the cloud dialect; set cloud-mapping"
                .into(),
        );
    }
    let mut types = Vec::new();
    let mut mappings = Vec::new();
    for (object_type, keys) in shape {
        let mut attributes = vec![
            json!({"name": EXTERNAL_ID_ATTRIBUTE, "description": "The record's id in the source system", "type": "text", "label": false}),
            json!({"name": LABEL_ATTRIBUTE, "description": "The record's display name", "type": "text", "label": true}),
        ];
        let mut located = vec![
            json!({"attributeName": EXTERNAL_ID_ATTRIBUTE, "attributeLocators": ["externalId"], "externalIdPart": true}),
            json!({"attributeName": LABEL_ATTRIBUTE, "attributeLocators": ["label"], "externalIdPart": false}),
        ];
        for key in keys {
            if key.contains('.') || key.is_empty() {
                return Err(format!(
                    "Attribute key {key:?} of object type {object_type:?} cannot be located in the cloud dialect (locators are dotted paths); rename it or set cloud-mapping"
                ));
            }
            if key == EXTERNAL_ID_ATTRIBUTE || key == LABEL_ATTRIBUTE {
                return Err(format!(
                    "Attribute key {key:?} of object type {object_type:?} clashes with the derived mapping's own attribute of that name; rename it or set cloud-mapping"
                ));
            }
            attributes.push(json!({"name": key, "description": "", "type": "text", "label": false}));
            located.push(json!({"attributeName": key, "attributeLocators": [format!("attributes.{key}")], "externalIdPart": false}));
        }
        types.push(json!({"name": object_type, "description": "", "attributes": attributes}));
        mappings.push(json!({
            "objectTypeName": object_type,
            "selector": object_type,
            "description": format!("Records of object type {object_type}"),
            "attributesMapping": located,
        }));
    }
    Ok(json!({
        "schema": {"objectSchema": {
            "name": DERIVED_SCHEMA_NAME,
            "description": "Derived by the importer from its data source's object types and attribute keys",
            "objectTypes": types,
        }},
        "mapping": {"objectTypeMappings": mappings},
    }))
}

/// How chunks are shaped for `document`: each object type mapping's
/// selector and the attribute keys it locates (`attributes.<key>`).
pub fn envelope(document: &Value) -> Result<Envelope, String> {
    let mappings = document["mapping"]["objectTypeMappings"]
        .as_array()
        .ok_or("The schema-and-mapping document has no mapping.objectTypeMappings list")?;
    let mut types = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        let name = m["objectTypeName"].as_str();
        let selector = m["selector"].as_str();
        let (Some(name), Some(selector)) = (name, selector) else {
            return Err(format!(
                "mapping.objectTypeMappings[{i}] needs objectTypeName and selector strings"
            ));
        };
        let keys = m["attributesMapping"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["attributeLocators"].as_array().into_iter().flatten())
            .filter_map(|l| l.as_str()?.strip_prefix("attributes."))
            .map(str::to_owned)
            .collect();
        types.push(CloudType {
            object_type_id: name.to_owned(),
            selector: selector.to_owned(),
            keys,
        });
    }
    Ok(Envelope::Cloud(types))
}

/// Body that closes ingestion in the cloud dialect.
pub const COMPLETED_BODY: &str = r#"{"completed":true}"#;

/// A progress report's body.
pub fn progress_body(chunks: u32, objects: u64, pages: u64) -> String {
    json!({"chunksSent": chunks, "objectsSent": objects, "pagesRead": pages}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssetObject, ObjectBatch};

    fn page() -> Page {
        let object = |id: &str, keys: &[&str]| AssetObject {
            external_id: id.into(),
            label: format!("Device {id}"),
            attributes: keys.iter().map(|k| (k.to_string(), vec!["v".to_string()])).collect(),
        };
        Page {
            batches: vec![
                ObjectBatch {
                    object_type_id: "device".into(),
                    objects: vec![object("1", &["serial"]), object("2", &["serial", "site"])],
                },
                ObjectBatch {
                    object_type_id: "site".into(),
                    objects: vec![object("ams", &[])],
                },
            ],
            next_cursor: None,
        }
    }

    #[test]
    fn a_derived_mapping_locates_every_key_of_the_first_page() {
        let document = derive(&shape_of(&page())).unwrap();
        let Envelope::Cloud(types) = envelope(&document).unwrap() else {
            panic!("cloud")
        };
        assert_eq!(types.len(), 2);
        assert_eq!(types[0].object_type_id, "device");
        assert_eq!(types[0].selector, "device");
        assert_eq!(types[0].keys, ["serial", "site"]);
        assert!(types[1].keys.is_empty());
        assert_eq!(derived_shape(&document), Some(shape_of(&page())));
    }

    #[test]
    fn keys_a_locator_cannot_reach_are_refused_by_name() {
        let mut shape = Shape::new();
        shape.insert("device".into(), ["ip.address".to_string()].into());
        assert!(derive(&shape).unwrap_err().contains("\"ip.address\""));
        let mut shape = Shape::new();
        shape.insert("device".into(), [LABEL_ATTRIBUTE.to_string()].into());
        assert!(derive(&shape).unwrap_err().contains("clashes"));
        assert!(derive(&Shape::new()).unwrap_err().contains("cloud-mapping"));
    }

    #[test]
    fn a_mapping_set_by_an_operator_is_never_merged_into() {
        let mut document = derive(&shape_of(&page())).unwrap();
        document["schema"]["objectSchema"]["name"] = json!("CMDB");
        assert_eq!(derived_shape(&document), None);
    }
}
