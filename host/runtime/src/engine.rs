//! Compiles the importer component once and runs each trigger in a fresh
//! store and instance.
//!
//! Compilation and linking happen once per component ([`Runtime::new`]); a
//! trigger only instantiates the pre-linked component, calls the export and
//! drops the store, so no state leaks from one run into the next.
//!
//! Each invocation runs under [`Limits`]: wall time, enforced with epoch
//! interruption (a background thread ticks the engine's epoch every
//! [`EPOCH_TICK`]), and linear memory, enforced by the store's limiter. A
//! guest that hits either is stopped with a trap the host can name.
//!
//! Two optional limits do not stop the guest; they fail the invocation by
//! name. Outbound HTTP requests per minute are counted by the sandbox: the
//! request over the limit is refused, and the invocation fails with
//! [`Fault::RequestRate`] whatever the guest does next. The invocation's
//! payload is measured at its edges ([`event_payload_bytes`],
//! [`answer_payload_bytes`]): a trigger event over the limit is refused
//! before instantiating ([`Fault::EventPayloadLimit`]), an answer over it
//! becomes [`Fault::PayloadLimit`].

use crate::bindings::import_callback::{FailedRun, PausedRun, RunError, RunOutcome, RunReport, TriggerEvent};
use crate::bindings::{Importer, ImporterPre};
use crate::sandbox::{Grants, GuestLog, Sandbox};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// Instances of one component alive at once (one per concurrent trigger).
pub const POOL_SLOTS: u32 = 128;
/// Largest linear memory a pooled instance can have: the ceiling of any
/// app's memory limit.
pub const POOL_MAX_MEMORY: usize = 1 << 30;

/// The WASI interface whose waits the sandbox cuts at the deadline, as
/// `wasmtime-wasi` 48 names it in the linker (a guest's import of any
/// 0.2.x version resolves to it).
const WASI_MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// How often the epoch advances: the granularity of time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What one invocation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time per invocation.
    pub time: Duration,
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Most `outbound-http.send` calls in any 60 s, counted across the app's
    /// invocations in its [`Grants::requests`] window; `None` for no limit.
    /// The call over the limit is not sent (the guest gets
    /// `http-error::denied` naming the limit), nor is any later one of the
    /// invocation, and the invocation fails with [`Fault::RequestRate`].
    pub outbound_per_minute: Option<u32>,
    /// Most bytes of invocation payload, each way: the trigger event going in
    /// and the app's answer coming out, as [`event_payload_bytes`] and
    /// [`answer_payload_bytes`] measure them; `None` for no limit.
    pub payload_bytes: Option<usize>,
}

impl Default for Limits {
    /// The platform's limits for scheduled work: 900 s and 512 MiB, with no
    /// request rate or payload limit.
    fn default() -> Self {
        Limits {
            time: Duration::from_secs(900),
            memory_bytes: 512 << 20,
            outbound_per_minute: None,
            payload_bytes: None,
        }
    }
}

/// Why the host stopped a guest, failed its invocation, or did not run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// It ran past its time limit.
    TimeLimit(Duration),
    /// It asked for more memory than its limit.
    MemoryLimit(usize),
    /// It trapped on its own (a panic, an unreachable, a bad access).
    Trap(String),
    /// It tried to send more outbound HTTP requests in 60 s than
    /// [`Limits::outbound_per_minute`] allows. The invocation fails even if
    /// the guest handled the refusal and returned normally.
    RequestRate {
        /// The limit it exceeded, in requests per minute.
        per_minute: u32,
    },
    /// Its answer was larger than [`Limits::payload_bytes`], measured by
    /// [`answer_payload_bytes`]; the answer is dropped.
    PayloadLimit {
        /// The answer's size.
        bytes: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The trigger event was larger than [`Limits::payload_bytes`], measured
    /// by [`event_payload_bytes`]; the app was not run.
    EventPayloadLimit {
        /// The event's size.
        bytes: usize,
        /// The limit, in bytes.
        limit: usize,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::TimeLimit(limit) => write!(f, "app exceeded the {} s time limit", limit.as_secs_f64()),
            Fault::MemoryLimit(limit) => write!(f, "app exceeded the {} MiB memory limit", limit >> 20),
            Fault::Trap(trap) => write!(f, "app trapped: {trap}"),
            Fault::RequestRate { per_minute } => write!(
                f,
                "app exceeded the limit of {per_minute} outbound HTTP requests per minute"
            ),
            Fault::PayloadLimit { bytes, limit } => write!(
                f,
                "the app's answer is {bytes} bytes, over the {limit}-byte invocation payload limit"
            ),
            Fault::EventPayloadLimit { bytes, limit } => write!(
                f,
                "the trigger event is {bytes} bytes, over the {limit}-byte invocation payload limit; the app was not run"
            ),
        }
    }
}

