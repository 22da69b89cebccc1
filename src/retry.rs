//! Retrying transient failures: which failures, how long to wait, and when
//! to give up.
//!
//! Waits go through the platform's [`Timer`], never a busy loop, so a
//! virtual clock makes simulated retries instant. Jitter comes from a small
//! generator seeded by the occurrence, so a run's waits are reproducible.
//!
//! Every wait stays inside the invocation's deadline: one that would end
//! later than the time left less the reserve (`time-limit-margin-ms`) is not
//! slept. The retrier then says it ran out of time ([`Retrier::out_of_time`])
//! and the run pauses at its last checkpoint, to go on in the next
//! invocation: a wait longer than the invocation is a pause, not a failure.
//! The waiting budget is the run's: a retrier resumed with what earlier
//! deliveries spent ([`Retrier::resume`]) counts it too.

use crate::budget::RunBudget;
use crate::settings::RetryPolicy;
use std::time::{Duration, UNIX_EPOCH};

/// The platform's clock, as the `timer` import gives it.
pub trait Timer {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> u64;
    /// Waits `ms` milliseconds.
    fn sleep_ms(&mut self, ms: u64);
    /// Milliseconds before the platform stops this invocation; `u64::MAX`
    /// when there is no limit.
    fn time_left_ms(&mut self) -> u64 {
        u64::MAX
    }
}

/// What to do about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not transient: give up now.
    Fatal,
    /// Transient: back off and try again.
    Backoff,
    /// The server said when: wait this long (from `Retry-After`).
    After(u64),
}

/// Counts attempts and waiting for one run, and decides each wait.
#[derive(Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    rng: u64,
    /// Waited by earlier deliveries of the run.
    earlier_waited_ms: u64,
    /// Retries made by earlier deliveries of the run.
    earlier_retries: u32,
    /// Waited in this delivery.
    waited_ms: u64,
    /// Retries in this delivery.
    retries: u32,
    /// How long before the invocation's deadline every wait must end.
    reserve_ms: u64,
    /// When the invocation began, by the timer's clock.
    started_ms: Option<u64>,
    /// Set once a wait did not fit in the time left.
    out_of_time: bool,
}

/// Why retrying stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// Attempts made.
    pub attempts: u32,
    /// Why no further attempt was made.
    pub why: String,
}

impl Retrier {
    /// A retrier for one run; `seed` makes the jitter reproducible.
    pub fn new(policy: RetryPolicy, seed: u64) -> Retrier {
        Retrier {
            policy,
            rng: seed | 1,
            earlier_waited_ms: 0,
            earlier_retries: 0,
            waited_ms: 0,
            retries: 0,
            reserve_ms: 0,
            started_ms: None,
            out_of_time: false,
        }
    }

    /// Counts what earlier deliveries of the run spent waiting against the
    /// run's budget (`retry-max-total-ms`), and their retries in the run's.
    pub fn resume(&mut self, budget: &RunBudget) {
        self.earlier_waited_ms = budget.waited_ms;
        self.earlier_retries = budget.retries;
    }

    /// Writes what the run has spent so far, this delivery included, into
    /// `budget`.
    pub fn spend(&self, budget: &mut RunBudget) {
        budget.waited_ms = self.waited_ms();
        budget.retries = self.earlier_retries.saturating_add(self.retries);
    }

    /// Every wait must end at least `reserve_ms` before the invocation's
    /// deadline (the run's `time-limit-margin-ms`, the time it keeps to
    /// stop at a checkpoint).
    pub fn reserve(&mut self, reserve_ms: u64) {
        self.reserve_ms = reserve_ms;
    }

    /// Notes when the invocation began (`now_ms` by the timer), so that a
    /// wait which would not fit even in a fresh invocation (time left plus
    /// time since the start) is not a pause, since the next would pause
    /// again, but a failure that names the settings to change.
    pub fn started(&mut self, now_ms: u64) {
        self.started_ms = Some(now_ms);
    }

    /// The current reserve, in milliseconds.
    pub fn reserve_ms(&self) -> u64 {
        self.reserve_ms
    }

