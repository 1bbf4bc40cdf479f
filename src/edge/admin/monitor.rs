//! The live monitor on the admin REST API: its report as JSON (`GET /admin/v1/monitor/report`,
//! [`LiveReport`]) and drawn as one self-contained HTML page (`GET
//! /admin/v1/monitor/report.html`). See `crate::monitor::live` for what it holds.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};

use crate::deploy::Deployer;
use crate::monitor::live::LiveReport;
use crate::monitor::report::{render, Page};

/// The REST routes, merged into the admin router (behind its token check and metrics layer).
pub fn routes() -> Router<Arc<Deployer>> {
    Router::new()
        .route("/admin/v1/monitor/report", get(report))
        .route("/admin/v1/monitor/report.html", get(page))
}

async fn report(State(d): State<Arc<Deployer>>) -> Json<LiveReport> {
    Json(d.monitor().report())
}

async fn page(State(d): State<Arc<Deployer>>) -> Html<String> {
    Html(render(&Page::from(&d.monitor().report())))
}