/// A compiled, linked importer component.
pub struct Runtime {
    engine: Engine,
    pre: ImporterPre<Sandbox>,
    ticking: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

/// The result of one invocation of the guest.
pub struct Invocation {
    /// What the guest returned, or why the host stopped it.
    pub result: Result<Result<RunOutcome, RunError>, Fault>,
    /// What the guest wrote to stdout and stderr.
    pub guest_output: String,
    /// The most linear memory the instance held, in bytes.
    pub peak_memory_bytes: usize,
    /// Wall time of the invocation, instantiation included.
    pub elapsed: Duration,
}

/// The size of `event` as invocation payload: the UTF-8 bytes of its
/// strings.
///
/// The strings are what can grow; the fixed-size fields (a flag, an attempt
/// number, the option tag) add a few bytes to any encoding and are left out,
/// so this is a lower bound on every serialization of the event and never
/// refuses one that fits the limit however it is encoded.
pub fn event_payload_bytes(event: &TriggerEvent) -> usize {
    // Destructured without `..` so a string field added to the WIT breaks
    // the build here instead of going uncounted.
    let TriggerEvent {
        workspace_id,
        import_source_id,
        scheduled: _,
        schedule_id,
        occurrence_id,
        nominal_time,
        attempt: _,
    } = event;
    workspace_id.len()
        + import_source_id.len()
        + schedule_id.as_ref().map_or(0, String::len)
        + occurrence_id.len()
        + nominal_time.len()
}

/// The size of what `on-trigger` returned as invocation payload: the UTF-8
/// bytes of its strings (execution ids, failure reasons), measured like
/// [`event_payload_bytes`]; counts and flags are left out.
pub fn answer_payload_bytes(answer: &Result<RunOutcome, RunError>) -> usize {
    // Destructured without `..`, as in `event_payload_bytes`.
    match answer {
        Ok(RunOutcome::Completed(RunReport {
            execution_id,
            chunks_sent: _,
            objects_sent: _,
            retries: _,
            replayed: _,
        })) => execution_id.len(),
        Ok(RunOutcome::Paused(PausedRun {
            execution_id,
            chunks_sent: _,
            objects_sent: _,
            retries: _,
        })) => execution_id.len(),
        Err(RunError::ExecutionNotCreated(reason)) => reason.len(),
        Err(RunError::ImportFailed(FailedRun {
            execution_id,
            reason,
            reported: _,
            chunks_sent: _,
            objects_sent: _,
        })) => execution_id.len() + reason.len(),
    }
}

/// The names of the imports the component at `path` needs (e.g.
/// `assets:scheduled-import/config@0.4.0`, `wasi:io/streams@0.2.6`), to check
/// what a composed component still asks of its host.
pub fn component_imports(path: &Path) -> anyhow::Result<Vec<String>> {
    let engine = Engine::default();
    let component = Component::from_file(&engine, path)
        .with_context(|| format!("cannot load the component at {}", path.display()))?;
    let ty = component.component_type();
    let names = ty.imports(&engine).map(|(name, _)| name.to_owned()).collect();
    Ok(names)
}

impl Runtime {
    /// Compiles the component at `path`.
    pub fn from_file(path: &Path) -> anyhow::Result<Runtime> {
        let bytes = anyhow::Context::with_context(std::fs::read(path), || {
            format!(
                "cannot read the component at {}; build it with `make component`",
                path.display()
            )
        })?;
        anyhow::Context::with_context(Runtime::new(&bytes).map_err(anyhow::Error::from), || {
            format!("cannot load the component at {}", path.display())
        })
    }

