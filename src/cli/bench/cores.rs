//! Where the machine's cores went during a load level: the compute threads, the server's I/O
//! threads, and the load generator's own threads. The clients run on the same cores as the
//! server, so what they take is not the server's cost; this says how much it was.
//!
//! Read from the kernel's per-thread run time (`/proc/self/task/*/schedstat`, in nanoseconds),
//! grouped by thread name.

use std::time::Instant;

use lastmile::scheduler::COMPUTE_THREAD_PREFIX;

/// Thread name of the bench's server runtime (the REST and gRPC servers' I/O).
pub const SERVER_THREADS: &str = "bench-server";
/// Thread name of the load generator's runtime.
pub const CLIENT_THREADS: &str = "bench-clients";

/// Seconds on a CPU so far, per group of threads.
#[derive(Clone, Copy, Default)]
struct Totals {
    compute: f64,
    server: f64,
    clients: f64,
}

/// A reading of every thread's run time, and when it was taken.
#[derive(Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    totals: Totals,
}

/// The share of all the machine's cores each group of threads took between two snapshots
/// (0.0 to 1.0; the three add up to at most 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cores {
    pub compute: f64,
    pub server: f64,
    pub clients: f64,
}

/// Every thread of this process now, or `None` where `/proc` does not say (not Linux).
pub fn snapshot() -> Option<Snapshot> {
    let at = Instant::now();
    let mut totals = Totals::default();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            // The thread ended meanwhile.
            continue;
        };
        let Some(nanos) = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let seconds = nanos as f64 * 1e-9;
        let name = name.trim_end();
        // Thread names are cut to 15 bytes here.
        let is = |prefix: &str| name.starts_with(&prefix[..prefix.len().min(15)]);
        if is(COMPUTE_THREAD_PREFIX) {
            totals.compute += seconds;
        } else if is(SERVER_THREADS) {
            totals.server += seconds;
        } else if is(CLIENT_THREADS) {
            totals.clients += seconds;
        }
    }
    Some(Snapshot { at, totals })
}

/// What each group took of `cores` cores from `before` to `after`.
pub fn between(before: Snapshot, after: Snapshot, cores: usize) -> Option<Cores> {
    let wall = (after.at - before.at).as_secs_f64() * cores.max(1) as f64;
    (wall > 0.0).then(|| {
        let share = |f: fn(&Totals) -> f64| (f(&after.totals) - f(&before.totals)).max(0.0) / wall;
        Cores {
            compute: share(|t| t.compute),
            server: share(|t| t.server),
            clients: share(|t| t.clients),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_are_run_time_over_wall_time_times_cores() {
        let at = Instant::now();
        let before = Snapshot {
            at,
            totals: Totals {
                compute: 10.0,
                server: 1.0,
                clients: 2.0,
            },
        };
        let after = Snapshot {
            at: at + Duration::from_secs(4),
            totals: Totals {
                compute: 17.2,
                server: 1.4,
                clients: 2.2,
            },
        };
        let c = between(before, after, 2).unwrap();
        assert!((c.compute - 0.9).abs() < 1e-9, "{c:?}");
        assert!((c.server - 0.05).abs() < 1e-9, "{c:?}");
        assert!((c.clients - 0.025).abs() < 1e-9, "{c:?}");
        // No time passed: no shares.
        assert_eq!(between(before, before, 2), None);
    }

    #[test]
    fn threads_are_told_apart_by_name() {
        let Some(before) = snapshot() else { return };
        let (spun, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (spun_tx, release_rx) = (spun.0, release.1);
        let client = std::thread::Builder::new()
            .name(CLIENT_THREADS.to_owned())
            .spawn(move || {
                let until = Instant::now() + Duration::from_millis(20);
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                spun_tx.send(()).unwrap();
                // Alive until read: a thread's run time goes with it.
                release_rx.recv().ok();
            })
            .unwrap();
        spun.1.recv().unwrap();
        let after = snapshot().unwrap();
        release.0.send(()).unwrap();
        client.join().unwrap();
        let c = between(before, after, 1).unwrap();
        assert!(
            c.clients > 0.0,
            "the spinning client thread is counted: {c:?}"
        );
        assert_eq!(c.server, 0.0, "no server threads here");
    }
}
