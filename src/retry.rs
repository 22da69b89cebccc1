//! Retrying transient failures: which failures, how long to wait, and when
//! to give up.
//!
//! Waits go through the platform's [`Timer`], never a busy loop, so a
//! virtual clock makes simulated retries instant. Jitter comes from a small
//! generator seeded by the occurrence, so a run's waits are reproducible.

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
    waited_ms: u64,
    retries: u32,
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
            waited_ms: 0,
            retries: 0,
        }
    }

    /// Retries made so far in this run.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Runs `attempt` until it succeeds, `classify` calls its error fatal,
    /// or the attempt or time budget runs out. `classify` gets the clock
    /// read just after the failed attempt, to turn an HTTP-date
    /// `Retry-After` into a wait. The error returned is the last one, with
    /// how retrying ended.
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
            let left = self.policy.max_total_ms.saturating_sub(self.waited_ms);
            if wait > left {
                let why = format!(
                    "gave up after {attempts} attempts: the next wait of {} would pass the run's retry budget of {} (retry-max-total-ms)",
                    human_ms(wait),
                    human_ms(self.policy.max_total_ms)
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
    }
    impl Timer for FakeTimer {
        fn now_ms(&mut self) -> u64 {
            self.now
        }
        fn sleep_ms(&mut self, ms: u64) {
            self.now += ms;
            self.sleeps.push(ms);
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
}
