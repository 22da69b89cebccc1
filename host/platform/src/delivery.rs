//! Deliveries on a bounded pool of workers, so claiming never waits for an
//! import: a slow app delays only its own run.
//!
//! The scheduler loop claims what fell due (in the ledger, on disk) and
//! hands the claims to the pool; each worker delivers one occurrence at a
//! time. Claims wait in the queue while every worker is busy. A claim still
//! queued when the pool stops stays `delivering` in the ledger, and the next
//! start delivers it again (see [`Scheduler::claim_due`]).

use crate::scheduler::{Claimed, Firing, Scheduler};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A fixed number of delivery workers.
pub struct DeliveryPool {
    queue: Option<mpsc::Sender<Claimed>>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl DeliveryPool {
    /// Starts `workers` threads (at least one) delivering claims through
    /// `scheduler`; `report` hears of each delivered occurrence.
    pub fn start(
        scheduler: Arc<Scheduler>,
        workers: usize,
        report: impl Fn(&Firing) + Send + Sync + 'static,
    ) -> DeliveryPool {
        let (queue, claims) = mpsc::channel::<Claimed>();
        let claims = Arc::new(Mutex::new(claims));
        let report = Arc::new(report);
        let stopping = Arc::new(AtomicBool::new(false));
        let workers = (0..workers.max(1))
            .map(|i| {
                let (scheduler, claims, report, stopping) =
                    (scheduler.clone(), claims.clone(), report.clone(), stopping.clone());
                std::thread::Builder::new()
                    .name(format!("delivery-{i}"))
                    .spawn(move || loop {
                        let next = claims.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(claim) = next else { break };
                        if stopping.load(Ordering::SeqCst) {
                            // Left delivering in the ledger: the next start
                            // delivers it again.
                            continue;
                        }
                        report(&scheduler.fire(claim));
                    })
                    .expect("a delivery worker thread starts")
            })
            .collect();
        DeliveryPool {
            queue: Some(queue),
            workers,
            stopping,
        }
    }

    /// Queues claims for delivery; returns at once.
    pub fn submit(&self, claims: Vec<Claimed>) {
        if let Some(queue) = &self.queue {
            for claim in claims {
                // Fails only when every worker is gone, after `stop`.
                let _ = queue.send(claim);
            }
        }
    }

    /// Lets each worker finish the delivery it is on, drops the queued
    /// ones (they stay claimed in the ledger), and waits for the workers.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.queue = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
