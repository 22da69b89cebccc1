//! The quotas that keep one caller (an app, or a holder of one source's
//! token) from growing the server's memory or disk without bound: the
//! progress an execution keeps, the objects it holds, and the bytes of one
//! history page.

use assets_platform::assets::{AssetsService, Quotas};
use assets_platform::clock::SystemClock;
use proptest::prelude::*;
use serde_json::{json, Value};

mod common;
use common::{assert_limit_exceeded, Api};
use std::sync::Arc;

/// A progress body of exactly `len` bytes (at least 10).
fn progress_body(len: usize) -> String {
    let pad = len - r#"{"pad":""}"#.len();
    format!(r#"{{"pad":"{}"}}"#, "p".repeat(pad))
}

/// A seed-form chunk of objects `a-{from}` to `a-{to - 1}`.
fn chunk(from: usize, to: usize) -> String {
    let objects: Vec<Value> = (from..to)
        .map(|i| json!({"externalId": format!("a-{i}"), "label": format!("A {i}")}))
        .collect();
    json!({"objectTypeId": "laptop", "objects": objects}).to_string()
}

#[test]
fn the_default_quotas_are_the_local_figures_and_a_service_keeps_the_ones_it_is_given() {
    let defaults = Quotas::default();
    assert_eq!(
        (
            defaults.progress_bytes,
            defaults.objects_per_execution,
            defaults.history_page_bytes
        ),
        (4096, 5_000_000, 1 << 20)
    );
    assert_eq!(AssetsService::new(Arc::new(SystemClock)).quotas(), defaults);
    let custom = Quotas {
        progress_bytes: 10,
        ..defaults
    };
    let service = AssetsService::new(Arc::new(SystemClock)).with_quotas(custom);
    assert_eq!(service.quotas(), custom);
}

/// Any JSON object up to the server's 16 MB body cap used to be kept in the
/// history for ever: 12 × 15 MB took the server from 34 to 326 MB.
#[test]
fn a_progress_body_one_byte_over_the_limit_is_refused_and_one_at_it_is_kept() {
    for limit in [Quotas::default().progress_bytes, 64] {
        let api = Api::new(Quotas {
            progress_bytes: limit,
            ..Quotas::default()
        });
        let execution = api.start();
        let progress = format!("/executions/{execution}/progress");
        let at = progress_body(limit);
        assert_eq!(api.call("PUT", &progress, &at).status, 200, "{limit}");
        let over = progress_body(limit + 1);
        assert_limit_exceeded(
            api.json("PUT", &progress, &over),
            &[&format!("{limit} bytes"), &format!("{}", limit + 1)],
        );
        let kept: Value = serde_json::from_str(&at).unwrap();
        assert_eq!(
            api.status(&execution)["progress"],
            kept,
            "nothing of the refused body is kept"
        );
    }
}

#[test]
fn an_execution_at_its_object_quota_refuses_the_next_chunk_whole_and_can_still_complete() {
    let api = Api::new(Quotas {
        objects_per_execution: 10,
        ..Quotas::default()
    });
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    assert_eq!(api.json("POST", &data, &chunk(0, 6)).1["objectsAccepted"], 6);
    // 6 held + 5 new = 11: refused whole, nothing of it stored.
    assert_limit_exceeded(api.json("POST", &data, &chunk(6, 11)), &["10", "6", "5"]);
    let status = api.status(&execution);
    assert_eq!(
        (&status["objects"], &status["objectsReceived"], &status["chunks"]),
        (&json!(6), &json!(6), &json!(1)),
        "{status}"
    );
    assert_eq!(api.json("POST", &data, &chunk(6, 10)).0, 200, "up to the quota");
    assert_limit_exceeded(api.json("POST", &data, &chunk(10, 11)), &["10"]);
    // Sending again objects it holds replaces them: nothing is added.
    assert_eq!(
        api.json("POST", &data, &chunk(0, 10)).0,
        200,
        "a re-sent chunk is within the quota"
    );
    let status = api.status(&execution);
    assert_eq!(
        (&status["status"], &status["objects"]),
        (&json!("INGESTING"), &json!(10))
    );
    let (completed, body) = api.json("POST", &format!("/executions/{execution}/history/completed"), "");
    assert_eq!(completed, 200, "{body}");
}

#[test]
fn the_object_quota_holds_for_real_form_chunks_too() {
    let api = Api::new(Quotas {
        objects_per_execution: 3,
        ..Quotas::default()
    });
    let mapping = include_str!("../real-api/mapping-configuration.json");
    assert_eq!(api.call("PUT", "/mapping", mapping).status, 200);
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    let products = |ids: &[u32]| {
        let records: Vec<Value> = ids
            .iter()
            .map(|i| json!({"id": i, "title": format!("Product {i}")}))
            .collect();
        json!({ "data": { "products": records } }).to_string()
    };
    let (status, body) = api.json("POST", &data, &products(&[1, 2]));
    assert_eq!((status, &body["objectsAccepted"]), (200, &json!(2)), "{body}");
    assert_limit_exceeded(api.json("POST", &data, &products(&[3, 4])), &["3", "2"]);
    assert_eq!(
        api.status(&execution)["objects"],
        2,
        "nothing of the refused chunk stored"
    );
    let (status, body) = api.json("POST", &data, &products(&[3]));
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.json("POST", &data, r#"{"completed":true}"#);
    assert_eq!(status, 200, "{body}");
}

/// A page of history read by following the `Link` header: its entries'
/// execution ids, its body's length and where the next page is.
fn read_page(api: &Api, rest: &str) -> (Vec<Value>, usize, Option<String>) {
    let r = api.call("GET", rest, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let entries: Vec<Value> = serde_json::from_str(&r.body).unwrap();
    let link = r.headers.iter().find(|(n, _)| n == "link").map(|(_, v)| {
        let url = v.trim_start_matches('<').split('>').next().unwrap();
        let path = url.trim_start_matches("http://assets.local");
        path.strip_prefix(api.base.as_str()).unwrap().to_owned()
    });
    let cursor = r.headers.iter().any(|(n, _)| n == "x-next-cursor");
    assert_eq!(link.is_some(), cursor, "Link and x-next-cursor come together");
    (entries, r.body.len(), link)
}

/// Executions that each report `progress` (bytes of body, or none) and are
/// cancelled; their ids in order.
fn history_of(api: &Api, progress: &[Option<usize>]) -> Vec<String> {
    let mut ids = Vec::new();
    for size in progress {
        let execution = api.start();
        if let Some(size) = size {
            let r = api.call(
                "PUT",
                &format!("/executions/{execution}/progress"),
                &progress_body(*size),
            );
            assert_eq!(r.status, 200, "{}", r.body);
        }
        assert_eq!(api.call("DELETE", &format!("/executions/{execution}"), "").status, 200);
        ids.push(execution);
    }
    ids
}

#[test]
fn history_pages_stay_within_history_page_bytes_and_paging_returns_every_entry_once() {
    let budget = 16 * 1024;
    let api = Api::new(Quotas {
        history_page_bytes: budget,
        ..Quotas::default()
    });
    let ids = history_of(&api, &[Some(4096); 20]);
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut next = Some("/history".to_owned());
    while let Some(rest) = next {
        let (entries, bytes, link) = read_page(&api, &rest);
        assert!(bytes <= budget, "page {pages} is {bytes} bytes");
        assert!(!entries.is_empty(), "page {pages} is empty");
        seen.extend(entries.iter().map(|e| e["executionId"].as_str().unwrap().to_owned()));
        pages += 1;
        next = link;
    }
    assert_eq!(seen, ids, "every entry once, in order");
    assert!(pages >= 5, "20 entries of over 4 KiB in 16 KiB pages: {pages} pages");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the entries' sizes, the page limit and the byte budget,
    /// following the pages gives the whole history in order; each page is
    /// within the budget unless its one entry alone is over it; and a page
    /// ends early only when the next entry would not fit.
    #[test]
    fn paging_yields_the_whole_history_in_order_each_page_within_budget(
        progress in prop::collection::vec(prop::option::of(10usize..700), 0..20),
        limit in 1usize..6,
        budget in 0usize..2500,
    ) {
        let api = Api::new(Quotas { history_page_bytes: budget, ..Quotas::default() });
        let ids = history_of(&api, &progress);
        let mut pages: Vec<(Vec<Value>, usize)> = Vec::new();
        let mut next = Some(format!("/history?limit={limit}"));
        while let Some(rest) = next {
            let (entries, bytes, link) = read_page(&api, &rest);
            prop_assert!(pages.len() <= ids.len() + 1, "more pages than entries");
            pages.push((entries, bytes));
            next = link;
        }
        let seen: Vec<String> = pages
            .iter()
            .flat_map(|(entries, _)| entries.iter().map(|e| e["executionId"].as_str().unwrap().to_owned()))
            .collect();
        prop_assert_eq!(&seen, &ids);
        for (i, (entries, bytes)) in pages.iter().enumerate() {
            prop_assert!(entries.len() <= limit);
            prop_assert!(*bytes <= budget || entries.len() <= 1, "page {} is {} bytes with {} entries", i, bytes, entries.len());
            // A JSON array's length, computed here: "[" + entries joined by
            // "," + "]". A page that ends before `limit` does so because
            // the next entry would take it over the budget.
            let written: usize = entries.iter().map(|e| e.to_string().len()).sum();
            prop_assert_eq!(*bytes, 2 + written + entries.len().saturating_sub(1));
            if let Some((following, _)) = pages.get(i + 1) {
                if entries.len() < limit {
                    let first = following[0].to_string().len();
                    prop_assert!(bytes + 1 + first > budget, "page {} stopped with room for the next entry", i);
                }
            }
        }
    }
}
