//! Turns a stream of objects into data-chunk bodies within the limits.
//!
//! A chunk is the JSON body of one `POST .../executions/{id}/data` call, in the
//! seed's shape: `{"objectTypeId": "...", "objects": [...]}`, or in the real
//! API's (`cloud`) shape: `{"data": {"<selector>": [...]}}` (see
//! [`Envelope`]); either way with the real API's `clientGeneratedId`, unique
//! per chunk, so a chunk that is sent again after a lost answer is stored
//! once. One chunk holds
//! one object type, at most `max_objects` objects and at most `max_bytes`
//! bytes of body. Each object is serialized exactly once, straight into the
//! open chunk, so a long import costs one pass over its data.

use crate::model::AssetObject;
use crate::settings::ChunkLimits;
use serde::ser::{SerializeMap, Serializer};
use std::fmt;

/// Where an object was in the source's stream: (page number in the run,
/// index of the object on its page). Checkpoints are made of these.
pub type Mark = (u64, u32);

/// A finished chunk, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Object type of every object in the chunk.
    pub object_type_id: String,
    /// Number of objects in the chunk.
    pub objects: usize,
    /// The JSON body.
    pub body: String,
    /// Where its last object was in the stream.
    pub last: Mark,
    /// The number in its `clientGeneratedId`.
    pub id: u64,
}

/// An open chunk that holds objects not yet sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending<'a> {
    /// Its object type.
    pub object_type_id: &'a str,
    /// The number in its `clientGeneratedId`.
    pub id: u64,
    /// Where its first object was in the stream.
    pub first: Mark,
    /// Its first object's external id: a resumed run checks that the object
    /// is still where `first` says before it trusts positions.
    pub first_id: &'a str,
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
    /// In the cloud dialect: an object type the mapping has no selector for.
    TypeNotMapped {
        /// The object's type.
        object_type_id: String,
    },
    /// In the cloud dialect: an attribute the mapping does not locate, whose
    /// values would be dropped.
    AttributeNotMapped {
        /// The object's type.
        object_type_id: String,
        /// The attribute's key.
        key: String,
    },
    /// A chunk that had to take a new number (its old one was taken by
    /// other content) would go over the byte limit with the longer id.
    RenumberedTooLarge {
        /// Its old number.
        chunk: u64,
        /// Bytes it would take under the new number.
        bytes: usize,
        /// The chunk byte limit.
        limit: usize,
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
            InvalidData::TypeNotMapped { object_type_id } => write!(
                f,
                "The import source's schema-and-mapping document has no object type mapping for object type {object_type_id:?}; add one (selector and locators), or leave cloud-mapping unset so the importer derives the mapping"
            ),
            InvalidData::AttributeNotMapped { object_type_id, key } => write!(
                f,
                "Attribute {key:?} of object type {object_type_id:?} is not in the import source's mapping (no locator attributes.{key}), so its values would be lost; add it to cloud-mapping, or let the importer derive the mapping from a first page that shows it"
            ),
            InvalidData::RenumberedTooLarge { chunk, bytes, limit } => write!(
                f,
                "Data chunk {chunk} had to be sent under a new clientGeneratedId (the API holds other objects under its id, sent by an earlier delivery), and with the longer id it takes {bytes} bytes, over the chunk-max-bytes limit of {limit}; run the import again, or raise chunk-max-bytes"
            ),
            InvalidData::ObjectTooLarge { external_id, bytes, limit } => write!(
                f,
                "Invalid data from source: object {external_id:?} needs a {bytes}-byte chunk, over the chunk-max-bytes limit of {limit}; raise chunk-max-bytes or shrink the object"
            ),
        }
    }
}

impl std::error::Error for InvalidData {}

/// The shape of a chunk's body around its objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Envelope {
    /// The seed's: `{"clientGeneratedId":..,"objectTypeId":..,"objects":[..]}`.
    #[default]
    Seed,
    /// The real API's: `{"clientGeneratedId":..,"data":{"<selector>":[..]}}`,
    /// each object written as a record `{"externalId","label","attributes"}`
    /// that the import source's mapping locates.
    Cloud(Vec<CloudType>),
}

/// One object type as the cloud dialect's mapping places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudType {
    /// The object type (the mapping's `objectTypeName`).
    pub object_type_id: String,
    /// The key its records go under in `data`.
    pub selector: String,
    /// Attribute keys the mapping locates (`attributes.<key>`).
    pub keys: Vec<String>,
}

