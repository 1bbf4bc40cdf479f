//! The request path, once for every transport: a transport turns its wire format into a
//! [`Request`] (which model it addresses, and its items in an [`Items`] form of its own), calls
//! [`Service::predict`], and turns the [`Reply`] back into its wire format. Everything between
//! happens here, in this order:
//!
//! 1. take ONE snapshot of the live ensemble (a request never sees two versions), and check it is
//!    the model the request addresses;
//! 2. read the items against that snapshot ([`Items::read`]) and check them: their count, each
//!    item's fields ([`Ensemble::validate`]), each text field's size ([`Limits`]);
//! 3. refuse when the server is draining, else take places among the items in flight
//!    ([`Admission`]) or refuse at once;
//! 4. pick the items a staged shadow mirrors ([`ShadowSlot::pick`]) and those the live monitor
//!    analyses ([`Monitor::pick`]);
//! 5. score on the compute pool, never on a tokio thread ([`ComputePool::predict_by`]); a client
//!    that goes away drops the ticket, which cancels its rows still queued, and so does the
//!    request's deadline ([`Deadlines`]); a member that has not answered within its
//!    `timeout_ms` is left out of the items' vote (a degraded answer, see
//!    `scheduler::job`);
//! 6. hand the picked items and their live answers to the shadow and the monitor, without
//!    waiting for either.

mod deadline;
mod error;
mod limits;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use deadline::{parse_grpc_timeout, Deadlines};
pub use error::ServiceError;
pub use limits::{Admission, Admitted, Limits};

use crate::drain::DrainSignal;
use crate::ensemble::{Ensemble, ItemAnswer, ItemError, ItemOptions, ValidItem};
use crate::hooks::{self, Hooks};
use crate::monitor::live::Monitor;
use crate::registry::Registry;
use crate::scheduler::ComputePool;
use crate::shadow::ShadowSlot;
use crate::telemetry;

/// Which served model a request addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    /// Whatever is live (the own API).
    #[default]
    Live,
    /// The live ensemble by name, and version if not empty (the Open Inference Protocol).
    Model { name: String, version: String },
}

/// A request's items as its transport carries them, read against the snapshot that answers them.
pub trait Items {
    /// Each item read against `ensemble` (its fields in order, its options), or why it does not
    /// fit; the outer error is the request's own (e.g. a tensor of the wrong shape).
    fn read(self, ensemble: &Ensemble) -> Result<Vec<Result<ValidItem, ItemError>>, ServiceError>;
}

/// A transport-neutral request.
#[derive(Debug, Clone)]
pub struct Request<I> {
    pub target: Target,
    pub items: I,
    /// How long the caller waits for the answer, if it says (a gRPC deadline, a `timeout_ms`);
    /// the server's `--request-timeout` bounds it.
    pub timeout: Option<Duration>,
}

impl<I> Request<I> {
    /// A request for `target` with no timeout of its own.
    pub fn new(target: Target, items: I) -> Self {
        Request {
            target,
            items,
            timeout: None,
        }
    }
}

/// What answered a request: the snapshot, and one answer per item in request order.
#[derive(Clone)]
pub struct Reply {
    pub ensemble: Arc<Ensemble>,
    pub answers: Vec<ItemAnswer>,
}

/// What a request asks of all its items, as every transport's options say it; an item may
/// narrow its own candidates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestOptions {
    /// None: the default (5).
    pub top_k: Option<usize>,
    pub candidates: Option<Vec<String>>,
    pub explain: bool,
    /// Some(false): run every member, whatever the ensemble's `[cascade]` (None: the default,
    /// let it stop early).
    pub cascade: Option<bool>,
}

impl RequestOptions {
    /// Refuses what no item can be answered with: an empty candidate (an item's own are checked
    /// with the item, [`Ensemble::validate`]; these are checked even when every item overrides
    /// them, so that a request is refused or served whatever its items say).
    pub fn check(&self) -> Result<(), ServiceError> {
        match self.candidates.iter().flatten().find(|c| c.is_empty()) {
            Some(bad) => Err(ServiceError::Malformed(format!(
                "candidates: empty candidate {bad:?}"
            ))),
            None => Ok(()),
        }
    }

    /// One item's options: the request's, with the item's own candidates when it gives them.
    pub fn for_item(&self, candidates: Option<Vec<String>>) -> ItemOptions {
        ItemOptions {
            top_k: self.top_k.unwrap_or(ItemOptions::default().top_k),
            candidates: candidates.or_else(|| self.candidates.clone()),
            explain: self.explain,
            cascade: self.cascade.unwrap_or(true),
        }
    }
}

/// Everything the request path needs, shared by every transport's handlers.
pub struct Service {
    registry: Arc<Registry>,
    pool: Arc<ComputePool>,
    limits: Limits,
    admission: Admission,
    shadow: Arc<ShadowSlot>,
    monitor: Arc<Monitor>,
    drain: DrainSignal,
    hooks: Arc<dyn Hooks>,
}

/// What the request path hands sampled items to, beside the scoring: the shadow slot and the
/// live monitor.
pub struct Observers {
    pub shadow: Arc<ShadowSlot>,
    pub monitor: Arc<Monitor>,
}

