//! lastmile's own API served for real, over REST (reqwest) and gRPC (tonic clients generated from
//! `proto/`): answers equal `Ensemble::predict` on both transports, batches, streams, explain,
//! candidate restriction, the ensemble description, malformed input, every limit and overload,
//! each refused with the same error kind on both transports.
//!
//! One test binary: `answers` (what is served) and `refusals` (what is refused, and how) share
//! the helpers here.

#[path = "../serve_support/mod.rs"]
mod serve_support;

mod answers;
mod refusals;

use lastmile::proto::lastmile::v1 as pb;
use serde_json::Value;
use serve_support::{json_item, proto_item, PRODUCTS};

pub(crate) fn products_json() -> Vec<Value> {
    PRODUCTS
        .iter()
        .map(|(t, d)| json_item(&[("title", t), ("description", d)]))
        .collect()
}

pub(crate) fn products_proto() -> Vec<pb::Item> {
    PRODUCTS
        .iter()
        .map(|(t, d)| proto_item(&[("title", t), ("description", d)]))
        .collect()
}

/// The `lastmile-error` kind a gRPC status carries.
pub(crate) fn kind(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("lastmile-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