impl Envelope {
    fn closing(&self) -> &'static str {
        match self {
            Envelope::Seed => "]}",
            Envelope::Cloud(_) => "]}}",
        }
    }

    /// Checks that the mapping places `object` of `object_type_id`.
    fn check(&self, object_type_id: &str, object: &AssetObject) -> Result<(), InvalidData> {
        let Envelope::Cloud(types) = self else {
            return Ok(());
        };
        let Some(t) = types.iter().find(|t| t.object_type_id == object_type_id) else {
            return Err(InvalidData::TypeNotMapped {
                object_type_id: object_type_id.to_owned(),
            });
        };
        match object.attributes.iter().find(|(k, _)| !t.keys.contains(k)) {
            Some((key, _)) => Err(InvalidData::AttributeNotMapped {
                object_type_id: object_type_id.to_owned(),
                key: key.clone(),
            }),
            None => Ok(()),
        }
    }

    fn write_prefix(&self, body: &mut String, id_prefix: &str, id: u64, object_type_id: &str) {
        body.push_str("{\"clientGeneratedId\":");
        body.push_str(&serde_json::to_string(&format!("{id_prefix}{id}")).expect("a string serializes"));
        match self {
            Envelope::Seed => {
                body.push_str(",\"objectTypeId\":");
                body.push_str(&serde_json::to_string(object_type_id).expect("a string serializes"));
                body.push_str(",\"objects\":[");
            }
            Envelope::Cloud(types) => {
                let selector = types
                    .iter()
                    .find(|t| t.object_type_id == object_type_id)
                    .map_or(object_type_id, |t| t.selector.as_str());
                body.push_str(",\"data\":{");
                body.push_str(&serde_json::to_string(selector).expect("a string serializes"));
                body.push_str(":[");
            }
        }
    }

    /// Length of the prefix for chunk number `id`.
    fn prefix_len(&self, id_prefix: &str, id: u64, object_type_id: &str) -> usize {
        let mut body = String::new();
        self.write_prefix(&mut body, id_prefix, id, object_type_id);
        body.len()
    }
}

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
    /// Chunk numbers used so far; the next chunk opened takes `opened + 1`.
    opened: u64,
    /// The body's shape.
    envelope: Envelope,
}

