//! Time, injected: the scheduler and the Assets mock never read the system
//! clock themselves, so a [`VirtualClock`] can drive a year of schedules in
//! well under a second and tests never sleep.

use assets_runtime::Timer;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// A source of the current time, and a way to wait on it.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `by`: really on the system clock, instantly on a virtual one
    /// (which moves forward by `by`).
    fn sleep(&self, by: std::time::Duration);
    /// True for a clock that moves only when told to: a wait on it is
    /// instant.
    fn is_virtual(&self) -> bool {
        false
    }
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep(&self, by: std::time::Duration) {
        std::thread::sleep(by);
    }
}

/// The machine's clock read once, then followed by the monotonic clock: a
/// step of the system clock (NTP setting it, an operator) does not move it.
/// What a [`DatabaseClock`] tells the time by between samples, so that a
/// step shows only as the drift the next sample corrects.
#[derive(Debug, Clone, Copy)]
pub struct SteadyClock {
    started: std::time::Instant,
    at: DateTime<Utc>,
}

impl SteadyClock {
    /// Reads the system clock now, once.
    pub fn new() -> SteadyClock {
        SteadyClock {
            started: std::time::Instant::now(),
            at: Utc::now(),
        }
    }
}

impl Default for SteadyClock {
    fn default() -> SteadyClock {
        SteadyClock::new()
    }
}

impl Clock for SteadyClock {
    fn now(&self) -> DateTime<Utc> {
        chrono::Duration::from_std(self.started.elapsed())
            .ok()
            .and_then(|elapsed| self.at.checked_add_signed(elapsed))
            .unwrap_or(self.at)
    }
    fn sleep(&self, by: std::time::Duration) {
        std::thread::sleep(by);
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<DateTime<Utc>>,
}

impl VirtualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> VirtualClock {
        VirtualClock { now: Mutex::new(start) }
    }

    /// Moves the clock to `instant`; a clock never goes backwards, so an
    /// earlier instant leaves it where it is.
    pub fn set(&self, instant: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if instant > *now {
            *now = instant;
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn sleep(&self, by: std::time::Duration) {
        self.advance(chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX));
    }
    fn is_virtual(&self) -> bool {
        true
    }
}

/// One reading of a shared database's clock, bracketed by the local
/// clock: read after `sent` and before `received`.
#[derive(Debug, Clone, Copy)]
pub struct TimeSample {
    /// The local time the question was sent.
    pub sent: DateTime<Utc>,
    /// The database's answer.
    pub database: DateTime<Utc>,
    /// The local time the answer came back.
    pub received: DateTime<Utc>,
}

impl TimeSample {
    /// The database's time minus the local time, reading the answer as
    /// given half-way through the round trip (off by at most half of it).
    fn offset(&self) -> chrono::Duration {
        let half = (self.received - self.sent) / 2;
        self.database - (self.sent + half)
    }
}

/// The longest round trip a [`TimeSample`] is taken from: a longer one says
/// too little about when the database read its clock.
pub const MAX_SAMPLE_ROUND_TRIP: chrono::Duration = chrono::Duration::milliseconds(500);

/// A shared database's time, told between samples by the local clock.
///
/// Nodes of one cluster decide from the time what falls due, when a lease
/// runs out and what a line of history says; on each node's own clock a
/// node running an hour fast would claim an hour early and take over live
/// runs whose leases it sees as expired. On this clock every node tells the
/// database's time, to within half a round trip of its last sample, and the
/// leases the database keeps itself (`now()` in SQL) agree with it.
///
/// It never goes backwards: a sample that puts the database behind what
/// was already told holds this clock still until the database catches up.
pub struct DatabaseClock {
    local: Arc<dyn Clock>,
    /// The offset of the last sample taken, and the latest instant told.
    told: Mutex<(chrono::Duration, DateTime<Utc>)>,
}

impl DatabaseClock {
    /// Follows the database from `first` on, telling the time by `local`.
    pub fn new(local: Arc<dyn Clock>, first: TimeSample) -> DatabaseClock {
        let offset = first.offset();
        let now = local.now() + offset;
        DatabaseClock {
            local,
            told: Mutex::new((offset, now)),
        }
    }

    /// The local clock samples are to be bracketed by.
    pub fn local(&self) -> &dyn Clock {
        self.local.as_ref()
    }

    /// Takes a new sample; false (and ignored) when its round trip was
    /// longer than [`MAX_SAMPLE_ROUND_TRIP`] or negative.
    pub fn observe(&self, sample: TimeSample) -> bool {
        let trip = sample.received - sample.sent;
        if trip < chrono::Duration::zero() || trip > MAX_SAMPLE_ROUND_TRIP {
            return false;
        }
        self.told.lock().unwrap_or_else(|e| e.into_inner()).0 = sample.offset();
        true
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> DateTime<Utc> {
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let now = (self.local.now() + told.0).max(told.1);
        told.1 = now;
        now
    }
    fn sleep(&self, by: std::time::Duration) {
        self.local.sleep(by);
    }
}

/// A [`Clock`] as the guest's `timer` import sees it, so a guest's waits
/// follow the platform's clock (instant on a virtual one).
///
/// On a virtual clock a wait either moves the platform's clock
/// ([`ClockTimer::shared`]: one app simulated alone, whose waits are part
/// of the timeline) or only the time this guest sees ([`ClockTimer::own`]:
/// a platform where apps and the scheduler share the clock, and no app may
/// move it for the others). On the system clock a wait is real either way.
pub struct ClockTimer {
    clock: Arc<dyn Clock>,
    /// With [`ClockTimer::own`]: how far this guest's waits have moved its
    /// own time past the platform's.
    own: Option<Mutex<std::time::Duration>>,
}

impl ClockTimer {
    /// Waits move the platform's clock.
    pub fn shared(clock: Arc<dyn Clock>) -> ClockTimer {
        ClockTimer { clock, own: None }
    }

