//! What one import source's token (or an app) could do to the whole server
//! with bodies the mock took: freeze it with a mapping upload, grow its
//! memory and disk with chunk ids or huge objects, and have JSON arrays read
//! as objects. Each is refused now, with a 4xx naming the problem.

use assets_platform::assets::mapping;
use assets_platform::assets::Quotas;
use serde_json::{json, Value};

mod common;
use common::{assert_limit_exceeded, Api};

fn assert_field(answer: (u16, Value), field: &str) -> String {
    let (status, body) = answer;
    assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{body}");
    body["message"].as_str().unwrap().to_owned()
}

const REAL_MAPPING: &str = include_str!("../real-api/mapping-configuration.json");

/// A schema-and-mapping document the JSON Schema and the consistency check
/// accept: `types` object types of `attributes` attributes each (the first
/// the label, the second the external id part), every attribute mapped.
fn big_mapping(types: usize, attributes: usize) -> Value {
    let object_types: Vec<Value> = (0..types)
        .map(|t| {
            let declared: Vec<Value> = (0..attributes)
                .map(|a| {
                    json!({"externalId": format!("t{t}-a{a}"), "name": format!("Attr {a}"),
                           "description": "", "type": "text", "label": a == 0})
                })
                .collect();
            json!({"externalId": format!("t{t}"), "name": format!("Type {t}"), "description": "",
                   "attributes": declared})
        })
        .collect();
    let mappings: Vec<Value> = (0..types)
        .map(|t| {
            let mapped: Vec<Value> = (0..attributes)
                .map(|a| {
                    json!({"attributeExternalId": format!("t{t}-a{a}"), "attributeName": format!("Attr {a}"),
                           "attributeLocators": [format!("f{a}")], "externalIdPart": a == 1})
                })
                .collect();
            json!({"objectTypeExternalId": format!("t{t}"), "objectTypeName": format!("Type {t}"),
                   "selector": format!("s{t}"), "description": "", "attributesMapping": mapped})
        })
        .collect();
    json!({
        "schema": {"objectSchema": {"name": "Big", "description": "", "objectTypes": object_types}},
        "mapping": {"objectTypeMappings": mappings},
    })
}

// ---------------------------------------------------------------------------
// 1. A mapping upload froze the whole server.

/// 60,000 attributes took 61 s under the state lock, and 20,000 object
/// types 10.9 s: each was looked up by a linear search of the declared
/// ones. The check is linear now (`mapping`'s own test counts its steps);
/// documents this large are accepted.
#[test]
fn documents_of_20000_attributes_or_object_types_are_accepted() {
    for document in [big_mapping(1, 20_000), big_mapping(20_000, 2)] {
        mapping::check(&document).expect("a valid document");
    }
}

/// A big PUT, and a PATCH, are checked with the state lock free: `check`
/// asserts it (debug builds, as tests run), so a request that checked under
/// the lock would fail here, however fast or slow the machine.
#[test]
fn a_mapping_is_checked_with_the_state_lock_free() {
    let api = Api::new(Quotas {
        mapping_bytes: 64 << 20,
        ..Quotas::default()
    });
    let document = big_mapping(1, 5_000);
    let answer = api.call("PUT", "/mapping", &document.to_string());
    assert_eq!(answer.status, 200, "{}", answer.body);
    let patch = json!({ "mapping": document["mapping"] }).to_string();
    let answer = api.call("PATCH", "/mapping", &patch);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!assets_platform::assets::holding_state_lock(), "no guard left behind");
}

/// The assertion the test above relies on does fire under the lock.
#[test]
#[should_panic(expected = "checked with the state lock held")]
fn checking_a_mapping_under_the_state_lock_is_caught() {
    let api = Api::new(Quotas::default());
    let _held = api.service.state();
    let _ = mapping::check(&big_mapping(1, 2));
}

