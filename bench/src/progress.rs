//! The once-a-second progress line on stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Answers so far, warm-up included, for the progress line.
#[derive(Default)]
pub(crate) struct Counters {
    right: AtomicU64,
    problems: AtomicU64,
}

impl Counters {
    /// Counts one answer.
    pub(crate) fn count(&self, right: bool) {
        let counter = if right { &self.right } else { &self.problems };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (
            self.right.load(Ordering::Relaxed),
            self.problems.load(Ordering::Relaxed),
        )
    }
}

/// Prints a progress line every second until aborted.
pub(crate) fn spawn(counters: Arc<Counters>, measure_from: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.tick().await;
        let (mut last_right, mut last_at) = (0, Instant::now());
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let (right, problems) = counters.read();
            let rate = (right - last_right) as f64 / now.duration_since(last_at).as_secs_f64();
            let phase = if now < measure_from {
                "warm-up".to_owned()
            } else {
                format!("{:>5.1} s", now.duration_since(measure_from).as_secs_f64())
            };
            eprintln!("[{phase}] {rate:>10.0} req/s   {right:>10} right   {problems} wrong or failed");
            (last_right, last_at) = (right, now);
        }
    })
}