impl Service {
    pub fn new(
        registry: Arc<Registry>,
        pool: Arc<ComputePool>,
        limits: Limits,
        observers: Observers,
        drain: DrainSignal,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        Service {
            admission: Admission::new(limits.max_items_in_flight),
            registry,
            pool,
            limits,
            shadow: observers.shadow,
            monitor: observers.monitor,
            drain,
            hooks,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn pool(&self) -> &Arc<ComputePool> {
        &self.pool
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Where a staged shadow is kept (the deployer stages it, the request path mirrors to it).
    pub fn shadow(&self) -> &Arc<ShadowSlot> {
        &self.shadow
    }

    /// The live monitor (the request path samples items for it).
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Whether new predictions are taken (false once the drain began).
    pub fn ready(&self) -> bool {
        !self.drain.is_draining()
    }

    /// The live ensemble, checked against what `target` addresses.
    pub fn snapshot(&self, target: &Target) -> Result<Arc<Ensemble>, ServiceError> {
        let e = self.registry.snapshot();
        if let Target::Model { name, version } = target {
            if *name != e.name {
                return Err(ServiceError::UnknownModel {
                    asked: name.clone(),
                    served: e.name.clone(),
                });
            }
            if !version.is_empty() && *version != e.version {
                return Err(ServiceError::UnknownVersion {
                    name: name.clone(),
                    asked: version.clone(),
                    served: e.version.clone(),
                });
            }
        }
        Ok(e)
    }

    /// Answers a request: see the module's docs for the steps.
    /// Every request that reached the snapshot counts in its statistics, as a success or a
    /// failure ([`Ensemble::stats`]).
    pub async fn predict<I: Items>(&self, request: Request<I>) -> Result<Reply, ServiceError> {
        let arrived = Instant::now();
        let ensemble = self.snapshot(&request.target)?;
        let answers = self.predict_on(&ensemble, request, arrived).await;
        let scored = answers.as_ref().map_or(0, Vec::len);
        ensemble
            .stats
            .request(answers.is_ok(), scored, arrived.elapsed());
        Ok(Reply {
            ensemble,
            answers: answers?,
        })
    }

    async fn predict_on<I: Items>(
        &self,
        ensemble: &Arc<Ensemble>,
        request: Request<I>,
        arrived: Instant,
    ) -> Result<Vec<ItemAnswer>, ServiceError> {
        let deadline = Deadlines::of(arrived, request.timeout, self.limits.request_timeout);
        let items = self.check(ensemble, request.items)?;
        if !self.ready() {
            return Err(ServiceError::ShuttingDown);
        }
        self.check_queue_wait()?;
        let admitted = self.admission.try_admit(items.len())?;
        hooks::pass(self.hooks.admitted()).await;
        let count = items.len() as u64;
        // Which items the shadow (if any) also answers is decided before they go; they are
        // handed to it once the live answers are in, never waiting for it.
        let mirror = self.shadow.pick(ensemble, &items);
        let monitored = self.monitor.pick(ensemble, &items);
        // The compute pool batches these rows with every other request's; dropping the ticket
        // (the client went away, the deadline passed) cancels what has not run yet.
        let ticket = self.pool.predict_served(ensemble, items, deadline.at());
        let answers = deadline.bound(ticket.within_member_timeouts(arrived)).await;
        if let Ok(answers) = &answers {
            telemetry::items_scored(count);
            if let Some(mirror) = mirror {
                mirror.send(answers);
            }
            if let Some(monitored) = monitored {
                monitored.send(answers);
            }
        }
        drop(admitted);
        answers
    }

    /// Refuses a request that would wait longer than `--max-queue-wait` for its turn.
    fn check_queue_wait(&self) -> Result<(), ServiceError> {
        let Some(max) = self.limits.max_queue_wait else {
            return Ok(());
        };
        let wait = self.pool.estimated_wait();
        if wait <= max {
            return Ok(());
        }
        telemetry::rejected("queue_full");
        Err(ServiceError::QueueFull {
            wait_ms: wait.as_millis() as u64,
            max_ms: max.as_millis() as u64,
            retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Reads and checks a request's items against `ensemble`: their count, each item, each field.
    fn check<I: Items>(
        &self,
        ensemble: &Ensemble,
        items: I,
    ) -> Result<Vec<ValidItem>, ServiceError> {
        let read = items.read(ensemble)?;
        self.limits.check_count(read.len())?;
        let mut items = Vec::with_capacity(read.len());
        for (index, item) in read.into_iter().enumerate() {
            let mut item = item.map_err(|error| ServiceError::Item { index, error })?;
            // More predictions than labels cannot be given; a larger top_k would only cost memory.
            item.options.top_k = item.options.top_k.min(ensemble.labels.len());
            self.limits.check_fields(index, &item, &ensemble.fields)?;
            items.push(item);
        }
        Ok(items)
    }
}

/// Items already split into the ensemble's fields, for callers inside the process (the bench,
/// tests): each is validated as it is.
impl Items for Vec<ValidItem> {
    fn read(self, ensemble: &Ensemble) -> Result<Vec<Result<ValidItem, ItemError>>, ServiceError> {
        Ok(self.into_iter().map(|i| ensemble.validate(i)).collect())
    }
}
