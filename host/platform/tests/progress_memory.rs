//! What a progress report costs in memory: `progress_bytes` bounds the body
//! as sent, and what is kept must be in proportion to it. A 4 KiB body of
//! `{"a":[0,0,0,…]}` kept as a parsed JSON value took about 69 KB.
//!
//! Memory is measured by this binary's allocator, per thread: the bytes a
//! call leaves allocated on the thread that made it (what it keeps), so
//! other tests running at the same time do not count.

use assets_platform::assets::{AssetsService, Quotas, SourceType};
use assets_platform::clock::SystemClock;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

/// The system allocator, counting this thread's live bytes.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread being torn down has no counter left, and
    // allocates nothing we measure.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

#[test]
fn a_progress_report_is_kept_in_about_the_bytes_it_was_sent_in() {
    let limit = Quotas::default().progress_bytes;
    let service = AssetsService::new(Arc::new(SystemClock));
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, None)
        .unwrap();
    let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
    let created = service.handle("POST", &format!("{base}/executions"), b"{}");
    let links: Value = serde_json::from_str(&created.body).unwrap();
    let execution = links["links"]["cancel"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let progress = format!("{base}/executions/{execution}/progress");

    // The worst case for a parsed value: as many values as the bytes allow.
    let zeros = (limit - r#"{"a":[]}"#.len()).div_ceil(2);
    let body = format!(r#"{{"a":[{}]}}"#, vec!["0"; zeros].join(","));
    assert!(body.len() <= limit, "{}", body.len());

    // A first report, so whatever the first one sets up once is not counted.
    assert_eq!(service.handle("PUT", &progress, b"{}").status, 200);
    let before = live();
    let answer = service.handle("PUT", &progress, body.as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.body);
    drop(answer);
    let kept = live() - before;
    assert!(
        kept <= 2 * body.len() as isize,
        "a progress body of {} bytes is kept in {kept} bytes",
        body.len()
    );

    // And it reads back as sent.
    let status = service.handle("GET", &format!("{base}/executions/{execution}/status"), b"");
    let status: Value = serde_json::from_str(&status.body).unwrap();
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["progress"], sent);
}

/// The history line is stored as its JSON (SQLite and PostgreSQL): a line
/// written before progress was kept as text reads back, and writes out,
/// the same, the progress as the JSON object it was.
#[test]
fn a_history_line_with_progress_reads_and_writes_as_before() {
    use assets_platform::assets::HistoryEntry;
    let stored = serde_json::json!({
        "executionId": "e1", "importSourceId": "s1", "scheduled": false, "scheduleId": null,
        "occurrenceId": null, "status": "running", "failureReason": null, "objects": 3,
        "startedAt": "2026-01-01T00:00:00Z", "endedAt": null,
        "progress": {"page": 7, "of": 1e3, "note": "ünïcode \"quoted\"", "nested": {"a": [1, 2.5, null, true]}},
    });
    let line: HistoryEntry = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(serde_json::to_value(&line).unwrap(), stored);
    let text = serde_json::to_string(&line).unwrap();
    let again: HistoryEntry = serde_json::from_str(&text).unwrap();
    assert_eq!(again, line, "what is written reads back equal");
    let without: HistoryEntry = serde_json::from_value({
        let mut v = stored.clone();
        v.as_object_mut().unwrap().remove("progress");
        v
    })
    .unwrap();
    assert_eq!(without.progress, None);
    assert!(!serde_json::to_string(&without).unwrap().contains("progress"));
}
