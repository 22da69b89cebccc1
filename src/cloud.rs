//! The real (cloud) API's dialect: the schema-and-mapping document an
//! import source needs before its first execution, and how chunks are
//! shaped for it.
//!
//! Records go out as the importer holds them —
//! `{"externalId", "label", "attributes": {key: [values]}}` — under the
//! selector of their object type, so a mapping locates them with
//! `externalId`, `label` and `attributes.<key>`. The importer either uses the
//! document given in its `cloud-mapping` setting, or one an operator put in
//! place (used as it is, never changed), or derives its own from the object
//! types and attribute keys of its source's first page, merged with what it
//! derived and saw before.
//!
//! A derived mapping grows with the data ([`Growth`]): the API takes a new
//! mapping only between imports (the mock refuses a change while an
//! execution ingests, and the reference documents describe none), so a key
//! first seen after the first page is left out of that run — its object
//! type's objects or its attribute's values — named in the run's progress,
//! remembered in app storage ([`unmapped_key`]), and mapped by the next run.
//! A key that a mapping the importer did not write lacks fails the run with
//! a reason that names it.

use crate::chunker::{CloudType, Envelope};
use crate::model::{AssetObject, Page};
use crate::reason::cut_reason;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// The object schema name of a derived document: with the document being
/// exactly what [`derive`] makes of its own shape, how the importer tells
/// its own mapping from one an operator set. (`schema.objectSchema.name` is
/// a free string in Atlassian's JSON Schema; documents derived by earlier
/// versions carry the same name, so they stay the importer's.)
pub const DERIVED_SCHEMA_NAME: &str = "Derived by assets-scheduled-import";
/// The attribute that holds each object's external id in a derived mapping.
pub const EXTERNAL_ID_ATTRIBUTE: &str = "External ID";
/// The label attribute in a derived mapping.
pub const LABEL_ATTRIBUTE: &str = "Name";
/// The largest value app storage keeps under one key (the host's limit).
pub const STORAGE_VALUE_LIMIT: usize = 64 * 1024;

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

/// Adds every type and key of `more` to `shape`.
pub fn merge(shape: &mut Shape, more: Shape) {
    for (object_type, keys) in more {
        shape.entry(object_type).or_default().extend(keys);
    }
}

/// The shape a derived document was made from; `None` for a document the
/// importer did not write, or one changed since (it is never merged into,
/// nor replaced). Ours means: the marker name, and every field [`derive`]
/// writes for that shape present with the same value (fields the API adds
/// are allowed; an edited locator, selector, type or attribute is not).
pub fn derived_shape(document: &Value) -> Option<Shape> {
    if document["schema"]["objectSchema"]["name"] != DERIVED_SCHEMA_NAME {
        return None;
    }
    let shape = envelope_shape(&envelope(document).ok()?);
    let ours = derive(&shape).ok()?;
    holds(document, &ours).then_some(shape)
}

/// True when `document` has every field of `part` with the same value;
/// arrays must match element by element.
fn holds(document: &Value, part: &Value) -> bool {
    match (document, part) {
        (Value::Object(d), Value::Object(p)) => p.iter().all(|(k, v)| d.get(k).is_some_and(|dv| holds(dv, v))),
        (Value::Array(d), Value::Array(p)) => d.len() == p.len() && d.iter().zip(p).all(|(dv, pv)| holds(dv, pv)),
        (d, p) => d == p,
    }
}

/// What an envelope places: each object type and the keys it locates.
pub fn envelope_shape(envelope: &Envelope) -> Shape {
    match envelope {
        Envelope::Seed => Shape::new(),
        Envelope::Cloud(types) => types
            .iter()
            .map(|t| (t.object_type_id.clone(), t.keys.iter().cloned().collect()))
            .collect(),
    }
}

