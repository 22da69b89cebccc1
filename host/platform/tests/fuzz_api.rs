//! Arbitrary methods, paths, queries and bodies at every mock endpoint: each
//! answer is a 2xx or 4xx with a JSON body (none for HEAD), never a 5xx or a
//! panic; every 405 says in `Allow` what the path takes, and HEAD is
//! answered as GET is.
//!
//! (The in-process router takes no headers; header handling arrives with
//! the HTTP server.)

use assets_platform::assets::{AssetsService, Response, SourceType};
use assets_platform::clock::SystemClock;
use proptest::prelude::*;
use std::sync::Arc;

fn service() -> (AssetsService, String, String, String) {
    let service = AssetsService::new(Arc::new(SystemClock));
    let ws = service.create_workspace();
    let src = service.create_import_source(&ws, SourceType::External, None).unwrap();
    let created = service.handle(
        "POST",
        &format!("/jsm/assets/workspace/{ws}/v1/importsource/{src}/executions"),
        b"{}",
    );
    let body: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    let exec = body["links"]["submitResults"]
        .as_str()
        .unwrap()
        .trim_end_matches("/data")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    (service, ws, src, exec)
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("executions".to_owned()),
        Just("data".to_owned()),
        Just("history".to_owned()),
        Just("completed".to_owned()),
        Just("failed".to_owned()),
        Just("status".to_owned()),
        Just("importschedule".to_owned()),
        Just("{exec}".to_owned()),
        "[a-zA-Z0-9%._~-]{0,12}",
        ".{0,8}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"{}".to_vec()),
        Just(br#"{"scheduled":true}"#.to_vec()),
        Just(br#"{"objectTypeId":"t","objects":[{"externalId":"a","label":"A","attributes":{"k":["v"]}}]}"#.to_vec()),
        Just(br#"{"failureReason":"x"}"#.to_vec()),
        Just(br#"{"runFrequency":"DAILY","startTime":"2026-01-01T00:00:00Z","timezone":"UTC","callbackUrl":"https://a.b/c"}"#.to_vec()),
        "\\PC{0,64}".prop_map(|s| s.into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        (any::<i64>(), "\\PC{0,10}", any::<bool>()).prop_map(|(n, s, b)| {
            serde_json::json!({"scheduled": b, "objectTypeId": n, "objects": s, "failureReason": [s], "runFrequency": n, "isActive": s})
                .to_string()
                .into_bytes()
        }),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("?limit=1".to_owned()),
        Just("?async=true".to_owned()),
        "\\?[a-z0-9=&%]{0,16}",
    ]
}

fn allow(r: &Response) -> Option<&str> {
    r.headers.iter().find(|(n, _)| n == "allow").map(|(_, v)| v.as_str())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_is_2xx_or_4xx_with_a_json_body(
        method in prop_oneof![
            Just("GET".to_owned()),
            Just("POST".to_owned()),
            Just("PUT".to_owned()),
            Just("DELETE".to_owned()),
            Just("HEAD".to_owned()),
            Just("PATCH".to_owned()),
            "[A-Za-z]{0,7}",
        ],
        tail in prop::collection::vec(segment(), 0..5),
        prefix in prop_oneof![Just(true), Just(true), Just(false)],
        query in query(),
        body in body(),
    ) {
        let (service, ws, src, exec) = service();
        let tail = tail.join("/").replace("{exec}", &exec);
        let path = if prefix {
            format!("/jsm/assets/workspace/{ws}/v1/importsource/{src}/{tail}{query}")
        } else {
            format!("/{tail}{query}")
        };
        // GET and HEAD change nothing: ask both first, to compare.
        let get = service.handle("GET", &path, &body);
        let head = service.handle("HEAD", &path, &body);
        prop_assert_eq!((head.status, &head.headers), (get.status, &get.headers), "HEAD {} is not answered as GET", path);
        prop_assert_eq!(&head.body, "", "HEAD {} has a body", path);

        let response = service.handle(&method, &path, &body);
        prop_assert!((200..500).contains(&response.status), "{method} {path}: {}", response.status);
        if method != "HEAD" {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&response.body);
            prop_assert!(parsed.is_ok(), "{method} {path}: body is not JSON: {:?}", response.body);
        }
        if response.status == 405 {
            let allowed = allow(&response);
            prop_assert!(allowed.is_some_and(|a| !a.is_empty()), "{method} {path}: 405 without Allow");
            let allowed = allowed.unwrap_or_default().to_owned();
            prop_assert!(!allowed.split(", ").any(|m| m.eq_ignore_ascii_case(&method)), "{method} {path}: Allow {allowed:?} lists it");
            // What Allow lists is taken (answered, if not always with a 2xx).
            for m in allowed.split(", ") {
                let r = service.handle(m, &path, &body);
                prop_assert!(r.status != 405, "{m} {path}: in Allow {allowed:?}, yet 405");
            }
        }
    }
}