/// A PATCH is merged and checked outside the lock; when the document
/// changes meanwhile, storing the merge would undo that change, so the
/// PATCH is refused with 409 and the other change stays. The other change
/// is made exactly in that window, through the service's seam, not by a
/// writer racing the check.
#[test]
fn a_patch_whose_document_changed_while_it_was_checked_is_a_409() {
    let api = Api::new(Quotas::default());
    assert_eq!(api.call("PUT", "/mapping", REAL_MAPPING).status, 200);
    let changed = big_mapping(1, 3);
    let (put_path, put_body) = (format!("{}/mapping", api.base), changed.to_string());
    let (tx, put_status) = std::sync::mpsc::channel();
    api.service.after_next_mapping_check(move |service| {
        let _ = tx.send(service.handle("PUT", &put_path, put_body.as_bytes()).status);
    });
    let (status, body) = api.json("PATCH", "/mapping", &big_mapping(1, 2).to_string());
    assert_eq!(
        put_status.try_recv(),
        Ok(200),
        "the other change landed in the window: {body}"
    );
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (409, Some("MAPPING_CHANGED")),
        "{body}"
    );
    let (_, stored) = api.json("GET", "/schema-and-mapping", "");
    assert_eq!(stored, changed, "the other change stays");
}

#[test]
fn a_mapping_document_over_mapping_bytes_is_a_413_naming_the_quota() {
    assert_eq!(Quotas::default().mapping_bytes, 1 << 20);
    let limit = REAL_MAPPING.len();
    let api = Api::new(Quotas {
        mapping_bytes: limit,
        ..Quotas::default()
    });
    assert_eq!(api.call("PUT", "/mapping", REAL_MAPPING).status, 200, "at the limit");
    let over = format!("{REAL_MAPPING} ");
    for method in ["PUT", "PATCH"] {
        assert_limit_exceeded(
            api.json(method, "/mapping", &over),
            &["mapping_bytes", &limit.to_string(), &(limit + 1).to_string()],
        );
    }
    // The default refuses the 6 MB document that froze the server.
    let api = Api::new(Quotas::default());
    let huge = big_mapping(1, 60_000).to_string();
    assert!(huge.len() > 1 << 20);
    assert_limit_exceeded(api.json("PUT", "/mapping", &huge), &["mapping_bytes"]);
}

// ---------------------------------------------------------------------------
// 2. `clientGeneratedId` had no limit.

#[test]
fn a_client_generated_id_over_256_bytes_is_a_400_naming_it_in_both_dialects() {
    let api = Api::new(Quotas::default());
    assert_eq!(api.call("PUT", "/mapping", REAL_MAPPING).status, 200);
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    let seed = |id: &str| json!({"clientGeneratedId": id, "objectTypeId": "laptop", "objects": []}).to_string();
    let real = |id: &str| json!({"clientGeneratedId": id, "data": {"products": []}}).to_string();
    for (chunk, letter) in [(seed as fn(&str) -> String, "x"), (real, "w")] {
        let at = letter.repeat(256);
        let (status, body) = api.json("POST", &data, &chunk(&at));
        assert_eq!(status, 200, "256 bytes: {body}");
        // Bytes, not characters: 128 two-byte characters and one more byte.
        let over = format!("{}y", "é".repeat(128));
        let message = assert_field(api.json("POST", &data, &chunk(&over)), "clientGeneratedId");
        assert!(message.contains("256"), "{message}");
        let huge = "z".repeat(4 << 20);
        assert_field(api.json("POST", &data, &chunk(&huge)), "clientGeneratedId");
    }
    assert_eq!(api.status(&execution)["chunks"], 2, "only the two within the bound");
}

