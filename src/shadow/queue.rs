//! The bounded queue between the request path and the shadow worker. Pushing never waits: when
//! the queue holds `capacity` items the item is refused (the caller counts it as skipped), so a
//! slow shadow costs mirrored items, never live latency. [`QueueState`] is the plain logic;
//! [`MirrorQueue`] adds the lock and the wake-up.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Items waiting for the shadow, at most `capacity` of them.
#[derive(Debug)]
pub struct QueueState<T> {
    capacity: usize,
    items: VecDeque<T>,
    closed: bool,
}

impl<T> QueueState<T> {
    pub fn new(capacity: usize) -> Self {
        QueueState {
            capacity,
            items: VecDeque::new(),
            closed: false,
        }
    }

    /// Queues as many of `items` as fit, in order; returns how many were queued (the rest are
    /// dropped). A closed queue takes nothing.
    pub fn push(&mut self, items: impl IntoIterator<Item = T>) -> usize {
        if self.closed {
            return 0;
        }
        let mut queued = 0;
        for item in items {
            if self.items.len() >= self.capacity {
                break;
            }
            self.items.push_back(item);
            queued += 1;
        }
        queued
    }

    /// Takes up to `max` items, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<T> {
        let n = max.min(self.items.len());
        self.items.drain(..n).collect()
    }

    /// Refuses every later push and returns what was waiting.
    pub fn close(&mut self) -> Vec<T> {
        self.closed = true;
        self.items.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// [`QueueState`] shared by the request path (push) and the worker (take).
#[derive(Debug)]
pub struct MirrorQueue<T> {
    state: Mutex<QueueState<T>>,
    ready: Notify,
}

impl<T> MirrorQueue<T> {
    pub fn new(capacity: usize) -> Self {
        MirrorQueue {
            state: Mutex::new(QueueState::new(capacity)),
            ready: Notify::new(),
        }
    }

    /// As [`QueueState::push`], and the depth after it; wakes the worker when something was
    /// queued. Never waits beyond the lock, which is held only to move items.
    pub fn push(&self, items: impl IntoIterator<Item = T>) -> (usize, usize) {
        let (queued, depth) = {
            let mut state = self.lock();
            (state.push(items), state.len())
        };
        if queued > 0 {
            self.ready.notify_one();
        }
        (queued, depth)
    }

    /// Waits for items and takes up to `max` of them; None once the queue is closed.
    pub async fn take(&self, max: usize) -> Option<Vec<T>> {
        loop {
            // Registered before looking, so a push between the look and the wait is not missed.
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if state.is_closed() {
                    return None;
                }
                if !state.is_empty() {
                    return Some(state.take(max));
                }
            }
            notified.await;
        }
    }

    /// Closes the queue and returns what was waiting; the worker's `take` returns None.
    pub fn close(&self) -> Vec<T> {
        let left = self.lock().close();
        self.ready.notify_waiters();
        self.ready.notify_one();
        left
    }

    pub fn depth(&self) -> usize {
        self.lock().len()
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<T>> {
        self.state.lock().expect("shadow queue lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_the_rest() {
        let mut q = QueueState::new(3);
        assert_eq!(q.push([1, 2]), 2);
        assert_eq!(q.push([3, 4, 5]), 1);
        assert_eq!(q.len(), 3);
        assert_eq!(q.take(2), vec![1, 2]);
        assert_eq!(q.push([6, 7, 8]), 2);
        assert_eq!(q.take(10), vec![3, 6, 7]);
        assert!(q.is_empty());
    }

    #[test]
    fn capacity_zero_refuses_everything() {
        let mut q = QueueState::new(0);
        assert_eq!(q.push([1]), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn a_closed_queue_takes_nothing_and_returns_what_waited() {
        let mut q = QueueState::new(5);
        q.push([1, 2]);
        assert_eq!(q.close(), vec![1, 2]);
        assert_eq!(q.push([3]), 0);
        assert!(q.is_closed());
    }

    #[tokio::test]
    async fn take_waits_for_a_push_and_ends_on_close() {
        let q = std::sync::Arc::new(MirrorQueue::new(4));
        let worker = {
            let q = std::sync::Arc::clone(&q);
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(batch) = q.take(10).await {
                    got.extend(batch);
                }
                got
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(q.push([1, 2]), (2, 2));
        // Wait until the worker has taken them, then close.
        while q.depth() > 0 {
            tokio::task::yield_now().await;
        }
        q.close();
        assert_eq!(worker.await.unwrap(), vec![1, 2]);
    }
}
