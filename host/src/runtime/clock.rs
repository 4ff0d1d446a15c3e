//! A request's clocks: the time it has run (the CPU deadline's budget, which leaves
//! out its waits for the client in `recv()`) and its total time (which does not).
//!
//! Shared between the store (which starts and ends waits) and the watchdog racing the
//! call, which must read it while the call holds the store.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::RequestLimits;

/// One request's clocks.
#[derive(Debug)]
pub(super) struct RequestClock {
    inner: Mutex<Clocks>,
}

#[derive(Debug, Clone, Copy)]
struct Clocks {
    started: Instant,
    /// Time spent in finished `recv()` waits.
    waited: Duration,
    /// When the `recv()` wait under way began, if one is.
    waiting_since: Option<Instant>,
}

/// Which of a request's time limits it ran past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overrun {
    /// Its running time passed `timeout`.
    Deadline,
    /// Its total time, waits included, passed `max_request_time`.
    TotalTime,
}

impl RequestClock {
    /// Clocks starting now.
    pub(super) fn start() -> Self {
        Self {
            inner: Mutex::new(Clocks {
                started: Instant::now(),
                waited: Duration::ZERO,
                waiting_since: None,
            }),
        }
    }

    fn read(&self) -> Clocks {
        // NB: nothing panics while holding the lock, but a poisoned clock still tells time.
        *self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Clocks)) {
        change(
            &mut self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// Starts both clocks again, for an instance that serves another call.
    #[cfg(feature = "bench")]
    pub(super) fn restart(&self) {
        self.update(|clocks| *clocks = Self::start().read());
    }

    /// A `recv()` wait begins.
    pub(super) fn begin_wait(&self) {
        self.update(|clocks| clocks.waiting_since = Some(Instant::now()));
    }

    /// The `recv()` wait under way ends.
    pub(super) fn end_wait(&self) {
        self.update(|clocks| {
            if let Some(since) = clocks.waiting_since.take() {
                clocks.waited += since.elapsed();
            }
        });
    }

    /// Time since the request began, waits included.
    pub(super) fn elapsed(&self) -> Duration {
        self.read().started.elapsed()
    }

    /// Time the request has spent running (in wasm or in host calls), waits for the
    /// client excluded: what the deadline counts.
    pub(super) fn busy(&self) -> Duration {
        let clocks = self.read();
        let waiting = clocks
            .waiting_since
            .map_or(Duration::ZERO, |since| since.elapsed());
        clocks.started.elapsed().saturating_sub(clocks.waited + waiting)
    }

    /// The limit the request is past now, if any.
    pub(super) fn overrun(&self, limits: &RequestLimits) -> Option<Overrun> {
        if self.elapsed() >= limits.max_request_time {
            Some(Overrun::TotalTime)
        } else if self.busy() >= limits.timeout {
            Some(Overrun::Deadline)
        } else {
            None
        }
    }

    /// Completes when the request runs past one of `limits`, saying which. Races the
    /// call, so a handler blocked in a host call (a WASI sleep, say) is stopped too,
    /// not only one running wasm.
    pub(super) async fn watchdog(&self, limits: &RequestLimits) -> Overrun {
        loop {
            if let Some(overrun) = self.overrun(limits) {
                return overrun;
            }
            let deadline_left = limits.timeout.saturating_sub(self.busy());
            let total_left = limits.max_request_time.saturating_sub(self.elapsed());
            // NB: while the request waits in recv() its running time stands still, so
            // this wakes, finds time left, and sleeps again; at most once per `timeout`.
            tokio::time::sleep(deadline_left.min(total_left)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout_ms: u64, total_ms: u64) -> RequestLimits {
        RequestLimits {
            timeout: Duration::from_millis(timeout_ms),
            max_request_time: Duration::from_millis(total_ms),
            ..RequestLimits::DEFAULT
        }
    }

    #[test]
    fn waits_do_not_count_against_the_deadline_but_do_against_the_total() {
        let clock = RequestClock::start();
        clock.begin_wait();
        std::thread::sleep(Duration::from_millis(30));
        assert!(clock.busy() < Duration::from_millis(20), "{:?}", clock.busy());
        clock.end_wait();
        assert!(clock.elapsed() >= Duration::from_millis(30));
        assert_eq!(clock.overrun(&limits(1000, 20)), Some(Overrun::TotalTime));
        assert_eq!(clock.overrun(&limits(1000, 1000)), None);
    }

    #[tokio::test]
    async fn the_watchdog_fires_on_the_deadline_of_a_busy_request() {
        let clock = RequestClock::start();
        let started = Instant::now();
        assert_eq!(clock.watchdog(&limits(50, 10_000)).await, Overrun::Deadline);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn the_watchdog_fires_on_the_total_time_of_a_waiting_request() {
        let clock = RequestClock::start();
        clock.begin_wait();
        assert_eq!(clock.watchdog(&limits(20, 80)).await, Overrun::TotalTime);
        assert!(clock.busy() < Duration::from_millis(20));
    }
}
