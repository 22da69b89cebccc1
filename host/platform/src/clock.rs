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
}

/// A [`Clock`] as the guest's `timer` import sees it, so a guest's waits
/// follow the platform's clock (instant on a virtual one).
pub struct ClockTimer(pub Arc<dyn Clock>);

impl Timer for ClockTimer {
    fn now_ms(&self) -> u64 {
        self.0.now().timestamp_millis().max(0) as u64
    }
    fn sleep(&self, by: std::time::Duration) {
        self.0.sleep(by);
    }
}
