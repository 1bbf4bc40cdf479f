//! The fixed pool of compute threads every model runs on. Models never run on async worker
//! threads: a 7,000-way scoring blocks for milliseconds, which would stall a reactor.

use std::num::NonZeroUsize;

/// A fixed set of named compute threads (default: one per core), shared by every ensemble the
/// process holds so that a second, staged ensemble does not double the threads.
pub struct ComputePool {
    pool: rayon::ThreadPool,
}

impl ComputePool {
    /// `threads = 0` means one per core.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("lastmile-compute-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(ComputePool { pool })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `work` on the pool, blocking the caller until it is done.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }

    /// Runs `work` on the pool without waiting for it.
    pub fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        self.pool.spawn(work)
    }
}