/// Refuses a key a derived mapping cannot locate: a dotted locator cannot
/// reach it, or it clashes with the derived mapping's own attributes.
fn check_key(object_type: &str, key: &str) -> Result<(), String> {
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
    Ok(())
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
            check_key(object_type, key)?;
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

/// The app-storage key under which the importer remembers, per import
/// source, the object types and attribute keys its mapping did not have
/// when they were first seen, so that the next run maps them.
pub fn unmapped_key(source_id: &str) -> String {
    format!("cloud-unmapped/{source_id}")
}

/// A remembered shape as stored; nothing (or something unreadable, which
/// only loses what the next run would have added) is an empty one.
pub fn remembered(stored: Option<&str>) -> Shape {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

/// Who set the mapping a run must use as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `cloud-mapping` setting.
    Setting,
    /// Someone other than the importer put it on the import source.
    Operator,
}

/// How a run treats object types and attribute keys its mapping lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Growth {
    /// No mapping (the seed dialect): every object goes as it is.
    #[default]
    Unmapped,
    /// A mapping the importer did not write: used as it is, and a key it
    /// lacks fails the run with a reason that names it.
    Fixed {
        /// What the mapping places.
        mapped: Shape,
        /// Who set it.
        origin: Origin,
    },
    /// The importer's own mapping: a key it lacks is left out of this run
    /// and remembered, so the next run's mapping has it.
    Derived {
        /// What the mapping places.
        mapped: Shape,
        /// Seen but not placed, over every delivery of the run.
        late: Shape,
    },
}

/// Where one object goes, as a run's mapping can place it.
#[derive(Debug, PartialEq, Eq)]
pub struct Placed<'a> {
    /// The object to chunk, without the attributes the mapping lacks;
    /// `None` when the mapping has no object type for it.
    pub object: Option<Cow<'a, AssetObject>>,
    /// True when a key was seen for the first time: remember
    /// [`Growth::late`] before a chunk goes without it.
    pub learned: bool,
}

impl Growth {
    /// A run on the importer's own mapping, placing `mapped`; of what was
    /// `remembered`, what the mapping lacks is still late.
    pub fn derived(mapped: Shape, remembered: &Shape) -> Growth {
        let mut late = Shape::new();
        for (object_type, keys) in remembered {
            let placed = mapped.get(object_type);
            let lacking: BTreeSet<String> = keys
                .iter()
                .filter(|k| placed.is_none_or(|p| !p.contains(*k)))
                .cloned()
                .collect();
            if placed.is_none() || !lacking.is_empty() {
                late.insert(object_type.clone(), lacking);
            }
        }
        Growth::Derived { mapped, late }
    }

    /// Where `object` of `object_type_id`, read on `page`, goes.
    pub fn place<'a>(
        &mut self,
        object_type_id: &str,
        object: &'a AssetObject,
        page: &Page,
    ) -> Result<Placed<'a>, String> {
        let as_is = Placed {
            object: Some(Cow::Borrowed(object)),
            learned: false,
        };
        // Data the chunker refuses anyway is left to it, with its reason.
        if object_type_id.is_empty() || object.external_id.is_empty() {
            return Ok(as_is);
        }
        match self {
            Growth::Unmapped => Ok(as_is),
            Growth::Fixed { mapped, origin } => {
                let fits = mapped
                    .get(object_type_id)
                    .is_some_and(|keys| object.attributes.iter().all(|(k, _)| keys.contains(k)));
                if fits {
                    return Ok(as_is);
                }
                // Every key this page shows and the mapping lacks, so one
                // change to the mapping fixes what can be seen.
                let lacking = lacking(&shape_of(page), mapped);
                Err(match origin {
                    Origin::Setting => format!(
                        "The data source sends what is not in the import source's mapping (the cloud-mapping setting), so it would be lost: {}. Add them to cloud-mapping, or unset it so the importer derives a mapping and maps new keys itself",
                        describe(&lacking, mapped)
                    ),
                    Origin::Operator => format!(
                        "The data source sends what is not in the import source's mapping, which was not written by this app and which it never changes, so it would be lost: {}. Add them to that document (PUT …/mapping), or set cloud-mapping to a document that maps them",
                        describe(&lacking, mapped)
                    ),
                })
            }
            Growth::Derived { mapped, late } => {
                let placed = mapped.get(object_type_id);
                if placed.is_some_and(|keys| object.attributes.iter().all(|(k, _)| keys.contains(k))) {
                    return Ok(as_is);
                }
                let mut learned = !late.contains_key(object_type_id) && placed.is_none();
                let noted = late.entry(object_type_id.to_owned()).or_default();
                for (key, _) in &object.attributes {
                    if placed.is_none_or(|keys| !keys.contains(key)) && !noted.contains(key) {
                        check_key(object_type_id, key)?;
                        noted.insert(key.clone());
                        learned = true;
                    }
                }
                let object = placed.map(|keys| {
                    Cow::Owned(AssetObject {
                        external_id: object.external_id.clone(),
                        label: object.label.clone(),
                        attributes: object
                            .attributes
                            .iter()
                            .filter(|(k, _)| keys.contains(k))
                            .cloned()
                            .collect(),
                    })
                });
                Ok(Placed { object, learned })
            }
        }
    }

    /// What the run has seen and its mapping lacks (empty unless derived).
    pub fn late(&self) -> Cow<'_, Shape> {
        match self {
            Growth::Derived { late, .. } => Cow::Borrowed(late),
            _ => Cow::Owned(Shape::new()),
        }
    }

    /// [`Growth::late`] as app storage keeps it; refused, with a reason,
    /// when it is over the storage value limit.
    pub fn late_value(&self) -> Result<String, String> {
        let late = self.late();
        let value = serde_json::to_string(&*late).expect("a shape serializes");
        if value.len() > STORAGE_VALUE_LIMIT {
            let keys: usize = late.values().map(BTreeSet::len).sum();
            return Err(format!(
                "The data source sent {} object types and {keys} attribute keys that the import source's mapping did not have when the run started, more than app storage can remember for the next run ({STORAGE_VALUE_LIMIT} bytes); set cloud-mapping to a document that maps them",
                late.len()
            ));
        }
        Ok(value)
    }

    /// For people: what this run left out and why, or `None` when it left
    /// nothing out.
    pub fn note(&self) -> Option<String> {
        let Growth::Derived { mapped, late } = self else {
            return None;
        };
        if late.is_empty() {
            return None;
        }
        Some(cut_reason(&format!(
            "Not imported in this run, because the import source's mapping did not have them when the run started (a mapping changes only between imports): {}. The importer remembered them; the next run maps and imports them",
            describe(late, mapped)
        )))
    }
}

