//! A request's deadline: what the caller waits (a gRPC deadline from `grpc-timeout`, a
//! `timeout_ms`), bounded by the server's `--request-timeout`. Past it the request fails with
//! [`ServiceError::DeadlineExceeded`] and its rows still queued are dropped, never computed.
//!
//! The server gives up a little before the caller does ([`MARGIN`]), so that the caller reads the
//! server's DEADLINE_EXCEEDED (and its reason) rather than its own transport's timeout, and so that
//! tonic's own `grpc-timeout` timer (which answers CANCELLED) never fires first.

use std::future::Future;
use std::time::{Duration, Instant};

use super::ServiceError;

/// How much earlier than the caller the server gives up: at most 5 ms, at most a tenth.
pub const MARGIN: Duration = Duration::from_millis(5);

/// One request's deadline, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    at: Option<Instant>,
    /// What the deadline was given as, for the error's message.
    timeout: Option<Duration>,
}

impl Deadlines {
    /// The deadline of a request that arrived at `arrived`, asking for `asked` (if it did), on a
    /// server whose limit is `server` (if it has one): the shorter of the two, minus the margin.
    pub fn of(arrived: Instant, asked: Option<Duration>, server: Option<Duration>) -> Self {
        let timeout = match (asked, server) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        };
        let at = timeout.map(|t| arrived + t.saturating_sub(MARGIN.min(t / 10)));
        Deadlines { at, timeout }
    }

    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// `work`, unless the deadline passes first: then [`ServiceError::DeadlineExceeded`], and
    /// `work` is dropped (a ticket dropped cancels its rows).
    pub async fn bound<T, E>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, ServiceError>
    where
        ServiceError: From<E>,
    {
        let (Some(at), Some(timeout)) = (self.at, self.timeout) else {
            return Ok(work.await?);
        };
        match tokio::time::timeout_at(at.into(), work).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ServiceError::DeadlineExceeded {
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }
}

/// A `grpc-timeout` header's value (`<up to 8 digits><unit>`, unit one of `H M S m u n`), or
/// None when it is not one (as gRPC servers do, an unreadable value is ignored).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "m", "12", "123456789m", "1.5S", "-1S", "10x"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_shorter_deadline_wins_a_little_early() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let d = Deadlines::of(t0, Some(ms(200)), Some(ms(1000)));
        assert_eq!(d.at(), Some(t0 + ms(195)));
        let d = Deadlines::of(t0, None, Some(ms(1000)));
        assert_eq!(d.at(), Some(t0 + ms(995)));
        // A short one loses a tenth, not 5 ms.
        let d = Deadlines::of(t0, Some(ms(20)), None);
        assert_eq!(d.at(), Some(t0 + ms(18)));
        assert_eq!(Deadlines::of(t0, None, None).at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_dropped_with_its_reason() {
        let d = Deadlines::of(Instant::now(), Some(Duration::from_millis(100)), None);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, ServiceError>(1)
        };
        let e = d.bound(slow).await.unwrap_err();
        assert_eq!(e, ServiceError::DeadlineExceeded { timeout_ms: 100 });
        let fast = async { Ok::<_, ServiceError>(2) };
        assert_eq!(d.bound(fast).await, Ok(2));
    }
}
