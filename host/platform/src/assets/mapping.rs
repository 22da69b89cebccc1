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
    // Linear, but megabytes of it: never under the state lock, which every
    // other caller waits on.
    debug_assert!(
        !super::holding_state_lock(),
        "a mapping document is checked with the state lock held"
    );
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

/// A declared object type, its attributes indexed by external id and by
/// name: each lookup is one hash probe, so a check costs time in proportion
/// to the document. (A search of the list per mapped attribute was
/// quadratic: 60,000 attributes took 61 s, under the state lock.)
struct DeclaredType<'a> {
    value: &'a Value,
    by_external_id: HashMap<&'a str, &'a Value>,
    by_name: HashMap<&'a str, &'a Value>,
    /// Attributes declared `"label": true`.
    labels: usize,
}

impl<'a> DeclaredType<'a> {
    fn new(value: &'a Value) -> DeclaredType<'a> {
        let mut declared = DeclaredType {
            value,
            by_external_id: HashMap::new(),
            by_name: HashMap::new(),
            labels: 0,
        };
        for attribute in value["attributes"].as_array().map(Vec::as_slice).unwrap_or_default() {
            examined();
            // The first of equal keys wins, as a search in order found it.
            if let Some(id) = text(attribute, "externalId") {
                declared.by_external_id.entry(id).or_insert(attribute);
            }
            if let Some(name) = text(attribute, "name") {
                declared.by_name.entry(name).or_insert(attribute);
            }
            if attribute["label"].as_bool() == Some(true) {
                declared.labels += 1;
            }
        }
        declared
    }

    /// The attribute a mapping names: by external id when it gives one,
    /// else by name.
    fn attribute(&self, external_id: Option<&str>, name: &str) -> Option<&'a Value> {
        examined();
        match external_id {
            Some(id) => self.by_external_id.get(id),
            None => self.by_name.get(name),
        }
        .copied()
    }
}

/// Every declared object type, children included, indexed by external id
/// and by name.
#[derive(Default)]
struct Declared<'a> {
    types: Vec<DeclaredType<'a>>,
    by_external_id: HashMap<&'a str, usize>,
    by_name: HashMap<&'a str, usize>,
}

impl<'a> Declared<'a> {
    /// Adds `types` and their children, each before its children: the
    /// first of equal keys wins, as a search in that order found it.
    fn add(&mut self, types: &'a [Value]) {
        for t in types {
            let index = self.types.len();
            if let Some(id) = text(t, "externalId") {
                self.by_external_id.entry(id).or_insert(index);
            }
            if let Some(name) = text(t, "name") {
                self.by_name.entry(name).or_insert(index);
            }
            self.types.push(DeclaredType::new(t));
            if let Some(children) = t["children"].as_array() {
                self.add(children);
            }
        }
    }

    /// The object type a mapping names: by external id when it gives one,
    /// else by name.
    fn object_type(&self, external_id: Option<&str>, name: &str) -> Option<&DeclaredType<'a>> {
        examined();
        let index = match external_id {
            Some(id) => self.by_external_id.get(id),
            None => self.by_name.get(name),
        };
        index.map(|&i| &self.types[i])
    }
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

