//! The caller's end of a submitted request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::oneshot;

use super::job::Job;
use crate::ensemble::PredictError;

/// The caller's end of a submitted request: await it (or [`Ticket::wait`] outside async code).
/// Dropping it cancels the request: rows still queued are not run.
pub struct Ticket<T> {
    pub(crate) rx: oneshot::Receiver<Result<T, PredictError>>,
    pub(crate) job: Arc<Job>,
}

impl<T> Ticket<T> {
    /// Awaits the answer, going on without each model that has not answered within its
    /// `timeout_ms` counted from `admitted`: its items are voted without it (see the module's
    /// docs). Without timeouts in the manifest this is awaiting the ticket.
    pub async fn within_member_timeouts(mut self, admitted: Instant) -> Result<T, PredictError> {
        for at in self.job.member_deadlines(admitted) {
            tokio::select! {
                biased;
                answer = &mut self => return answer,
                () = tokio::time::sleep_until(at.into()) => {
                    if self.job.give_up_on_late(admitted, Instant::now()) {
                        // Finishing combines: not on this async thread.
                        let job = Arc::clone(&self.job);
                        let _ = tokio::task::spawn_blocking(move || job.finish()).await;
                    }
                }
            }
        }
        (&mut self).await
    }

    /// Blocks until the answer is there. Not for async code, nor for compute threads.
    pub fn wait(mut self) -> Result<T, PredictError> {
        let rx = std::mem::replace(&mut self.rx, oneshot::channel().1);
        rx.blocking_recv().unwrap_or_else(|_| Err(dropped()))
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, PredictError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(dropped())))
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        self.job.cancel();
    }
}

fn dropped() -> PredictError {
    PredictError {
        model: "(scheduler)".into(),
        reason: "the request was dropped before it was answered: this is a bug".into(),
    }
}
