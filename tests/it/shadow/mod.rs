//! Shadow mode served for real: a staged candidate answering a sample of live items off the
//! request path, compared with live (`compare`), under load and failure (`load`), and driven over
//! the admin API and `lastmile deploy --shadow` (`admin`). Live is the starter ensemble.

mod admin;
mod compare;
mod load;

use std::sync::Arc;

use lastmile::ensemble::{Ensemble, ItemAnswer};
use lastmile::shadow::ShadowSettings;

pub(crate) use crate::support::client::ranked;
pub(crate) use crate::support::runtimes::{Failing, Slow};
pub(crate) use crate::support::{known_variant, root, starter, titles, Ranked, TRANSPORTS};
use crate::support::{title_item, AdminOptions, TestServer, Transport};

pub(crate) type Server = TestServer;

/// The admin token of [`start_admin`].
pub(crate) const TOKEN: &str = "shadow-test-token";

/// The starter ensemble live, with `settings` for any shadow staged.
pub(crate) async fn start(settings: ShadowSettings) -> TestServer {
    TestServer::builder().shadow(settings).start().await
}

/// As [`start`], with the admin API (REST and gRPC) on free ports, behind [`TOKEN`].
pub(crate) async fn start_admin(settings: ShadowSettings) -> TestServer {
    TestServer::builder()
        .shadow(settings)
        .admin(AdminOptions {
            token: Some(TOKEN.into()),
            ..AdminOptions::default()
        })
        .start()
        .await
}

/// Sends `titles` in one request over `transport`; the ranked (label, score) lists.
pub(crate) async fn send(
    server: &TestServer,
    transport: Transport,
    titles: &[String],
    top_k: usize,
) -> Vec<Ranked> {
    server
        .send(transport, titles, top_k)
        .await
        .unwrap_or_else(|e| panic!("{transport:?} answers: {e}"))
        .ranked()
}

/// `ensemble`'s answers to titles, straight from the compute pool.
pub(crate) async fn answers(
    server: &TestServer,
    ensemble: &Arc<Ensemble>,
    titles: &[String],
    top_k: usize,
) -> Vec<ItemAnswer> {
    let k = top_k.min(ensemble.labels.len());
    let items = titles.iter().map(|t| title_item(ensemble, t, k)).collect();
    server.answers_of(ensemble, items).await
}