    /// Compiles and links a component from its bytes.
    pub fn new(component: &[u8]) -> wasmtime::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Instances come from a pool of pre-reserved slots: a trigger then
        // costs a slot reset instead of fresh mmaps, roughly halving the
        // instantiation floor. Slots bound the instances alive at once.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 4)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 4)
            .max_memory_size(POOL_MAX_MEMORY);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).context("cannot create the wasmtime engine")?;
        let component = Component::new(&engine, component).context("not a valid WebAssembly component")?;
        let mut linker: Linker<Sandbox> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).context("cannot link WASI")?;
        // A guest's WASI waits (`std::thread::sleep`, `poll` on a clock) end
        // at its invocation's deadline: WASI's own would block in the host,
        // where the epoch deadline cannot stop them.
        linker.allow_shadowing(true);
        let mut clock = linker.instance(WASI_MONOTONIC_CLOCK)?;
        clock.func_wrap("subscribe-duration", |mut store, (ns,): (u64,)| {
            let sandbox: &mut Sandbox = store.data_mut();
            Ok((sandbox.subscribe_duration(Duration::from_nanos(ns))?,))
        })?;
        clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| {
            let sandbox: &mut Sandbox = store.data_mut();
            Ok((sandbox.subscribe_instant(when)?,))
        })?;
        linker.allow_shadowing(false);
        Importer::add_to_linker::<_, HasSelf<_>>(&mut linker, |sandbox| sandbox)
            .context("cannot link the importer's imports")?;
        let pre = linker
            .instantiate_pre(&component)
            .context("the component needs imports this host does not grant")?;
        let pre = ImporterPre::new(pre).context("the component does not export import-callback")?;
        let ticking = Arc::new(AtomicBool::new(true));
        spawn_epoch_ticker(engine.clone(), ticking.clone());
        Ok(Runtime { engine, pre, ticking })
    }

    /// Runs `on-trigger(event)` in a fresh instance with `grants`, under `limits`.
    ///
    /// An event over the payload limit is refused before anything is
    /// instantiated. A breached request rate is the invocation's fault,
    /// whatever happened after it; an answer over the payload limit is
    /// replaced by [`Fault::PayloadLimit`].
    pub fn invoke(&self, event: &TriggerEvent, grants: Grants, limits: Limits) -> Invocation {
        let started = Instant::now();
        if let Some(limit) = limits.payload_bytes {
            let bytes = event_payload_bytes(event);
            if bytes > limit {
                return Invocation {
                    result: Err(Fault::EventPayloadLimit { bytes, limit }),
                    guest_output: String::new(),
                    peak_memory_bytes: 0,
                    elapsed: started.elapsed(),
                };
            }
        }
        let log = GuestLog::default();
        let deadline = started + limits.time;
        let sandbox =
            Sandbox::new(grants, &log, limits.memory_bytes, deadline).with_request_limit(limits.outbound_per_minute);
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        let ticks = (limits.time.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let result = self
            .pre
            .instantiate(&mut store)
            .context("cannot instantiate the component")
            .and_then(|importer| {
                importer
                    .assets_scheduled_import_import_callback()
                    .call_on_trigger(&mut store, event)
            });
        let result = result.map_err(|error| {
            if store.data().limiter.exceeded {
                Fault::MemoryLimit(limits.memory_bytes)
            } else if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
                Fault::TimeLimit(limits.time)
            } else {
                Fault::Trap(format!("{error:#}"))
            }
        });
        // The breach names the failure: any trap or limit stopped the guest
        // after it, and a normal return does not undo it.
        let result = match store.data().rate {
            Some(rate) if rate.exceeded => Err(Fault::RequestRate {
                per_minute: rate.per_minute,
            }),
            _ => result,
        };
        let result = result.and_then(|answer| {
            let bytes = answer_payload_bytes(&answer);
            match limits.payload_bytes {
                Some(limit) if bytes > limit => Err(Fault::PayloadLimit { bytes, limit }),
                _ => Ok(answer),
            }
        });
        let peak_memory_bytes = store.data().limiter.peak;
        drop(store);
        Invocation {
            result,
            guest_output: log.text(),
            peak_memory_bytes,
            elapsed: started.elapsed(),
        }
    }
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] while `ticking` holds.
fn spawn_epoch_ticker(engine: Engine, ticking: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while ticking.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("the epoch ticker thread starts");
}
