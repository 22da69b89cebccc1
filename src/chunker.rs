//! Turns a stream of objects into data-chunk bodies within the limits.
//!
//! A chunk is the JSON body of one `POST .../executions/{id}/data` call, in the
//! seed's shape: `{"objectTypeId": "...", "objects": [...]}`, plus the real
//! API's `clientGeneratedId`, unique per chunk, so a chunk that is sent again
//! after a lost answer is stored once. One chunk holds
//! one object type, at most `max_objects` objects and at most `max_bytes`
//! bytes of body. Each object is serialized exactly once, straight into the
//! open chunk, so a long import costs one pass over its data.

use crate::model::AssetObject;
use crate::settings::ChunkLimits;
use serde::ser::{SerializeMap, Serializer};
use std::fmt;

/// A finished chunk, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Object type of every object in the chunk.
    pub object_type_id: String,
    /// Number of objects in the chunk.
    pub objects: usize,
    /// The JSON body.
    pub body: String,
}

/// Data that cannot be chunked; the import cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidData {
    /// A batch without an object type.
    EmptyObjectType,
    /// An object without an external id.
    EmptyExternalId {
        /// The object's type.
        object_type_id: String,
        /// The object's label, to help find it.
        label: String,
    },
    /// One object alone is larger than a chunk may be.
    ObjectTooLarge {
        /// The object's external id.
        external_id: String,
        /// Bytes the smallest chunk holding it would take.
        bytes: usize,
        /// The chunk byte limit.
        limit: usize,
    },
}

impl fmt::Display for InvalidData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidData::EmptyObjectType => {
                write!(f, "Invalid data from source: a batch of objects has an empty objectTypeId")
            }
            InvalidData::EmptyExternalId { object_type_id, label } => write!(
                f,
                "Invalid data from source: an object of type {object_type_id:?} (label {label:?}) has an empty externalId"
            ),
            InvalidData::ObjectTooLarge { external_id, bytes, limit } => write!(
                f,
                "Invalid data from source: object {external_id:?} needs a {bytes}-byte chunk, over the chunk-max-bytes limit of {limit}; raise chunk-max-bytes or shrink the object"
            ),
        }
    }
}

impl std::error::Error for InvalidData {}

/// Fills chunks one object at a time, keeping one open chunk per object
/// type so that interleaved types still make full chunks.
#[derive(Debug)]
pub struct Chunker {
    limits: ChunkLimits,
    /// Open chunks, in the order their types first appeared. Sources have a
    /// handful of types, so a linear search beats hashing.
    open: Vec<OpenChunk>,
    /// Scratch space for one serialized object, reused.
    object_json: Vec<u8>,
    /// Chunk ids are this prefix and a counter.
    id_prefix: String,
    opened: u64,
}

#[derive(Debug)]
struct OpenChunk {
    object_type_id: String,
    /// The body so far, without its closing `]}`.
    body: String,
    count: usize,
    /// Length of `{"clientGeneratedId":..,"objectTypeId":..,"objects":[`.
    prefix_len: usize,
}

const CLOSING: &str = "]}";

impl Chunker {
    /// A chunker that never exceeds `limits`; chunk ids are `id_prefix`
    /// followed by a counter.
    pub fn new(limits: ChunkLimits, id_prefix: impl Into<String>) -> Chunker {
        Chunker {
            limits,
            open: Vec::new(),
            object_json: Vec::new(),
            id_prefix: id_prefix.into(),
            opened: 0,
        }
    }