#[derive(Debug)]
struct OpenChunk {
    object_type_id: String,
    /// The body so far, without its closing (`]}`, `]}}`); empty until it
    /// is started.
    body: String,
    count: usize,
    /// The number in its `clientGeneratedId`, once started.
    id: u64,
    /// A number to start with instead of a new one (a resumed run reopens
    /// the chunk it had open, so a re-sent chunk keeps its id).
    reserved: Option<u64>,
    first: Mark,
    first_id: String,
    last: Mark,
}

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
            envelope: Envelope::Seed,
        }
    }

    /// The same chunker writing bodies in `envelope`'s shape.
    pub fn with_envelope(mut self, envelope: Envelope) -> Chunker {
        self.envelope = envelope;
        self
    }

    /// A chunker that goes on where a checkpoint left off: `opened` chunk
    /// numbers are used, and each of `reopen`'s object types starts again
    /// with the chunk number it had open.
    pub fn resume(
        limits: ChunkLimits,
        id_prefix: impl Into<String>,
        opened: u64,
        reopen: impl IntoIterator<Item = (String, u64)>,
    ) -> Chunker {
        let mut chunker = Chunker::new(limits, id_prefix);
        chunker.opened = opened;
        for (object_type_id, id) in reopen {
            let mut chunk = OpenChunk::new(&object_type_id);
            chunk.reserved = Some(id);
            chunker.open.push(chunk);
        }
        chunker
    }

    /// Chunk numbers used so far.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// The open chunks that hold objects not yet sent.
    pub fn pending(&self) -> impl Iterator<Item = Pending<'_>> {
        self.open.iter().filter(|c| c.count > 0).map(|c| Pending {
            object_type_id: &c.object_type_id,
            id: c.id,
            first: c.first,
            first_id: &c.first_id,
        })
    }

    /// Adds one object of type `object_type_id`, found at `mark` in the
    /// stream. Returns the chunk it closed, if the object did not fit in its
    /// type's open chunk. A refused object leaves the chunker as it was.
    pub fn push(
        &mut self,
        object_type_id: &str,
        object: &AssetObject,
        mark: Mark,
    ) -> Result<Option<Chunk>, InvalidData> {
        if object_type_id.is_empty() {
            return Err(InvalidData::EmptyObjectType);
        }
        if object.external_id.is_empty() {
            return Err(InvalidData::EmptyExternalId {
                object_type_id: object_type_id.to_owned(),
                label: object.label.clone(),
            });
        }
        self.envelope.check(object_type_id, object)?;

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
        let max_bytes = self.limits.max_bytes;
        let too_large = |bytes: usize| InvalidData::ObjectTooLarge {
            external_id: object.external_id.clone(),
            bytes,
            limit: max_bytes,
        };
        let closing = self.envelope.closing().len();
        let chunk = &mut self.open[index];
        if chunk.count == 0 {
            // The object opens a chunk: it must fit alone, under the id that
            // chunk gets.
            let id = chunk.reserved.unwrap_or(self.opened + 1);
            let alone = self.envelope.prefix_len(&self.id_prefix, id, object_type_id) + json.len() + closing;
            if alone > max_bytes {
                return Err(too_large(alone));
            }
            if chunk.reserved.take().is_none() {
                self.opened += 1;
            }
            chunk.start(&self.envelope, &self.id_prefix, id);
            chunk.append(json, mark, &object.external_id);
            return Ok(None);
        }
        let fits = chunk.count < self.limits.max_objects && chunk.body.len() + 1 + json.len() + closing <= max_bytes;
        if fits {
            chunk.append(json, mark, &object.external_id);
            return Ok(None);
        }
        // Close this chunk and open the next: the object must fit alone under
        // the next id, which may be a digit longer than this one.
        let id = self.opened + 1;
        let alone = self.envelope.prefix_len(&self.id_prefix, id, object_type_id) + json.len() + closing;
        if alone > max_bytes {
            return Err(too_large(alone));
        }
        let closed = chunk.take(self.envelope.closing());
        self.opened = id;
        chunk.start(&self.envelope, &self.id_prefix, id);
        chunk.append(json, mark, &object.external_id);
        Ok(closed)
    }

    /// The same objects as `chunk`, under the next unused chunk number: for a
    /// chunk whose id the API already holds with other content (an earlier
    /// delivery sent that number before the settings or the source
    /// changed). A chunk id names one content for ever, so different
    /// content takes a new one. Refused, with the chunker unchanged, when
    /// the longer id would take the body over `max_bytes`.
    pub fn renumber(&mut self, chunk: Chunk) -> Result<Chunk, InvalidData> {
        let id = self.opened + 1;
        let old_prefix = self
            .envelope
            .prefix_len(&self.id_prefix, chunk.id, &chunk.object_type_id);
        let mut body = String::with_capacity(chunk.body.len() + 4);
        self.envelope
            .write_prefix(&mut body, &self.id_prefix, id, &chunk.object_type_id);
        body.push_str(&chunk.body[old_prefix..]);
        if body.len() > self.limits.max_bytes {
            return Err(InvalidData::RenumberedTooLarge {
                chunk: chunk.id,
                bytes: body.len(),
                limit: self.limits.max_bytes,
            });
        }
        self.opened = id;
        Ok(Chunk { body, id, ..chunk })
    }

    /// Closes and returns the first open chunk that holds an object, leaving
    /// the others open.
    pub fn close_next(&mut self) -> Option<Chunk> {
        let closing = self.envelope.closing();
        self.open.iter_mut().find(|c| c.count > 0).and_then(|c| c.take(closing))
    }

    /// Closes and returns every open chunk that holds an object, in the order
    /// their object types first appeared.
    pub fn finish(&mut self) -> Vec<Chunk> {
        let closing = self.envelope.closing();
        self.open.drain(..).filter_map(|mut c| c.take(closing)).collect()
    }
}

impl OpenChunk {
    fn new(object_type_id: &str) -> OpenChunk {
        OpenChunk {
            object_type_id: object_type_id.to_owned(),
            body: String::new(),
            count: 0,
            id: 0,
            reserved: None,
            first: (0, 0),
            first_id: String::new(),
            last: (0, 0),
        }
    }

    /// Begins the body of chunk number `id`.
    fn start(&mut self, envelope: &Envelope, id_prefix: &str, id: u64) {
        self.body.clear();
        envelope.write_prefix(&mut self.body, id_prefix, id, &self.object_type_id);
        self.id = id;
    }

    fn append(&mut self, json: &str, mark: Mark, external_id: &str) {
        if self.count > 0 {
            self.body.push(',');
        } else {
            self.first = mark;
            self.first_id.clear();
            self.first_id.push_str(external_id);
        }
        self.body.push_str(json);
        self.count += 1;
        self.last = mark;
    }

