//! Hot swap served for real: deploys through the validation gate (`gate`), under load with no
//! request lost or mixed (`load`), unchanged models shared (`reuse`), the admin token (`auth`),
//! `lastmile deploy` (`cli`), SIGHUP and the manifest watch (`signals`). Manifests are written to a
//! temporary directory from the fastText fixtures, with absolute paths.

mod auth;
mod cli;
mod gate;
mod load;
mod reuse;
mod signals;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lastmile::deploy::Gate;

pub(crate) use crate::support::{
    eventually, fasttext, manifest_text, root, scrambled_labels, validation_set, write, Answer,
    Hold,
};
use crate::support::{AdminOptions, TestServer};

pub(crate) type Server = TestServer;

/// How a hot-swap test's server runs: always with the admin API.
pub(crate) struct Options {
    pub token: Option<String>,
    pub keep_previous: bool,
    pub gate: Gate,
    /// Holds admitted requests.
    pub hold: Option<Arc<Hold>>,
    /// Holds every admin operation once its candidate is loaded.
    pub deploy_hold: Option<Arc<Hold>>,
    /// The manifest SIGHUP and the watch reload.
    pub reload: Option<PathBuf>,
    pub sighup: bool,
    pub watch: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            keep_previous: true,
            gate: Gate::default(),
            hold: None,
            deploy_hold: None,
            reload: None,
            sighup: false,
            watch: None,
        }
    }
}

/// The server of a hot-swap test: serving `manifest`, with its admin API.
pub(crate) async fn start(manifest: &Path, options: Options) -> TestServer {
    let mut builder = TestServer::builder()
        .manifest(manifest)
        .admin(AdminOptions {
            token: options.token,
            keep_previous: options.keep_previous,
            gate: options.gate,
            reload: options.reload,
            sighup: options.sighup,
            watch: options.watch,
        });
    if let Some(hold) = &options.hold {
        builder = builder.hold_requests(hold);
    }
    if let Some(hold) = &options.deploy_hold {
        builder = builder.hold_deploys(hold);
    }
    builder.start().await
}