    /// Adds one object of type `object_type_id`. Returns the chunk it closed,
    /// if the object did not fit in its type's open chunk.
    pub fn push(&mut self, object_type_id: &str, object: &AssetObject) -> Result<Option<Chunk>, InvalidData> {
        if object_type_id.is_empty() {
            return Err(InvalidData::EmptyObjectType);
        }
        if object.external_id.is_empty() {
            return Err(InvalidData::EmptyExternalId {
                object_type_id: object_type_id.to_owned(),
                label: object.label.clone(),
            });
        }

        self.object_json.clear();
        write_object(&mut self.object_json, object);
        // serde_json writes valid UTF-8 only.
        let json = std::str::from_utf8(&self.object_json).expect("serde_json emits UTF-8");

        let index = match self.open.iter().position(|c| c.object_type_id == object_type_id) {
            Some(i) => i,
            None => {
                self.open.push(OpenChunk::new(object_type_id));
                self.open.len() - 1
            }
        };
        let chunk = &mut self.open[index];
        if chunk.body.is_empty() {
            self.opened += 1;
            chunk.start(&format!("{}{}", self.id_prefix, self.opened));
        }
        let alone = chunk.prefix_len + json.len() + CLOSING.len();
        if alone > self.limits.max_bytes {
            return Err(InvalidData::ObjectTooLarge {
                external_id: object.external_id.clone(),
                bytes: alone,
                limit: self.limits.max_bytes,
            });
        }
        let fits = chunk.count < self.limits.max_objects
            && chunk.body.len() + 1 + json.len() + CLOSING.len() <= self.limits.max_bytes;
        let closed = if fits {
            None
        } else {
            let closed = chunk.take();
            self.opened += 1;
            chunk.start(&format!("{}{}", self.id_prefix, self.opened));
            closed
        };
        chunk.append(json);
        Ok(closed)
    }

    /// Closes and returns every open chunk that holds an object, in the order
    /// their object types first appeared.
    pub fn finish(&mut self) -> Vec<Chunk> {
        self.open.drain(..).filter_map(|mut c| c.take()).collect()
    }
}

impl OpenChunk {
    fn new(object_type_id: &str) -> OpenChunk {
        OpenChunk {
            object_type_id: object_type_id.to_owned(),
            body: String::new(),
            count: 0,
            prefix_len: 0,
        }
    }

    /// Begins the body: `{"clientGeneratedId":..,"objectTypeId":..,"objects":[`.
    fn start(&mut self, chunk_id: &str) {
        self.body.clear();
        self.body.push_str("{\"clientGeneratedId\":");
        self.body
            .push_str(&serde_json::to_string(chunk_id).expect("a string serializes"));
        self.body.push_str(",\"objectTypeId\":");
        self.body
            .push_str(&serde_json::to_string(&self.object_type_id).expect("a string serializes"));
        self.body.push_str(",\"objects\":[");
        self.prefix_len = self.body.len();
    }

    fn append(&mut self, json: &str) {
        if self.count > 0 {
            self.body.push(',');
        }
        self.body.push_str(json);
        self.count += 1;
    }

    /// The finished chunk, leaving this one empty and ready for more.
    fn take(&mut self) -> Option<Chunk> {
        if self.count == 0 {
            return None;
        }
        let capacity = self.body.capacity();
        let mut body = std::mem::replace(&mut self.body, String::with_capacity(capacity));
        body.push_str(CLOSING);
        let chunk = Chunk {
            object_type_id: self.object_type_id.clone(),
            objects: self.count,
            body,
        };
        self.count = 0;
        Some(chunk)
    }
}

/// Writes `{"externalId":..,"label":..,"attributes":{key:[values]}}`.
fn write_object(out: &mut Vec<u8>, object: &AssetObject) {
    let mut ser = serde_json::Serializer::new(out);
    let result = (|| {
        let mut map = ser.serialize_map(Some(3))?;
        map.serialize_entry("externalId", &object.external_id)?;
        map.serialize_entry("label", &object.label)?;
        map.serialize_entry("attributes", &Attributes(&object.attributes))?;
        map.end()
    })();
    // Writing strings into a Vec cannot fail.
    result.expect("serializing an object into memory cannot fail");
}

struct Attributes<'a>(&'a [(String, Vec<String>)]);

impl serde::Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, values) in self.0 {
            map.serialize_entry(key, values)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn object(i: usize, attribute_len: usize) -> AssetObject {
        AssetObject {
            external_id: format!("asset-{i}"),
            label: format!("Asset {i}"),
            attributes: vec![
                ("serial".into(), vec!["x".repeat(attribute_len)]),
                ("tags".into(), vec!["a".into(), "b".into()]),
            ],
        }
    }

    fn chunk_all(limits: ChunkLimits, items: &[(&str, AssetObject)]) -> Vec<Chunk> {
        let mut chunker = Chunker::new(limits, "c-");
        let mut chunks = Vec::new();
        for (t, o) in items {
            chunks.extend(chunker.push(t, o).unwrap());
        }
        chunks.extend(chunker.finish());
        chunks
    }

