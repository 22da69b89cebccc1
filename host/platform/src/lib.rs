//! The simulated platform, in process: what plays the Assets service and
//! the app platform around the importer component.
//!
//! A schedule fires and the data flows one way through these parts:
//!
//! ```text
//! clock ─▶ scheduler ─▶ ledger ─▶ delivery ─▶ trigger ─▶ assets_runtime (guest) ─▶ assets (mock API) ─▶ history
//! ```
//!
//! - [`assets`]: the Assets import API mock: one router, the execution
//!   lifecycle rules, schedules, the import history; [`assets::StateStore`]
//!   is the seam for a durable copy.
//! - [`clock`]: injected time (system or virtual), and its [`ClockTimer`]
//!   face for the guest's `timer` import.
//! - [`confine`]: an app's Assets API calls reach only the import
//!   sources it performs.
//! - [`scheduler`]: claims due occurrences, runs, skips or misses each, and
//!   delivers callbacks ([`scheduler::Callbacks`] is the seam for HTTP).
//! - [`assets::ledger`]: the occurrence ledger, one entry per occurrence
//!   and exactly one terminal state each.
//! - [`delivery`]: a bounded pool of workers that delivers claims, so a
//!   slow import never holds up claiming.
//! - [`trigger`]: delivers one trigger to an installed [`trigger::App`] and
//!   makes the history tell the truth about it.
//! - [`source`]: the built-in synthetic data source.
//! - [`faults`]: fault plans, and the fault-injecting Assets backend and
//!   data source built from them.
//! - [`third_party`]: an in-process NetBox-style API for composed sources.
//!
//! Depends on `assets-runtime` and `assets-calendar`; must not depend on a
//! web framework, a database or an HTTP client (those are `assets-server`'s),
//! nor on the command line.

pub mod assets;
pub mod clock;
pub mod confine;
pub mod delivery;
pub mod faults;
pub mod scheduler;
pub mod source;
pub mod third_party;
pub mod trigger;

pub use clock::{Clock, ClockTimer, DatabaseClock, SteadyClock, SystemClock, TimeSample, VirtualClock};