/// 100 empty chunks with a 4 MB id each took the server from 127 to 551 MB.
#[test]
fn an_execution_accepts_at_most_chunks_per_execution_chunks_empty_ones_included() {
    assert_eq!(Quotas::default().chunks_per_execution, 100_000);
    let api = Api::new(Quotas {
        chunks_per_execution: 3,
        ..Quotas::default()
    });
    assert_eq!(api.call("PUT", "/mapping", REAL_MAPPING).status, 200);
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    let empty = |id: &str| json!({"clientGeneratedId": id, "objectTypeId": "laptop", "objects": []}).to_string();
    assert_eq!(api.call("POST", &data, &empty("c1")).status, 200);
    assert_eq!(
        api.call("POST", &data, r#"{"objectTypeId":"laptop","objects":[]}"#)
            .status,
        200
    );
    assert_eq!(
        api.call(
            "POST",
            &data,
            &json!({"clientGeneratedId": "c3", "data": {"products": []}}).to_string()
        )
        .status,
        200
    );
    for chunk in [
        empty("c4"),
        r#"{"objectTypeId":"laptop","objects":[{"externalId":"a","label":"A"}]}"#.to_owned(),
        json!({"clientGeneratedId": "c5", "data": {"products": [{"id": 1, "title": "x"}]}}).to_string(),
    ] {
        assert_limit_exceeded(api.json("POST", &data, &chunk), &["chunks_per_execution", "3"]);
    }
    // A chunk already accepted is still acknowledged, and stores nothing.
    let (status, body) = api.json("POST", &data, &empty("c1"));
    assert_eq!((status, &body["objectsAccepted"]), (200, &json!(0)), "{body}");
    let status = api.status(&execution);
    assert_eq!((&status["status"], &status["chunks"]), (&json!("INGESTING"), &json!(3)));
    let (completed, body) = api.json("POST", &data, r#"{"completed":true}"#);
    assert_eq!(completed, 200, "the execution can still complete: {body}");
}

// ---------------------------------------------------------------------------
// 4. Bytes per execution were unbounded.

/// A seed-form chunk of `n` objects `{prefix}-{i}`, each with a label of
/// `label` bytes.
fn sized_chunk(prefix: &str, n: usize, label: usize) -> String {
    let objects: Vec<Value> = (0..n)
        .map(|i| json!({"externalId": format!("{prefix}-{i}"), "label": "l".repeat(label)}))
        .collect();
    json!({"objectTypeId": "laptop", "objects": objects}).to_string()
}

#[test]
fn a_chunk_that_would_take_an_execution_over_execution_bytes_is_refused_whole() {
    assert_eq!(Quotas::default().execution_bytes, 1 << 30);
    let api = Api::new(Quotas {
        execution_bytes: 1000,
        ..Quotas::default()
    });
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    // Each object: "a-0" (3 bytes) + a 97-byte label = 100 bytes.
    assert_eq!(api.json("POST", &data, &sized_chunk("a", 6, 97)).0, 200);
    assert_limit_exceeded(
        api.json("POST", &data, &sized_chunk("b", 5, 97)),
        &["execution_bytes", "1000", "600", "500"],
    );
    let status = api.status(&execution);
    assert_eq!(
        (&status["objects"], &status["chunks"]),
        (&json!(6), &json!(1)),
        "{status}"
    );
    // Objects it holds, sent again larger, count by what they replace.
    assert_eq!(
        api.json("POST", &data, &sized_chunk("a", 6, 160)).0,
        200,
        "6 × 163 = 978"
    );
    assert_limit_exceeded(api.json("POST", &data, &sized_chunk("a", 6, 164)), &["execution_bytes"]);
    // Smaller again frees room for new ones.
    assert_eq!(api.json("POST", &data, &sized_chunk("a", 6, 47)).0, 200, "6 × 50 = 300");
    assert_eq!(api.json("POST", &data, &sized_chunk("b", 7, 97)).0, 200, "300 + 700");
    assert_limit_exceeded(api.json("POST", &data, &sized_chunk("c", 1, 0)), &["execution_bytes"]);
    let (completed, body) = api.json("POST", &format!("/executions/{execution}/history/completed"), "");
    assert_eq!(completed, 200, "{body}");
}

#[test]
fn the_execution_byte_quota_holds_for_real_form_chunks_and_counts_attributes() {
    let api = Api::new(Quotas {
        execution_bytes: 200,
        ..Quotas::default()
    });
    assert_eq!(api.call("PUT", "/mapping", REAL_MAPPING).status, 200);
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    // id "1" + label: the "Key" and "Name" attributes hold them again.
    let product = |id: u32, title: &str| json!({"data": {"products": [{"id": id, "title": title}]}}).to_string();
    let title = "t".repeat(40);
    // 1 (external id) + 40 (label) + "Key" 3 + "1" 1 + "Name" 4 + 40 = 89.
    assert_eq!(api.json("POST", &data, &product(1, &title)).0, 200);
    assert_eq!(api.json("POST", &data, &product(2, &title)).0, 200, "178");
    assert_limit_exceeded(
        api.json("POST", &data, &product(3, &title)),
        &["execution_bytes", "178", "89"],
    );
}

#[test]
fn an_object_over_object_bytes_is_a_400_naming_it() {
    assert_eq!(Quotas::default().object_bytes, 1 << 20);
    let api = Api::new(Quotas::default());
    assert_eq!(api.call("PUT", "/mapping", REAL_MAPPING).status, 200);
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    let big = "b".repeat(1 << 20);
    let chunk = json!({"objectTypeId": "laptop", "objects": [
        {"externalId": "ok", "label": "fine"},
        {"externalId": "x", "label": big},
    ]});
    let message = assert_field(api.json("POST", &data, &chunk.to_string()), "objects[1]");
    assert!(message.contains("object_bytes"), "{message}");
    let chunk = json!({"data": {"products": [{"id": 1, "title": big}]}});
    assert_field(api.json("POST", &data, &chunk.to_string()), "data.products[0]");
    assert_eq!(api.status(&execution)["chunks"], 0, "nothing stored");
    // At the limit is fine: "y" + label = 1 MiB.
    let at = json!({"objectTypeId": "laptop", "objects": [{"externalId": "y", "label": "b".repeat((1 << 20) - 1)}]});
    assert_eq!(api.json("POST", &data, &at.to_string()).0, 200);
}

// ---------------------------------------------------------------------------
// 5. JSON arrays were read as objects.

#[test]
fn a_json_array_or_scalar_in_place_of_an_object_is_a_400_saying_so() {
    let api = Api::new(Quotas::default());
    let execution = api.start();
    let cases = [
        ("POST", "/executions".to_owned(), "[true]", "array"),
        (
            "POST",
            format!("/executions/{execution}/history/failed"),
            "[\"because\"]",
            "array",
        ),
        (
            "POST",
            "/importschedule".to_owned(),
            r#"["DAILY", "2030-01-01T00:00:00Z", "UTC", "http://example.com/cb"]"#,
            "array",
        ),
        (
            "POST",
            format!("/executions/{execution}/data"),
            r#"[null, "laptop", []]"#,
            "array",
        ),
        ("POST", format!("/executions/{execution}/data"), "  \"text\"", "string"),
        ("PUT", format!("/executions/{execution}/progress"), "[1]", "array"),
        ("PUT", format!("/executions/{execution}/progress"), "12", "number"),
        ("PUT", "/mapping".to_owned(), "[]", "array"),
        ("POST", "/executions".to_owned(), "true", "boolean"),
        ("POST", "/executions".to_owned(), "null", "null"),
    ];
    for (method, rest, body, kind) in cases {
        let (status, answer) = api.json(method, &rest, body);
        assert_eq!(
            (status, answer["errorCode"].as_str()),
            (400, Some("INVALID_BODY")),
            "{method} {rest} {body}: {answer}"
        );
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("JSON object") && message.contains(kind),
            "{method} {rest} {body}: {message}"
        );
    }
    // Nothing of it happened: no second execution, no failure, no schedule.
    let status = api.status(&execution);
    assert_eq!(
        (&status["status"], &status["chunks"]),
        (&json!("INGESTING"), &json!(0)),
        "{status}"
    );
    assert!(status["progress"].is_null(), "{status}");
    assert_eq!(
        api.service.history(api.base.rsplit('/').next().unwrap()).unwrap().len(),
        1
    );
    assert_eq!(api.json("GET", "/schedule", "").1["links"].get("schedule"), None);
}

/// `history/completed` took any body and completed the execution whatever
/// it said (`{"completed": false}` included): it takes none, or `{}`.
#[test]
fn completing_takes_no_body_or_an_empty_object_and_refuses_anything_else() {
    let api = Api::new(Quotas::default());
    for good in ["", "{}"] {
        let execution = api.start();
        let completed = format!("/executions/{execution}/history/completed");
        for bad in [r#"{"completed": false}"#, "[]", "not json", r#""done""#] {
            let (status, answer) = api.json("POST", &completed, bad);
            assert_eq!(status, 400, "{bad}: {answer}");
            assert_eq!(api.status(&execution)["status"], "INGESTING", "{bad}: not completed");
        }
        let (status, answer) = api.json("POST", &completed, good);
        assert_eq!(status, 200, "{good:?}: {answer}");
    }
}
