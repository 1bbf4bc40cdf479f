//! Knowing the members: which of the ensemble's models still change its answers, and whether
//! its answers drift away from what it was validated on.
//!
//! - [`influence`]: each member's influence over many items (pivotal rate, agreement with the
//!   answer, share of the winner's score, compute share), from
//!   [`Combiner::influence`](crate::combine::Combiner::influence);
//! - [`zombies`]: `lastmile zombies`' analysis on labelled data (leave-one-out accuracy) and
//!   [`prune`]: its pruning proposal and the pruned manifest;
//! - [`drift`]: reference distributions and the drift statistics;
//! - [`live`]: the same on a sampled share of live traffic, over a rolling window, as gauges and
//!   in the admin API's report;
//! - [`report`]: the one HTML page both reports are drawn as.
pub mod drift;
pub mod fit;
pub mod influence;
pub mod live;
pub mod prune;
pub mod report;
pub mod zombies;
