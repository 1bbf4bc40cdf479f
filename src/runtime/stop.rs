//! Stopping a model run that nobody waits for any more: every request in its batch gave up on
//! it (the member's `timeout_ms`, the request's deadline, a client gone). A runtime that can be
//! interrupted (onnxruntime, through its run options' terminate flag) registers each run here
//! with a test of whether it is abandoned; one watchdog thread polls the registered runs while
//! there are any and stops those that are. The compute thread is then free for work someone
//! still wants, instead of finishing a run whose answer would be thrown away.

use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

/// Whether every request a run serves has given up on it.
pub type Abandoned = Arc<dyn Fn() -> bool + Send + Sync>;

/// Interrupts one run.
pub trait Stop: Send + Sync {
    fn stop(&self);
}

/// How often the watchdog looks at the runs in progress: a stop lands within this, which is
/// short against a timeout worth setting and costs nothing measurable.
const POLL: Duration = Duration::from_millis(5);

struct Run {
    id: u64,
    abandoned: Abandoned,
    stop: Arc<dyn Stop>,
    stopped: bool,
}

#[derive(Default)]
struct Runs {
    next_id: u64,
    running: Vec<Run>,
}

struct Watchdog {
    runs: Mutex<Runs>,
    changed: Condvar,
}

static WATCHDOG: LazyLock<Arc<Watchdog>> = LazyLock::new(|| {
    let dog = Arc::new(Watchdog {
        runs: Mutex::new(Runs::default()),
        changed: Condvar::new(),
    });
    let watching = Arc::clone(&dog);
    std::thread::Builder::new()
        .name("lastmile-watchdog".into())
        .spawn(move || watching.watch())
        .expect("the watchdog thread starts");
    dog
});

impl Watchdog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn watch(&self) {
        let mut runs = self.lock();
        loop {
            while runs.running.is_empty() {
                runs = self
                    .changed
                    .wait(runs)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            for run in runs.running.iter_mut().filter(|r| !r.stopped) {
                if (run.abandoned)() {
                    run.stop.stop();
                    run.stopped = true;
                }
            }
            runs = self
                .changed
                .wait_timeout(runs, POLL)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// A run being watched; dropping it ends the watch. Stops, which happen under the watchdog's
/// lock, cannot land after the drop, so [`Watched::finish`] tells for sure whether one did.
pub struct Watched {
    id: u64,
}

/// Watches a run about to start: `stop` is called once `abandoned` holds (checked at once, then
/// every few milliseconds until the run finishes).
pub fn watch(abandoned: Abandoned, stop: Arc<dyn Stop>) -> Watched {
    let dog = &*WATCHDOG;
    let mut runs = dog.lock();
    let id = runs.next_id;
    runs.next_id += 1;
    let stopped = abandoned();
    if stopped {
        stop.stop();
    }
    runs.running.push(Run {
        id,
        abandoned,
        stop,
        stopped,
    });
    dog.changed.notify_one();
    Watched { id }
}

impl Watched {
    /// Ends the watch; whether the run was stopped.
    pub fn finish(self) -> bool {
        let mut runs = WATCHDOG.lock();
        let at = runs.running.iter().position(|r| r.id == self.id);
        let run = at.map(|i| runs.running.swap_remove(i));
        std::mem::forget(self);
        run.is_some_and(|r| r.stopped)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut runs = WATCHDOG.lock();
        runs.running.retain(|r| r.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Stop for Counted {
        fn stop(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_run_abandoned_before_it_starts_is_stopped_at_once_and_only_once() {
        let stop = Arc::new(Counted::default());
        let watched = watch(Arc::new(|| true), stop.clone());
        assert_eq!(stop.0.load(Ordering::SeqCst), 1);
        std::thread::sleep(POLL * 4);
        assert!(watched.finish());
        assert_eq!(stop.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_run_is_stopped_once_it_is_abandoned_and_never_after_its_watch_ends() {
        let stop = Arc::new(Counted::default());
        let gone = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&gone);
        let watched = watch(Arc::new(move || flag.load(Ordering::SeqCst)), stop.clone());
        assert_eq!(stop.0.load(Ordering::SeqCst), 0);
        gone.store(true, Ordering::SeqCst);
        // Bounded: the watchdog polls every 5 ms.
        let mut waited = 0;
        while stop.0.load(Ordering::SeqCst) == 0 && waited < 24_000 {
            std::thread::sleep(POLL);
            waited += 1;
        }
        assert!(watched.finish());
        assert_eq!(stop.0.load(Ordering::SeqCst), 1);

        let late = Arc::new(Counted::default());
        let unwatched = watch(Arc::new(|| false), late.clone());
        assert!(!unwatched.finish());
        assert_eq!(late.0.load(Ordering::SeqCst), 0);
    }
}