    /// The finished chunk, leaving this one empty and ready for more.
    fn take(&mut self, closing: &str) -> Option<Chunk> {
        if self.count == 0 {
            return None;
        }
        let capacity = self.body.capacity();
        let mut body = std::mem::replace(&mut self.body, String::with_capacity(capacity));
        body.push_str(closing);
        let chunk = Chunk {
            object_type_id: self.object_type_id.clone(),
            objects: self.count,
            body,
            last: self.last,
            id: self.id,
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
        for (i, (t, o)) in items.iter().enumerate() {
            chunks.extend(chunker.push(t, o, (1, i as u32)).unwrap());
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
    fn a_renumbered_chunk_holds_the_same_objects_under_the_next_unused_id() {
        let limits = ChunkLimits {
            max_objects: 3,
            max_bytes: 1 << 20,
        };
        let mut chunker = Chunker::new(limits, "exec-");
        let mut closed = Vec::new();
        for i in 0..7 {
            closed.extend(chunker.push("t", &object(i, 4), (1, i as u32)).unwrap());
        }
        let first = closed.remove(0);
        assert_eq!((first.id, chunker.opened()), (1, 3));
        let renumbered = chunker.renumber(first.clone()).unwrap();
        assert_eq!(
            (renumbered.id, chunker.opened()),
            (4, 4),
            "the next unused number, now used"
        );
        let (old, new): (Value, Value) = (
            serde_json::from_str(&first.body).unwrap(),
            serde_json::from_str(&renumbered.body).unwrap(),
        );
        assert_eq!(new["clientGeneratedId"], "exec-4");
        assert_eq!(
            (new["objects"].clone(), new["objectTypeId"].clone()),
            (old["objects"].clone(), old["objectTypeId"].clone())
        );
        assert_eq!((renumbered.objects, renumbered.last), (first.objects, first.last));
        // The chunk still open goes on under a number of its own.
        let rest = chunker.finish();
        assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn a_renumbered_chunk_that_would_pass_the_byte_limit_is_refused() {
        let one = object(0, 10);
        let mut probe = Chunker::new(
            ChunkLimits {
                max_objects: 1,
                max_bytes: 1 << 20,
            },
            "e-",
        );
        probe.push("t", &one, (1, 0)).unwrap();
        let exact = probe.finish().remove(0).body.len();
        // Room for the object under a one-digit id, not a two-digit one.
        let limits = ChunkLimits {
            max_objects: 1,
            max_bytes: exact,
        };
        // Nine numbers used; chunk 1 reopened, so the next new one is 10.
        let mut chunker = Chunker::resume(limits, "e-", 9, [("t".to_owned(), 1)]);
        chunker.push("t", &one, (1, 0)).unwrap();
        let chunk = chunker.finish().remove(0);
        assert_eq!((chunk.id, chunk.body.len()), (1, exact));
        let mut chunker = Chunker::resume(limits, "e-", 9, []);
        match chunker.renumber(chunk) {
            Err(InvalidData::RenumberedTooLarge { chunk: 1, bytes, limit }) => {
                assert_eq!((bytes, limit), (exact + 1, exact))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(chunker.opened(), 9, "a refused renumbering uses no number");
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
        let err = chunker.push("t", &object(7, 1000), (1, 0)).unwrap_err();
        assert!(matches!(err, InvalidData::ObjectTooLarge { ref external_id, .. } if external_id == "asset-7"));
        assert!(err.to_string().contains("chunk-max-bytes"));
    }

    #[test]
    fn empty_ids_are_refused() {
        let mut chunker = Chunker::new(ChunkLimits::default(), "c-");
        assert_eq!(
            chunker.push("", &object(1, 1), (1, 0)),
            Err(InvalidData::EmptyObjectType)
        );
        let mut nameless = object(1, 1);
        nameless.external_id.clear();
        assert!(matches!(
            chunker.push("t", &nameless, (1, 0)),
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

    #[test]
    fn a_chunk_never_passes_the_byte_limit_when_its_id_gains_a_digit() {
        // Chunk 9 is exactly at the limit; chunk 10's id is one byte longer,
        // so the same object no longer fits (it used to go out at 109 bytes).
        let o = object(1, 0);
        let mut probe = Chunker::new(
            ChunkLimits {
                max_objects: 1,
                max_bytes: 1 << 20,
            },
            "c-",
        );
        probe.push("t", &o, (1, 0)).unwrap();
        let at_nine = probe.finish()[0].body.len();
        let limits = ChunkLimits {
            max_objects: 1,
            max_bytes: at_nine,
        };
        let mut chunker = Chunker::new(limits, "c-");
        let mut sent = Vec::new();
        let mut refused = None;
        for i in 0..12 {
            match chunker.push("t", &o, (1, i)) {
                Ok(closed) => sent.extend(closed),
                Err(e) => {
                    refused = Some((i, e));
                    break;
                }
            }
        }
        sent.extend(chunker.finish());
        assert!(sent.iter().all(|c| c.body.len() <= at_nine));
        let (i, e) = refused.expect("the tenth chunk cannot hold the object");
        assert_eq!(i, 9, "objects 0..9 went out in chunks c-1..c-9");
        assert_eq!(
            e,
            InvalidData::ObjectTooLarge {
                external_id: "asset-1".into(),
                bytes: at_nine + 1,
                limit: at_nine
            }
        );
    }

    #[test]
    fn a_resumed_chunker_reopens_its_chunk_under_the_same_id() {
        let limits = ChunkLimits {
            max_objects: 2,
            max_bytes: 1 << 20,
        };
        let mut chunker = Chunker::resume(limits, "e-", 7, [("t".to_owned(), 5)]);
        assert_eq!(chunker.push("t", &object(1, 1), (3, 0)).unwrap(), None);
        assert_eq!(
            chunker.pending().next().unwrap(),
            Pending {
                object_type_id: "t",
                id: 5,
                first: (3, 0),
                first_id: "asset-1",
            }
        );
        chunker.push("t", &object(2, 1), (3, 1)).unwrap();
        let closed = chunker.push("t", &object(3, 1), (3, 2)).unwrap().unwrap();
        assert!(closed.body.contains("\"e-5\""));
        assert_eq!(closed.last, (3, 1));
        assert_eq!(chunker.opened(), 8, "the next chunk took the next unused number");
    }

    #[test]
    fn the_byte_limit_counts_the_whole_body_closing_included() {
        let limits = |max_bytes| ChunkLimits {
            max_objects: 10,
            max_bytes,
        };
        let (a, b) = (object(1, 3), object(2, 3));
        let one = chunk_all(limits(1 << 20), &[("t", a.clone())]).remove(0).body.len();
        let two = chunk_all(limits(1 << 20), &[("t", a.clone()), ("t", b.clone())])
            .remove(0)
            .body
            .len();
        // An object that opens a chunk: a body of exactly the limit goes out,
        // one byte more is refused.
        let alone = chunk_all(limits(one), &[("t", a.clone())]);
        assert_eq!(alone.iter().map(|c| c.body.len()).collect::<Vec<_>>(), vec![one]);
        assert_eq!(
            Chunker::new(limits(one - 1), "c-").push("t", &a, (1, 0)),
            Err(InvalidData::ObjectTooLarge {
                external_id: "asset-1".into(),
                bytes: one,
                limit: one - 1,
            })
        );
        // An object added to an open chunk: it joins when the body, closed,
        // is exactly the limit, and opens the next chunk when one byte over.
        let full = chunk_all(limits(two), &[("t", a.clone()), ("t", b.clone())]);
        assert_eq!(
            full.iter().map(|c| (c.objects, c.body.len())).collect::<Vec<_>>(),
            vec![(2, two)]
        );
        let split = chunk_all(limits(two - 1), &[("t", a), ("t", b)]);
        assert_eq!(split.iter().map(|c| c.objects).collect::<Vec<_>>(), vec![1, 1]);
        assert!(split.iter().all(|c| c.body.len() < two));
    }

    #[test]
    fn the_cloud_dialect_refuses_objects_its_mapping_does_not_place() {
        let envelope = Envelope::Cloud(vec![CloudType {
            object_type_id: "laptop".into(),
            selector: "laptops".into(),
            keys: vec!["serial".into(), "tags".into()],
        }]);
        let mut chunker = Chunker::new(ChunkLimits::default(), "c-").with_envelope(envelope);
        chunker.push("laptop", &object(1, 2), (1, 0)).unwrap();
        // A type without a selector would have nowhere to go.
        assert_eq!(
            chunker.push("phone", &object(2, 2), (1, 1)),
            Err(InvalidData::TypeNotMapped {
                object_type_id: "phone".into()
            })
        );
        // An attribute without a locator would be dropped by the API.
        let mut extra = object(3, 2);
        extra.attributes.push(("owner".into(), vec!["ann".into()]));
        assert_eq!(
            chunker.push("laptop", &extra, (1, 2)),
            Err(InvalidData::AttributeNotMapped {
                object_type_id: "laptop".into(),
                key: "owner".into()
            })
        );
        // Refused objects left the chunker as it was: one chunk, the mapped object.
        let chunks = chunker.finish();
        assert_eq!(chunks.len(), 1);
        let body: Value = serde_json::from_str(&chunks[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "clientGeneratedId": "c-1",
                "data": {"laptops": [{
                    "externalId": "asset-1",
                    "label": "Asset 1",
                    "attributes": {"serial": ["xx"], "tags": ["a", "b"]}
                }]}
            })
        );
    }

    #[test]
    fn a_renumbered_chunk_exactly_at_the_byte_limit_is_sent() {
        let one = object(0, 10);
        let exact = chunk_all(
            ChunkLimits {
                max_objects: 1,
                max_bytes: 1 << 20,
            },
            &[("t", one.clone())],
        )
        .remove(0)
        .body
        .len();
        // Room for the object under a two-digit id, with not a byte to spare.
        let limits = ChunkLimits {
            max_objects: 1,
            max_bytes: exact + 1,
        };
        let mut chunker = Chunker::resume(limits, "c-", 9, [("t".to_owned(), 1)]);
        chunker.push("t", &one, (1, 0)).unwrap();
        let chunk = chunker.finish().remove(0);
        let renumbered = chunker.renumber(chunk).unwrap();
        assert_eq!((renumbered.id, renumbered.body.len()), (10, exact + 1));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            // ASCII, characters JSON escapes, and multi-byte text.
            proptest::string::string_regex("[a-z0-9 \"\\\n\u{e9}\u{65e5}\u{1f600}]{0,40}").unwrap()
        }

        fn item() -> impl Strategy<Value = (u8, AssetObject)> {
            (
                0u8..3,
                text(),
                proptest::collection::vec((text(), proptest::collection::vec(text(), 0..3)), 0..3),
            )
                .prop_map(|(t, label, attributes)| {
                    (
                        t,
                        AssetObject {
                            external_id: String::new(),
                            label,
                            attributes,
                        },
                    )
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            /// Every body fits the byte and object limits, and every object
            /// goes out exactly once, in order within its type; an object is
            /// refused only when it could not fit in a chunk of its own.
            #[test]
            fn every_chunk_fits_and_every_object_goes_out_once(
                items in proptest::collection::vec(item(), 0..120),
                max_bytes in 90usize..1500,
                max_objects in 1usize..12,
            ) {
                let limits = ChunkLimits { max_objects, max_bytes };
                let mut chunker = Chunker::new(limits, "exec-");
                let mut chunks = Vec::new();
                let mut pushed: Vec<(String, String)> = Vec::new();
                for (i, (t, mut o)) in items.into_iter().enumerate() {
                    o.external_id = format!("id-{i}");
                    let object_type = format!("type-{t}");
                    match chunker.push(&object_type, &o, (1, i as u32)) {
                        Ok(closed) => {
                            chunks.extend(closed);
                            pushed.push((object_type, o.external_id));
                        }
                        Err(InvalidData::ObjectTooLarge { bytes, limit, .. }) => {
                            prop_assert!(bytes > limit);
                            break;
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                chunks.extend(chunker.finish());
                let mut sent: Vec<(String, String)> = Vec::new();
                let mut ids = std::collections::HashSet::new();
                for c in &chunks {
                    prop_assert!(c.body.len() <= max_bytes, "a {}-byte body over {}", c.body.len(), max_bytes);
                    prop_assert!(c.objects >= 1 && c.objects <= max_objects);
                    let body: Value = serde_json::from_str(&c.body).unwrap();
                    prop_assert!(ids.insert(body["clientGeneratedId"].as_str().unwrap().to_owned()));
                    for o in body["objects"].as_array().unwrap() {
                        sent.push((c.object_type_id.clone(), o["externalId"].as_str().unwrap().to_owned()));
                    }
                }
                for t in 0..3 {
                    let of = |list: &[(String, String)]| -> Vec<String> {
                        list.iter().filter(|(ty, _)| *ty == format!("type-{t}")).map(|(_, id)| id.clone()).collect()
                    };
                    prop_assert_eq!(of(&sent), of(&pushed));
                }
            }
        }
    }
}
