//! Admission control: the bound on items in flight and the per-request limits. A request over a
//! limit is refused at once with a message naming the limit; nothing waits in an unbounded queue.
//! The request path ([`super::Service::predict`]) makes the same checks for every transport, in
//! the same order: items per request, bytes per field, then a place among the items in flight.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ServiceError;
use crate::ensemble::{FieldValue, ValidItem};
use crate::telemetry;

/// The limits a server enforces, as the operator set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Items being scored at once, over all requests; beyond it requests are refused (429).
    pub max_items_in_flight: usize,
    /// Items in one request (or one stream message).
    pub max_items_per_request: usize,
    /// Bytes of one text field of one item.
    pub max_field_bytes: usize,
    /// Bytes of one request body (REST) or message (gRPC).
    pub max_body_bytes: usize,
    /// The longest any request is waited for (a caller may ask for less); None: no limit.
    pub request_timeout: Option<std::time::Duration>,
    /// The longest a request may wait for its turn on the compute threads: one that would wait
    /// longer is refused at once (429 with Retry-After), so that served requests keep a bounded
    /// latency under overload. None: never refused for its wait.
    pub max_queue_wait: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_items_in_flight: 1024,
            max_items_per_request: 256,
            max_field_bytes: 64 * 1024,
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout: None,
            max_queue_wait: None,
        }
    }
}

impl Limits {
    /// Refuses a request of `items` items: none at all, or more than one request may carry.
    pub fn check_count(&self, items: usize) -> Result<(), ServiceError> {
        if items == 0 {
            return Err(ServiceError::NoItems);
        }
        if items > self.max_items_per_request {
            telemetry::rejected("too_many_items");
            return Err(ServiceError::TooManyItems {
                items,
                limit: self.max_items_per_request,
            });
        }
        Ok(())
    }

    /// Refuses an item with a text field longer than the limit; `index` is its position.
    pub fn check_fields(
        &self,
        index: usize,
        item: &ValidItem,
        fields: &[String],
    ) -> Result<(), ServiceError> {
        for (value, name) in item.fields.iter().zip(fields) {
            if let Some(FieldValue::Text(text)) = value {
                if text.len() > self.max_field_bytes {
                    telemetry::rejected("field_too_large");
                    return Err(ServiceError::FieldTooLarge {
                        index,
                        field: name.clone(),
                        bytes: text.len(),
                        limit: self.max_field_bytes,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The bound on items in flight: a semaphore with one permit per item.
pub struct Admission {
    permits: Arc<Semaphore>,
    capacity: usize,
}

/// Items admitted; their places are given back when this is dropped: once the answer is in, or
/// when the caller goes away (which also cancels the rows it still had queued).
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    items: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        telemetry::items_in_flight(-(self.items as f64));
    }
}

impl Admission {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        Admission {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Admits `items` items now, or refuses at once.
    pub fn try_admit(&self, items: usize) -> Result<Admitted, ServiceError> {
        let refuse = || {
            telemetry::rejected("overloaded");
            ServiceError::Overloaded {
                in_flight: self.in_flight(),
                capacity: self.capacity,
                needed: items,
            }
        };
        let n = u32::try_from(items).map_err(|_| refuse())?;
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| refuse())?;
        telemetry::items_in_flight(items as f64);
        Ok(Admitted {
            _permit: permit,
            items,
        })
    }

    /// Items being scored now.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_refuses_beyond_capacity_and_frees_on_drop() {
        let admission = Admission::new(3);
        let a = admission.try_admit(2).unwrap();
        assert_eq!(admission.in_flight(), 2);
        let refused = admission.try_admit(2).unwrap_err();
        assert!(matches!(refused, ServiceError::Overloaded { .. }));
        assert!(refused.to_string().contains("--max-items-in-flight"));
        let b = admission.try_admit(1).unwrap();
        drop(a);
        assert_eq!(admission.in_flight(), 1);
        drop(b);
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let admission = Admission::new(0);
        assert!(matches!(
            admission.try_admit(1).unwrap_err(),
            ServiceError::Overloaded { .. }
        ));
    }

    #[test]
    fn count_limits_name_the_flag() {
        let limits = Limits {
            max_items_per_request: 2,
            ..Limits::default()
        };
        assert!(limits.check_count(2).is_ok());
        let e = limits.check_count(3).unwrap_err();
        assert!(matches!(e, ServiceError::TooManyItems { .. }));
        assert!(e.to_string().contains("--max-items-per-request"));
        assert_eq!(limits.check_count(0).unwrap_err(), ServiceError::NoItems);
    }

    #[test]
    fn field_limit_counts_bytes() {
        let limits = Limits {
            max_field_bytes: 4,
            ..Limits::default()
        };
        let fields = vec!["title".to_owned()];
        let item = |t: &str| ValidItem {
            fields: vec![Some(FieldValue::Text(t.into()))],
            options: Default::default(),
        };
        assert!(limits.check_fields(0, &item("abcd"), &fields).is_ok());
        let e = limits.check_fields(1, &item("äbcd"), &fields).unwrap_err();
        assert!(matches!(e, ServiceError::FieldTooLarge { .. }));
        let message = e.to_string();
        assert!(message.contains("item 1") && message.contains("--max-field-bytes"));
    }
}