    #[test]
    fn chunk_body_has_the_seed_shape() {
        let chunks = chunk_all(ChunkLimits::default(), &[("laptop", object(1, 3))]);
        assert_eq!(chunks.len(), 1);
        let body: Value = serde_json::from_str(&chunks[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "clientGeneratedId": "c-1",
                "objectTypeId": "laptop",
                "objects": [{
                    "externalId": "asset-1",
                    "label": "Asset 1",
                    "attributes": {"serial": ["xxx"], "tags": ["a", "b"]}
                }]
            })
        );
    }

    #[test]
    fn chunks_never_exceed_the_object_limit() {
        let items: Vec<_> = (0..1001).map(|i| ("t", object(i, 5))).collect();
        let limits = ChunkLimits {
            max_objects: 100,
            max_bytes: 1 << 20,
        };
        let chunks = chunk_all(limits, &items);
        assert_eq!(chunks.len(), 11);
        assert!(chunks.iter().all(|c| c.objects <= 100));
        assert_eq!(chunks.iter().map(|c| c.objects).sum::<usize>(), 1001);
    }

    #[test]
    fn chunks_never_exceed_the_byte_limit_and_keep_every_object_in_order() {
        let items: Vec<_> = (0..500).map(|i| ("t", object(i, i % 97))).collect();
        let limits = ChunkLimits {
            max_objects: 10_000,
            max_bytes: 2_000,
        };
        let chunks = chunk_all(limits, &items);
        assert!(chunks.len() > 1);
        let mut ids = Vec::new();
        for c in &chunks {
            assert!(c.body.len() <= 2_000, "chunk of {} bytes", c.body.len());
            let body: Value = serde_json::from_str(&c.body).unwrap();
            let objects = body["objects"].as_array().unwrap();
            assert_eq!(objects.len(), c.objects);
            ids.extend(objects.iter().map(|o| o["externalId"].as_str().unwrap().to_owned()));
        }
        let expected: Vec<_> = (0..500).map(|i| format!("asset-{i}")).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_chunk_holds_one_object_type_and_interleaved_types_fill_their_own_chunks() {
        let items = vec![
            ("a", object(1, 1)),
            ("b", object(2, 1)),
            ("a", object(3, 1)),
            ("b", object(4, 1)),
            ("a", object(5, 1)),
        ];
        let limits = ChunkLimits {
            max_objects: 2,
            max_bytes: 1 << 20,
        };
        let chunks = chunk_all(limits, &items);
        let shape: Vec<_> = chunks.iter().map(|c| (c.object_type_id.as_str(), c.objects)).collect();
        // "a" fills first; the rest close in the order their types appeared.
        assert_eq!(shape, vec![("a", 2), ("a", 1), ("b", 2)]);
        for c in &chunks {
            let body: Value = serde_json::from_str(&c.body).unwrap();
            assert_eq!(body["objectTypeId"], c.object_type_id.as_str());
        }
    }

    #[test]
    fn an_object_larger_than_a_chunk_is_refused_by_name() {
        let mut chunker = Chunker::new(
            ChunkLimits {
                max_objects: 10,
                max_bytes: 300,
            },
            "c-",
        );
        let err = chunker.push("t", &object(7, 1000)).unwrap_err();
        assert!(matches!(err, InvalidData::ObjectTooLarge { ref external_id, .. } if external_id == "asset-7"));
        assert!(err.to_string().contains("chunk-max-bytes"));
    }

    #[test]
    fn empty_ids_are_refused() {
        let mut chunker = Chunker::new(ChunkLimits::default(), "c-");
        assert_eq!(chunker.push("", &object(1, 1)), Err(InvalidData::EmptyObjectType));
        let mut nameless = object(1, 1);
        nameless.external_id.clear();
        assert!(matches!(
            chunker.push("t", &nameless),
            Err(InvalidData::EmptyExternalId { .. })
        ));
    }

    #[test]
    fn text_needing_escapes_survives() {
        let mut o = object(1, 0);
        o.label = "quote \" backslash \\ newline \n ünïcödé".into();
        let chunks = chunk_all(ChunkLimits::default(), &[("type \"x\"", o.clone())]);
        let body: Value = serde_json::from_str(&chunks[0].body).unwrap();
        assert_eq!(body["objectTypeId"], "type \"x\"");
        assert_eq!(body["objects"][0]["label"], o.label.as_str());
    }
}