#[cfg(test)]
thread_local! {
    /// Declarations indexed and lookups made by the consistency check on
    /// this thread: its work, counted, so a test tells linear from
    /// quadratic without a clock.
    static EXAMINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one step of the consistency check's work (tests only).
fn examined() {
    #[cfg(test)]
    EXAMINED.with(|n| n.set(n.get() + 1));
}

impl Mapping {
    /// Reads a document that already passed the JSON Schema and checks its
    /// consistency.
    pub fn from_document(document: &Value) -> Result<Mapping, ApiError> {
        let types = document["schema"]["objectSchema"]["objectTypes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut declared = Declared::default();
        declared.add(types);
        let mappings = document["mapping"]["objectTypeMappings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut by_selector = HashMap::new();
        for (i, m) in mappings.iter().enumerate() {
            let at = format!("mapping.objectTypeMappings[{i}]");
            let name = text(m, "objectTypeName").unwrap_or_default();
            let external = text(m, "objectTypeExternalId");
            let Some(declared_type) = declared.object_type(external, name) else {
                let (field, what) = match external {
                    Some(id) => ("objectTypeExternalId", format!("external id {id:?}")),
                    None => ("objectTypeName", format!("name {name:?}")),
                };
                return Err(ApiError::invalid_field(
                    format!("{at}.{field}"),
                    format!("{at}.{field}: no object type with {what} is declared in schema.objectSchema.objectTypes"),
                ));
            };
            let type_name = text(declared_type.value, "name").unwrap_or(name).to_owned();
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
                let Some(attribute) = declared_type.attribute(external, name) else {
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
            let labels = declared_type.labels;
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
    /// that cannot be mapped, or (`data.products[3]`) whose object would be
    /// over `max_object_bytes` ([`AssetObject::held_bytes`], the
    /// `object_bytes` quota).
    pub fn apply(
        &self,
        data: &Map<String, Value>,
        max_object_bytes: u64,
    ) -> Result<Vec<(String, Vec<AssetObject>)>, ApiError> {
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
                objects.push(mapping.object(record, &format!("{at}[{i}]"), max_object_bytes)?);
            }
            out.push((mapping.type_name.clone(), objects));
        }
        Ok(out)
    }
}

impl TypeMapping {
    /// The object `record` maps to, refused (400 naming `at`) once what it
    /// holds is over `max_bytes` ([`AssetObject::held_bytes`]): counted as
    /// it is built, since several attributes may locate the same large
    /// field and make an object many times its record.
    fn object(&self, record: &Value, at: &str, max_bytes: u64) -> Result<AssetObject, ApiError> {
        if !record.is_object() {
            return Err(ApiError::invalid_field(
                at,
                format!("{at} must be a JSON object (a record)"),
            ));
        }
        let mut attributes = BTreeMap::new();
        let mut id_parts = Vec::new();
        let mut label: Option<String> = None;
        // `held_bytes` of the object built so far: the attributes, the
        // external id's parts with their separators, the label.
        let mut held = 0u64;
        let len = |values: &[String]| values.iter().map(String::len).sum::<usize>() as u64;
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
                    if !id_parts.is_empty() {
                        held += EXTERNAL_ID_SEPARATOR.len() as u64;
                    }
                    held += first.len() as u64;
                    id_parts.push(first.clone());
                }
                if a.label {
                    held += first.len() as u64;
                    if let Some(before) = label.replace(first.clone()) {
                        held -= before.len() as u64;
                    }
                }
            }
            if !values.is_empty() {
                held += a.name.len() as u64 + len(&values);
                if let Some(before) = attributes.insert(a.name.clone(), values) {
                    held -= a.name.len() as u64 + len(&before);
                }
            }
            if held > max_bytes {
                return Err(ApiError::invalid_field(
                    at,
                    format!(
                        "{at} maps to an object of over {max_bytes} bytes (its external id, label, attribute names \
                         and values); an object is at most {max_bytes} bytes (quota object_bytes)"
                    ),
                ));
            }
        }
        let object = AssetObject {
            external_id: id_parts.join(EXTERNAL_ID_SEPARATOR),
            label: label.unwrap_or_default(),
            attributes,
        };
        debug_assert_eq!(object.held_bytes(), held, "counted as built");
        Ok(object)
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
        let mapped = mapping.apply(chunk["data"].as_object().unwrap(), u64::MAX).unwrap();
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
        let e = mapping.apply(data.as_object().unwrap(), u64::MAX).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.products[1].id"), "{e}");
        let data = json!({"gadgets": []});
        let e = mapping.apply(data.as_object().unwrap(), u64::MAX).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.gadgets"), "{e}");
        let data = json!({"products": [{"id": 2, "title": {"en": "x"}}]});
        let e = mapping.apply(data.as_object().unwrap(), u64::MAX).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.products[0].title"), "{e}");
    }

    #[test]
    fn an_object_over_the_byte_limit_is_refused_at_its_record() {
        let mapping = check(&real_mapping()).unwrap();
        let data = json!({"products": [{"id": 1, "title": "a"}, {"id": 22, "title": "bb", "tags": ["x", "yy"]}]});
        let data = data.as_object().unwrap();
        let mapped = mapping.apply(data, u64::MAX).unwrap();
        let largest = mapped[0].1.iter().map(AssetObject::held_bytes).max().unwrap();
        assert!(mapping.apply(data, largest).is_ok(), "at the limit");
        let e = mapping.apply(data, largest - 1).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.products[1]"), "{e}");
        assert!(e.message.contains("object_bytes"), "{e}");

        // Every attribute locating one large field: the object is 50 times
        // its record, and that is what counts.
        let mut document = sized(1, 50);
        for a in document["mapping"]["objectTypeMappings"][0]["attributesMapping"]
            .as_array_mut()
            .unwrap()
        {
            a["attributeLocators"] = json!(["x"]);
        }
        let mapping = check(&document).unwrap();
        let data = json!({"s0": [{"x": "x".repeat(100_000)}]});
        let e = mapping.apply(data.as_object().unwrap(), 1 << 20).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.s0[0]"), "{e}");
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

    /// A document as large as `types` × `attributes`: one object type per
    /// mapping, each declaring and mapping `attributes` attributes.
    fn sized(types: usize, attributes: usize) -> Value {
        let object_types: Vec<Value> = (0..types)
            .map(|t| {
                let declared: Vec<Value> = (0..attributes)
                    .map(|a| json!({"externalId": format!("t{t}-a{a}"), "name": format!("Attr {a}"), "description": "", "type": "text", "label": a == 0}))
                    .collect();
                json!({"externalId": format!("t{t}"), "name": format!("Type {t}"), "description": "", "attributes": declared})
            })
            .collect();
        let mappings: Vec<Value> = (0..types)
            .map(|t| {
                let mapped: Vec<Value> = (0..attributes)
                    .map(|a| {
                        // Half by external id, half by name: both lookups.
                        let mut m = json!({"attributeName": format!("Attr {a}"), "attributeLocators": [format!("f{a}")], "externalIdPart": a == 1});
                        if a % 2 == 0 {
                            m["attributeExternalId"] = json!(format!("t{t}-a{a}"));
                        }
                        m
                    })
                    .collect();
                let mut m = json!({"objectTypeName": format!("Type {t}"), "selector": format!("s{t}"), "description": "", "attributesMapping": mapped});
                if t % 2 == 0 {
                    m["objectTypeExternalId"] = json!(format!("t{t}"));
                }
                m
            })
            .collect();
        json!({
            "schema": {"objectSchema": {"name": "Sized", "description": "", "objectTypes": object_types}},
            "mapping": {"objectTypeMappings": mappings},
        })
    }

    /// The consistency check's work, counted rather than timed: declared
    /// types and attributes examined per lookup. A linear search examined
    /// about half of them for every mapped one, n²/2 in all.
    #[test]
    fn the_consistency_check_examines_each_declaration_a_bounded_number_of_times() {
        for (types, attributes) in [(1, 4_000), (2_000, 2), (60, 60)] {
            let document = sized(types, attributes);
            EXAMINED.with(|n| n.set(0));
            Mapping::from_document(&document).unwrap();
            let examined = EXAMINED.with(|n| n.get());
            let declarations = types * (attributes + 1);
            assert!(
                examined <= 3 * declarations,
                "{types} types of {attributes} attributes: {examined} lookups steps for {declarations} declarations"
            );
        }
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
