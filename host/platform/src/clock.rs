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
}
