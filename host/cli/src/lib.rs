//! `assets-host`: the command line over the runtime, the platform and the
//! server. Argument parsing and the commands, thin; everything they run
//! lives in the crates below.
//!
//! ```text
//! assets-host (this crate) ─▶ assets-server ─▶ assets-platform ─▶ assets-runtime
//!                                                          └────▶ assets-calendar
//! ```
//!
//! - [`cli`]: the argument types, `demo`, `trigger`, `egress`, and
//!   [`cli::AppArgs`], which grants an app its settings and egress the same
//!   way in `trigger`, `simulate` and `serve`.
//! - [`schedule`]: `preview` and `simulate`.
//! - [`serve`]: `serve`'s arguments, handed to `assets-server`.
//! - [`chaos`]: `chaos`, many scheduled imports under random faults, each
//!   checked.
//! - [`bench`]: `bench`, the figures of BENCHMARKS.md (with the `cron` and
//!   `croner` crates as the calendar's peers, which is why they are here).
//!
//! Nothing depends on this crate but the end-to-end tests.

pub mod bench;
pub mod bench_cluster;
pub mod bench_serve;
pub mod chaos;
pub mod cli;
pub mod schedule;
pub mod serve;