    /// Retries made in this delivery.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Milliseconds waited between retries over the whole run, earlier
    /// deliveries included.
    pub fn waited_ms(&self) -> u64 {
        self.earlier_waited_ms.saturating_add(self.waited_ms)
    }

    /// True once a wait did not fit in the invocation's time left: the
    /// failure that follows is the deadline's, and the run should pause at
    /// its last checkpoint rather than fail.
    pub fn out_of_time(&self) -> bool {
        self.out_of_time
    }

    /// Runs `attempt` until it succeeds, `classify` calls its error fatal,
    /// the attempt or time budget runs out, or the next wait would not end
    /// [`Retrier::reserve`] before the invocation's deadline (then
    /// [`Retrier::out_of_time`] is set). `classify` gets the clock read just
    /// after the failed attempt, to turn an HTTP-date `Retry-After` into a
    /// wait. The error returned is the last one, with how retrying ended.
    pub fn run<T, E>(
        &mut self,
        timer: &mut impl Timer,
        mut attempt: impl FnMut() -> Result<T, E>,
        classify: impl Fn(&E, u64) -> Verdict,
    ) -> Result<T, (E, Option<GaveUp>)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt() {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let now = timer.now_ms();
            let wait = match classify(&error, now) {
                Verdict::Fatal => return Err((error, None)),
                _ if attempts >= self.policy.max_attempts => {
                    let why = format!("gave up after {attempts} attempts");
                    return Err((error, Some(GaveUp { attempts, why })));
                }
                Verdict::After(ms) => ms,
                Verdict::Backoff => self.backoff(attempts),
            };
            let left = self.policy.max_total_ms.saturating_sub(self.waited_ms());
            if wait > left {
                let why = format!(
                    "gave up after {attempts} attempts: the next wait of {} would pass the run's retry budget of {} (retry-max-total-ms), {} of it already spent",
                    human_ms(wait),
                    human_ms(self.policy.max_total_ms),
                    human_ms(self.waited_ms())
                );
                return Err((error, Some(GaveUp { attempts, why })));
            }
            // A wait past the deadline would have the platform stop the
            // invocation mid-call; stopping here keeps the checkpoint whole.
            let time_left = timer.time_left_ms();
            let invocation_ms = self.started_ms.map_or(u64::MAX, |started| {
                time_left.saturating_add(now.saturating_sub(started))
            });
            if wait.saturating_add(self.reserve_ms) > invocation_ms {
                let why = format!(
                    "gave up after {attempts} attempts: the next wait of {} would not fit in any invocation, which has {} and keeps {} of it to stop in (time-limit-margin-ms); lower time-limit-margin-ms, or retry-base-delay-ms when the wait is a backoff",
                    human_ms(wait),
                    human_ms(invocation_ms),
                    human_ms(self.reserve_ms)
                );
                return Err((error, Some(GaveUp { attempts, why })));
            }
            if wait.saturating_add(self.reserve_ms) > time_left {
                self.out_of_time = true;
                let why = format!(
                    "stopped after {attempts} attempts: the next wait of {} would end within {} of the invocation's time limit (time-limit-margin-ms), {} being left; the run goes on from its checkpoint in the next invocation",
                    human_ms(wait),
                    human_ms(self.reserve_ms),
                    human_ms(time_left)
                );
                return Err((error, Some(GaveUp { attempts, why })));
            }
            timer.sleep_ms(wait);
            self.waited_ms += wait;
            self.retries += 1;
        }
    }

    /// Exponential backoff with full jitter in the upper half:
    /// `base * 2^(n-1) * [0.5, 1.0)`.
    fn backoff(&mut self, attempts: u32) -> u64 {
        let ceiling = self.policy.base_delay_ms.saturating_mul(1 << (attempts - 1).min(20));
        // xorshift64: tiny, deterministic for a seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = (self.rng % 1000) as f64 / 2000.0 + 0.5;
        (ceiling as f64 * fraction) as u64
    }
}

/// Reads `Retry-After` (delay seconds or an HTTP date) into milliseconds
/// from `now_ms`. A date in the past means "now".
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64;
    Some(at_ms.saturating_sub(now_ms))
}