/// The types and keys of `seen` that `mapped` lacks.
fn lacking(seen: &Shape, mapped: &Shape) -> Shape {
    let mut out = Shape::new();
    for (object_type, keys) in seen {
        match mapped.get(object_type) {
            None => {
                out.insert(object_type.clone(), keys.clone());
            }
            Some(placed) => {
                let keys: BTreeSet<String> = keys.difference(placed).cloned().collect();
                if !keys.is_empty() {
                    out.insert(object_type.clone(), keys);
                }
            }
        }
    }
    out
}

/// `lacking` in words: whole object types `mapped` does not have, then
/// attribute keys of the types it has.
fn describe(lacking: &Shape, mapped: &Shape) -> String {
    let quoted = |keys: &BTreeSet<String>| keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    for (object_type, keys) in lacking {
        if mapped.contains_key(object_type) {
            let noun = if keys.len() == 1 { "attribute" } else { "attributes" };
            parts.push(format!("{noun} {} of object type {object_type:?}", quoted(keys)));
        } else if keys.is_empty() {
            parts.push(format!("object type {object_type:?}"));
        } else {
            parts.push(format!("object type {object_type:?} (attributes {})", quoted(keys)));
        }
    }
    parts.join("; ")
}

/// Body that closes ingestion in the cloud dialect.
pub const COMPLETED_BODY: &str = r#"{"completed":true}"#;

/// A progress report's body.
pub fn progress_body(chunks: u32, objects: u64, pages: u64) -> String {
    json!({"chunksSent": chunks, "objectsSent": objects, "pagesRead": pages}).to_string()
}

