//! The process's one shutdown signal. [`Drain::start`] (SIGTERM, SIGINT, or a caller) turns it on
//! once; every part that must stop or refuse new work holds a [`DrainSignal`]: the listeners
//! stop accepting, the request path refuses new predictions, readiness turns false, a deploy in
//! flight is stopped where it stands, and the reload triggers end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// The sender side: begins the drain.
#[derive(Debug, Clone)]
pub struct Drain {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

/// The receiver side, cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct DrainSignal {
    flag: Arc<AtomicBool>,
    rx: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Drain {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Begins the drain (again is a no-op).
    pub fn start(&self) {
        self.flag.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }

    pub fn signal(&self) -> DrainSignal {
        DrainSignal {
            flag: Arc::clone(&self.flag),
            rx: self.tx.subscribe(),
        }
    }
}

impl DrainSignal {
    /// A signal that never fires (a part used without a server, such as a deployer in a test).
    pub fn never() -> Self {
        Drain::new().signal()
    }

    /// Whether the drain has begun: one atomic load, for the request path.
    pub fn is_draining(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once the drain has begun; never, if its [`Drain`] is gone without starting it.
    pub async fn started(mut self) {
        if self.rx.wait_for(|&d| d).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_signal_sees_the_start() {
        let drain = Drain::new();
        let (a, b) = (drain.signal(), drain.signal());
        assert!(!a.is_draining());
        let waiting = tokio::spawn(b.clone().started());
        drain.start();
        waiting.await.unwrap();
        assert!(a.is_draining() && b.is_draining());
        // A signal taken after the start sees it too.
        drain.signal().started().await;
    }
}