fn human_ms(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// A seed from text (the occurrence id): FNV-1a.
pub fn seed_from(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeTimer {
        now: u64,
        sleeps: Vec<u64>,
        /// The invocation's deadline on this clock, if any.
        deadline: Option<u64>,
    }
    impl Timer for FakeTimer {
        fn now_ms(&mut self) -> u64 {
            self.now
        }
        fn sleep_ms(&mut self, ms: u64) {
            self.now += ms;
            self.sleeps.push(ms);
        }
        fn time_left_ms(&mut self) -> u64 {
            self.deadline.map_or(u64::MAX, |d| d.saturating_sub(self.now))
        }
    }

    fn policy(max_attempts: u32, max_total_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay_ms: 100,
            max_total_ms,
        }
    }

    #[test]
    fn transient_failures_back_off_exponentially_with_jitter_then_succeed() {
        let mut timer = FakeTimer::default();
        let mut retrier = Retrier::new(policy(5, 60_000), 42);
        let mut calls = 0;
        let result: Result<u32, _> = retrier.run(
            &mut timer,
            || {
                calls += 1;
                if calls < 4 {
                    Err("503")
                } else {
                    Ok(calls)
                }
            },
            |_, _| Verdict::Backoff,
        );
        assert_eq!(result.unwrap(), 4);
        assert_eq!(retrier.retries(), 3);
        for (i, wait) in timer.sleeps.iter().enumerate() {
            let ceiling = 100 << i;
            assert!(
                (ceiling / 2..ceiling).contains(wait),
                "wait {i}: {wait} not in [{}, {ceiling})",
                ceiling / 2
            );
        }
    }

    #[test]
    fn fatal_errors_are_not_retried() {
        let mut timer = FakeTimer::default();
        let mut retrier = Retrier::new(policy(5, 60_000), 1);
        let result: Result<(), _> = retrier.run(&mut timer, || Err("400"), |_, _| Verdict::Fatal);
        assert_eq!(result.unwrap_err(), ("400", None));
        assert!(timer.sleeps.is_empty());
    }

    #[test]
    fn attempts_are_bounded() {
        let mut timer = FakeTimer::default();
        let mut retrier = Retrier::new(policy(3, 60_000), 1);
        let mut calls = 0;
        let result: Result<(), _> = retrier.run(
            &mut timer,
            || {
                calls += 1;
                Err("500")
            },
            |_, _| Verdict::Backoff,
        );
        let (_, gave_up) = result.unwrap_err();
        assert_eq!(calls, 3);
        assert!(gave_up.unwrap().why.contains("after 3 attempts"));
    }

    #[test]
    fn retry_after_is_honoured_and_total_time_is_bounded() {
        let mut timer = FakeTimer::default();
        let mut retrier = Retrier::new(policy(10, 5_000), 1);
        let result: Result<(), _> = retrier.run(&mut timer, || Err("429"), |_, _| Verdict::After(2_000));
        let (_, gave_up) = result.unwrap_err();
        assert_eq!(timer.sleeps, vec![2_000, 2_000]);
        assert!(gave_up.unwrap().why.contains("retry budget"));
    }

    #[test]
    fn jitter_is_reproducible_for_a_seed() {
        let waits = |seed| {
            let mut timer = FakeTimer::default();
            let mut retrier = Retrier::new(policy(4, 60_000), seed);
            let _: Result<(), _> = retrier.run(&mut timer, || Err(()), |_, _| Verdict::Backoff);
            timer.sleeps
        };
        assert_eq!(waits(7), waits(7));
        assert_ne!(waits(7), waits(8));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after_ms("3", 0), Some(3_000));
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:05 GMT", now), Some(5_000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(0));
        assert_eq!(retry_after_ms("soon", now), None);
    }

    #[test]
    fn an_http_date_retry_after_is_measured_from_the_failed_attempt() {
        // The first attempt fails at once, the second after the first wait:
        // the second wait counts from the clock after that, not from the first reading.
        let mut timer = FakeTimer {
            now: 1_445_412_480_000, // Wed, 21 Oct 2015 07:28:00 GMT
            ..FakeTimer::default()
        };
        let mut retrier = Retrier::new(policy(3, 600_000), 1);
        let mut calls = 0;
        let result: Result<(), _> = retrier.run(
            &mut timer,
            || {
                calls += 1;
                Err("429")
            },
            |_, now| Verdict::After(retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now).unwrap()),
        );
        assert!(result.is_err());
        assert_eq!(timer.sleeps, vec![30_000, 0], "the second wait ends at the same date");
    }

    #[test]
    fn a_wait_that_would_end_inside_the_reserve_is_not_slept() {
        // 10 s left, 4 s kept in reserve: a Retry-After of 7 s would end
        // past the 6 s the run may still wait.
        let mut timer = FakeTimer {
            deadline: Some(10_000),
            ..FakeTimer::default()
        };
        let mut retrier = Retrier::new(policy(5, 120_000), 1);
        retrier.reserve(4_000);
        let result: Result<(), _> = retrier.run(&mut timer, || Err("429"), |_, _| Verdict::After(7_000));
        let (_, gave_up) = result.unwrap_err();
        assert!(timer.sleeps.is_empty(), "slept {:?}", timer.sleeps);
        assert!(retrier.out_of_time());
        let why = gave_up.unwrap().why;
        assert!(
            why.contains("time-limit-margin-ms") && why.contains("next invocation"),
            "{why}"
        );
    }

    #[test]
    fn a_wait_that_fits_before_the_reserve_is_slept() {
        let mut timer = FakeTimer {
            deadline: Some(10_000),
            ..FakeTimer::default()
        };
        let mut retrier = Retrier::new(policy(5, 120_000), 1);
        retrier.reserve(4_000);
        let mut calls = 0;
        let result = retrier.run(
            &mut timer,
            || {
                calls += 1;
                if calls == 1 {
                    Err("429")
                } else {
                    Ok(())
                }
            },
            |_, _| Verdict::After(6_000),
        );
        assert!(result.is_ok());
        assert_eq!(timer.sleeps, vec![6_000]);
        assert!(!retrier.out_of_time());
    }

    #[test]
    fn the_waiting_budget_is_the_runs_not_the_deliverys() {
        // Earlier deliveries waited 4.5 s of a 5 s budget: a 1 s wait is one too many.
        let mut timer = FakeTimer::default();
        let mut retrier = Retrier::new(policy(10, 5_000), 1);
        retrier.resume(&RunBudget {
            waited_ms: 4_500,
            ..RunBudget::default()
        });
        let result: Result<(), _> = retrier.run(&mut timer, || Err("503"), |_, _| Verdict::After(1_000));
        let (_, gave_up) = result.unwrap_err();
        assert!(timer.sleeps.is_empty(), "slept {:?}", timer.sleeps);
        assert!(gave_up.unwrap().why.contains("retry budget"));
        assert_eq!(retrier.waited_ms(), 4_500);
        assert!(!retrier.out_of_time(), "a spent budget is a failure, not a pause");
    }

    #[test]
    fn a_wait_that_no_invocation_could_hold_fails_instead_of_pausing_forever() {
        // 20 s invocations keeping 19 s to stop in: a 2 s Retry-After never
        // fits, so pausing for it would only pause again.
        let mut timer = FakeTimer {
            deadline: Some(20_000),
            ..FakeTimer::default()
        };
        let mut retrier = Retrier::new(policy(5, 120_000), 1);
        retrier.reserve(19_000);
        retrier.started(0);
        let result: Result<(), _> = retrier.run(&mut timer, || Err("429"), |_, _| Verdict::After(2_000));
        let (_, gave_up) = result.unwrap_err();
        assert!(timer.sleeps.is_empty());
        assert!(!retrier.out_of_time(), "not a pause");
        let why = gave_up.unwrap().why;
        assert!(
            why.contains("would not fit in any invocation") && why.contains("lower time-limit-margin-ms"),
            "{why}"
        );
    }
}