    /// Waits move only the time this timer's guest sees.
    pub fn own(clock: Arc<dyn Clock>) -> ClockTimer {
        ClockTimer {
            clock,
            own: Some(Mutex::new(std::time::Duration::ZERO)),
        }
    }

    fn ahead(&self) -> std::time::Duration {
        self.own.as_ref().map_or(std::time::Duration::ZERO, |a| {
            *a.lock().unwrap_or_else(|e| e.into_inner())
        })
    }
}

impl Timer for ClockTimer {
    fn now_ms(&self) -> u64 {
        let now = self.clock.now().timestamp_millis().max(0) as u64;
        now.saturating_add(self.ahead().as_millis().min(u64::MAX as u128) as u64)
    }
    fn sleep(&self, by: std::time::Duration) {
        match &self.own {
            Some(ahead) if self.clock.is_virtual() => {
                let mut ahead = ahead.lock().unwrap_or_else(|e| e.into_inner());
                *ahead = ahead.saturating_add(by);
            }
            _ => self.clock.sleep(by),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guests_own_waits_move_its_time_and_not_the_platforms() {
        let clock = Arc::new(VirtualClock::new("2026-12-07T00:00:00Z".parse().unwrap()));
        let platform = clock.now();
        let own = ClockTimer::own(clock.clone());
        let before = own.now_ms();
        own.sleep(std::time::Duration::from_secs(3600));
        assert_eq!(clock.now(), platform, "the shared clock did not move");
        assert_eq!(own.now_ms() - before, 3_600_000, "the guest's own time did");
        let shared = ClockTimer::shared(clock.clone());
        shared.sleep(std::time::Duration::from_secs(60));
        assert_eq!(clock.now() - platform, chrono::Duration::seconds(60));
    }

    /// A local clock standing wherever the test puts it.
    fn local(at: &str) -> Arc<VirtualClock> {
        Arc::new(VirtualClock::new(at.parse().unwrap()))
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_fast_local_clock_tells_the_databases_time() {
        // The local clock runs an hour fast; the database answered 12:00:00
        // in a round trip of 200 ms.
        let local = local("2026-12-07T13:00:00.300Z");
        let clock = DatabaseClock::new(
            local.clone(),
            TimeSample {
                sent: at("2026-12-07T13:00:00.000Z"),
                database: at("2026-12-07T12:00:00.000Z"),
                received: at("2026-12-07T13:00:00.200Z"),
            },
        );
        // 300 ms local after the send is 200 ms after the answer was read.
        assert_eq!(clock.now(), at("2026-12-07T12:00:00.200Z"));
        local.advance(chrono::Duration::minutes(30));
        assert_eq!(
            clock.now(),
            at("2026-12-07T12:30:00.200Z"),
            "it runs with the local clock"
        );
    }

    #[test]
    fn a_sample_that_puts_the_database_behind_holds_the_clock_still_never_back() {
        let local = local("2026-12-07T12:00:00Z");
        let sample = |sent: &str, database: &str| TimeSample {
            sent: at(sent),
            database: at(database),
            received: at(sent),
        };
        let clock = DatabaseClock::new(local.clone(), sample("2026-12-07T12:00:00Z", "2026-12-07T12:00:10Z"));
        assert_eq!(clock.now(), at("2026-12-07T12:00:10Z"));
        // The database is now found 10 s behind the local clock.
        assert!(clock.observe(sample("2026-12-07T12:00:00Z", "2026-12-07T11:59:50Z")));
        local.advance(chrono::Duration::seconds(5));
        assert_eq!(clock.now(), at("2026-12-07T12:00:10Z"), "held where it was");
        local.advance(chrono::Duration::seconds(30));
        assert_eq!(clock.now(), at("2026-12-07T12:00:25Z"), "then the database's time");
    }

    #[test]
    fn a_sample_from_a_slow_round_trip_is_ignored() {
        let local = local("2026-12-07T12:00:00Z");
        let clock = DatabaseClock::new(
            local.clone(),
            TimeSample {
                sent: at("2026-12-07T12:00:00Z"),
                database: at("2026-12-07T12:00:00Z"),
                received: at("2026-12-07T12:00:00Z"),
            },
        );
        let slow = TimeSample {
            sent: at("2026-12-07T12:00:00Z"),
            database: at("2026-12-07T13:00:00Z"),
            received: at("2026-12-07T12:00:02Z"),
        };
        assert!(!clock.observe(slow));
        assert_eq!(clock.now(), at("2026-12-07T12:00:00Z"));
    }
}
