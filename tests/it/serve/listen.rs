//! Where the server listens: every listener binds before anything is served, and one that
//! cannot names its own address (not the other three).

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;

use lastmile::app::{self, AdminConfig, AppConfig, StartError};
use lastmile::ensemble::Ensemble;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;

use crate::support::starter;

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_address_is_named_alone() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap();
    let pool = Arc::new(ComputePool::new(1).unwrap());
    let ensemble = Arc::new(Ensemble::load(&starter(), 1).unwrap());
    let config = AppConfig {
        http_addr: local(),
        grpc_addr: local(),
        admin: Some(AdminConfig {
            http_addr: local(),
            grpc_addr: taken,
            ..AdminConfig::default()
        }),
        ..AppConfig::default()
    };
    let Err(error) = app::start(Arc::new(Registry::new(ensemble)), pool, config).await else {
        panic!("the server must not start on a busy address");
    };
    assert!(
        matches!(&error, StartError::Bind { what: "admin gRPC", addr, .. } if *addr == taken),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot listen on {taken} (admin gRPC): ")),
        "{message}"
    );
}

#[test]
fn the_binary_names_the_busy_address_and_exits_1() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(["serve", "--manifest"])
        .arg(starter())
        .args(["--http-addr", &taken, "--grpc-addr", "127.0.0.1:0"])
        .args([
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-grpc-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("lastmile runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(&format!("error: cannot listen on {taken} (HTTP): ")),
        "{stderr}"
    );
    assert!(!line.contains("gRPC") && !line.contains("admin"), "{line}");
}
