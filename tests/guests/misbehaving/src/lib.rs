//! A test importer that misbehaves on purpose, chosen by the app setting
//! `test-behaviour`:
//!
//! - `loop`: spins forever (the time limit must stop it);
//! - `allocate`: allocates without bound (the memory limit must stop it);
//! - `trap`: panics after creating an execution (the host must fail it);
//! - `wasi-sleep`: sleeps a day through WASI (`std::thread::sleep`, a clock
//!   subscription and `poll`), not the `timer` import, then spins (the time
//!   limit must cut the sleep, and then stop the spin);
//! - `count`: counts its invocations in a static and returns the count as
//!   `objects-sent` with execution id "count" (a fresh instance says 1; a
//!   reused one would say more);
//! - `probe`: calls everything the sandbox grants, looking for the Assets
//!   credential, and prints what it saw.
//!
//! Built for wasm32 only; natively it is empty.

#[cfg(target_arch = "wasm32")]
mod guest {
    wit_bindgen::generate!({ world: "importer", path: "../../../wit" });

    use assets::scheduled_import::{assets_api, config, outbound_http, storage};
    use exports::assets::scheduled_import::import_callback::{Guest, RunError, RunOutcome, RunReport, TriggerEvent};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Misbehaving;

    impl Guest for Misbehaving {
        fn on_trigger(event: TriggerEvent) -> Result<RunOutcome, RunError> {
            match config::get("test-behaviour").as_deref() {
                Some("loop") => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Some("allocate") => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 16 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                Some("wasi-sleep") => {
                    std::thread::sleep(std::time::Duration::from_secs(86_400));
                    // Only the time limit may end the invocation, whether
                    // the epoch deadline came before the sleep's end or not.
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Some("count") => {
                    // Global state that outlives a call: only a fresh
                    // instance starts it at 0 again.
                    static INVOCATIONS: AtomicU64 = AtomicU64::new(0);
                    let count = INVOCATIONS.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok(RunOutcome::Completed(RunReport {
                        execution_id: "count".into(),
                        chunks_sent: 0,
                        objects_sent: count,
                        retries: 0,
                        replayed: false,
                    }))
                }
                Some("trap") => {
                    let path = format!("importsource/{}/executions", event.import_source_id);
                    let _ = assets_api::call(assets_api::Method::Post, &path, Some(r#"{"scheduled":true}"#));
                    panic!("the app panicked on purpose after creating an execution");
                }
                _ => probe(&event),
            }
        }
    }

    /// Everything a guest can reach, printed to stdout for the host's log.
    fn probe(event: &TriggerEvent) -> Result<RunOutcome, RunError> {
        println!("env: {:?}", std::env::vars().collect::<Vec<_>>());
        println!("args: {:?}", std::env::args().collect::<Vec<_>>());
        for dir in ["/", ".", "/proc/self"] {
            println!(
                "read_dir {dir}: {:?}",
                std::fs::read_dir(dir).map(|d| d.count()).map_err(|e| e.to_string())
            );
        }
        println!(
            "environ: {:?}",
            std::fs::read_to_string("/proc/self/environ").map_err(|e| e.to_string())
        );
        for key in [
            "token",
            "credential",
            "authorization",
            "ASSETS_TOKEN",
            "api-key",
            "secret",
            "test-behaviour",
        ] {
            println!("config {key}: {:?}", config::get(key));
            println!("storage {key}: {:?}", storage::get(key));
        }
        let base = format!("importsource/{}", event.import_source_id);
        for (method, path) in [
            (assets_api::Method::Get, format!("{base}/executions/status")),
            (assets_api::Method::Get, format!("{base}/history")),
            (assets_api::Method::Post, format!("{base}/executions")),
            (assets_api::Method::Get, "nothing/here".to_owned()),
            (assets_api::Method::Get, "../../../../etc/passwd".to_owned()),
            (assets_api::Method::Get, "https://api.atlassian.com/me".to_owned()),
        ] {
            match assets_api::call(method, &path, None) {
                Ok(r) => println!("api {path}: {} {:?} {}", r.status, r.headers, r.body),
                Err(e) => println!("api {path}: error {e:?}"),
            }
        }
        let request = outbound_http::Request {
            method: outbound_http::Method::Get,
            url: "https://api.atlassian.com/me".into(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        };
        println!("http: {:?}", outbound_http::send(&request).map(|r| r.status));
        Ok(RunOutcome::Completed(RunReport {
            execution_id: "probe".into(),
            chunks_sent: 0,
            objects_sent: 0,
            retries: 0,
            replayed: false,
        }))
    }

    export!(Misbehaving);
}