/// A progress report's body with a note for people (what a run left out).
pub fn progress_body_noted(chunks: u32, objects: u64, pages: u64, note: &str) -> String {
    json!({"chunksSent": chunks, "objectsSent": objects, "pagesRead": pages, "note": note}).to_string()
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

    #[test]
    fn a_derived_mapping_an_operator_edited_is_theirs_but_fields_the_api_adds_are_not_an_edit() {
        let derived = derive(&shape_of(&page())).unwrap();
        let mut edited = derived.clone();
        edited["mapping"]["objectTypeMappings"][0]["selector"] = json!("devices");
        assert_eq!(derived_shape(&edited), None, "an edited selector");
        let mut edited = derived.clone();
        edited["schema"]["objectSchema"]["objectTypes"][0]["attributes"][2]["type"] = json!("integer");
        assert_eq!(derived_shape(&edited), None, "an edited attribute type");
        let mut edited = derived.clone();
        edited["mapping"]["objectTypeMappings"][0]["attributesMapping"][2]["attributeLocators"] = json!(["serialNo"]);
        assert_eq!(derived_shape(&edited), None, "an edited locator");

        let mut annotated = derived.clone();
        annotated["schema"]["objectSchema"]["objectTypes"][0]["externalId"] = json!("cmdb::externalId/1");
        assert_eq!(derived_shape(&annotated), Some(shape_of(&page())));
    }

    fn object(id: &str, keys: &[&str]) -> AssetObject {
        AssetObject {
            external_id: id.into(),
            label: format!("Device {id}"),
            attributes: keys.iter().map(|k| (k.to_string(), vec!["v".to_string()])).collect(),
        }
    }

    #[test]
    fn a_derived_mapping_leaves_out_late_keys_and_learns_each_once() {
        let mut growth = Growth::derived(shape_of(&page()), &Shape::new());
        let any = Page::default();

        let known = object("3", &["serial"]);
        let placed = growth.place("device", &known, &any).unwrap();
        assert_eq!(placed.object.as_deref(), Some(&known));
        assert!(!placed.learned);

        let late = object("4", &["serial", "rack"]);
        let placed = growth.place("device", &late, &any).unwrap();
        assert_eq!(placed.object.unwrap().attributes, object("4", &["serial"]).attributes);
        assert!(placed.learned);
        assert!(!growth.place("device", &late, &any).unwrap().learned, "learned once");

        let switch = object("sw1", &["ports"]);
        let placed = growth.place("switch", &switch, &any).unwrap();
        assert_eq!(placed.object, None);
        assert!(placed.learned);

        let late = growth.late().into_owned();
        assert_eq!(late["device"], ["rack".to_string()].into());
        assert_eq!(late["switch"], ["ports".to_string()].into());
        let note = growth.note().unwrap();
        assert!(note.contains(r#"attribute "rack" of object type "device""#), "{note}");
        assert!(note.contains(r#"object type "switch""#), "{note}");

        // What was remembered and is mapped now is late no more.
        let mut mapped = shape_of(&page());
        merge(&mut mapped, late.clone());
        assert_eq!(Growth::derived(mapped, &late).note(), None);
    }

    #[test]
    fn a_late_key_no_locator_reaches_fails_by_name() {
        let mut growth = Growth::derived(shape_of(&page()), &Shape::new());
        let e = growth
            .place("device", &object("5", &["ip.address"]), &Page::default())
            .unwrap_err();
        assert!(e.contains("\"ip.address\""), "{e}");
    }

    #[test]
    fn a_fixed_mapping_fails_naming_every_key_the_page_shows_that_it_lacks() {
        let mut fixed = Growth::Fixed {
            mapped: shape_of(&page()),
            origin: Origin::Operator,
        };
        let mut shown = page();
        shown.batches[0].objects.push(object("9", &["rack", "slot"]));
        shown.batches.push(ObjectBatch {
            object_type_id: "switch".into(),
            objects: vec![object("sw1", &["ports"])],
        });
        let e = fixed.place("device", &shown.batches[0].objects[2], &shown).unwrap_err();
        assert!(
            e.contains(r#"attributes "rack", "slot" of object type "device""#),
            "{e}"
        );
        assert!(e.contains(r#"object type "switch" (attributes "ports")"#), "{e}");
        assert!(e.contains("not written by this app"), "{e}");
        assert!(fixed.late().is_empty());
    }

    #[test]
    fn more_late_keys_than_app_storage_holds_fail_with_a_reason() {
        let mut growth = Growth::derived(shape_of(&page()), &Shape::new());
        let key = "k".repeat(1000);
        for i in 0..70 {
            growth
                .place("device", &object("1", &[&format!("{key}{i}")]), &Page::default())
                .unwrap();
        }
        let e = growth.late_value().unwrap_err();
        assert!(e.contains("70 attribute keys") && e.contains("cloud-mapping"), "{e}");
    }
}
