//! The one place the process is wired: [`start`] binds every listener (the serving HTTP and gRPC
//! ones, and the admin ones beside them, as siblings), builds the serving state (the registry's
//! live ensemble, the compute pool, the request path, the shadow slot, the live monitor, the
//! deployer), starts the
//! reload triggers, and ties all of them to one drain signal. Nothing below imports this module.
//!
//! Binding comes first and names the address that is busy; nothing is served until every
//! listener is bound (port 0 works: the [`App`] says which ports were bound). SIGTERM or SIGINT
//! (with `handle_signals`), or [`App::shutdown`], begins the drain: readiness turns false, new
//! predictions are refused, the listeners stop accepting, a deploy in flight is stopped, and
//! [`App::wait`] returns once every listener has finished what it had, or the drain timeout has
//! passed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::deploy::{triggers, DeployConfig, Deployer};
use crate::drain::{Drain, DrainSignal};
use crate::edge::{self, admin::AdminAuth};
use crate::hooks::{self, Hooks};
use crate::monitor::live::{Monitor, MonitorSettings};
use crate::registry::Registry;
use crate::scheduler::ComputePool;
use crate::service::{Limits, Observers, Service};
use crate::shadow::{ShadowSettings, ShadowSlot};

/// How to serve.
#[derive(Clone)]
pub struct AppConfig {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub limits: Limits,
    /// Longest wait for in-flight requests once the drain begins.
    pub drain_timeout: Duration,
    /// Begin the drain on SIGTERM or SIGINT (the binary does; tests may not).
    pub handle_signals: bool,
    /// The admin API (hot swap) on its own addresses; None: no admin API and no reloads.
    pub admin: Option<AdminConfig>,
    /// How shadow ensembles run once one is staged (none is at start).
    pub shadow: ShadowSettings,
    /// The live monitor (members' influence and drift on sampled traffic).
    pub monitor: MonitorSettings,
    /// Where tests step in; [`hooks::NoHooks`] otherwise.
    pub hooks: Arc<dyn Hooks>,
    /// Serve SageMaker's container contract on the HTTP listener too ([`edge::sagemaker`]).
    pub sagemaker: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            http_addr: ([127, 0, 0, 1], 8000).into(),
            grpc_addr: ([127, 0, 0, 1], 8001).into(),
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
            handle_signals: false,
            admin: None,
            shadow: ShadowSettings::default(),
            monitor: MonitorSettings::default(),
            hooks: hooks::none(),
            sagemaker: false,
        }
    }
}

/// How the admin side runs.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// REST admin API.
    pub http_addr: SocketAddr,
    /// gRPC admin API (`lastmile.v1.Admin`, `lastmile.v1.Shadow`).
    pub grpc_addr: SocketAddr,
    /// Bearer token every admin call must carry; required when an address is not loopback.
    pub token: Option<String>,
    pub deploy: DeployConfig,
    /// Keep the replaced ensemble for rollback.
    pub keep_previous: bool,
    /// The manifest the server was started with: what SIGHUP and the watch reload.
    pub manifest: Option<PathBuf>,
    /// Reload `manifest` on SIGHUP.
    pub sighup: bool,
    /// Poll `manifest` this often and deploy it when it changes.
    pub watch: Option<Duration>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            http_addr: ([127, 0, 0, 1], 8002).into(),
            grpc_addr: ([127, 0, 0, 1], 8003).into(),
            token: None,
            deploy: DeployConfig::default(),
            keep_previous: true,
            manifest: None,
            sighup: false,
            watch: None,
        }
    }
}

impl AdminConfig {
    /// Refuses an admin API reachable from elsewhere without a token, and an empty token.
    pub fn check(&self) -> Result<(), String> {
        match self.token.as_deref() {
            Some(t) if t.trim().is_empty() => {
                Err("--admin-token is empty; give a secret, or leave it unset".into())
            }
            Some(_) => Ok(()),
            None => {
                let exposed: Vec<String> = [self.http_addr, self.grpc_addr]
                    .iter()
                    .filter(|a| !a.ip().is_loopback())
                    .map(ToString::to_string)
                    .collect();
                if exposed.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the admin API would listen on {} (not loopback) without a token: set \
                         --admin-token (or LASTMILE_ADMIN_TOKEN), or bind it to 127.0.0.1",
                        exposed.join(" and ")
                    ))
                }
            }
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    /// `what` names the listener (`HTTP`, `gRPC`, `admin REST`, `admin gRPC`).
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished.
    Clean,
    /// The drain timeout passed first; what was left was dropped.
    TimedOut,
}

/// Where the admin API listens.
#[derive(Debug, Clone, Copy)]
pub struct AdminAddrs {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
}

/// A running server.
pub struct App {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// The admin API's addresses, if configured.
    pub admin: Option<AdminAddrs>,
    pub service: Arc<Service>,
    /// Drives every change of the live ensemble, if the admin side is configured.
    pub deployer: Option<Arc<Deployer>>,
    drain: Drain,
    task: JoinHandle<std::io::Result<Drained>>,
}

impl App {
    pub fn registry(&self) -> &Arc<Registry> {
        self.service.registry()
    }

    /// Begins the drain, as SIGTERM does.
    pub fn shutdown(&self) {
        self.drain.start();
    }

    /// Waits until the drain has begun: readiness false, new predictions refused.
    pub async fn draining(&self) {
        self.drain.signal().started().await;
    }

    /// Waits for every listener to stop (after the drain began) and says whether they finished
    /// in time. Call it once.
    pub async fn wait(&mut self) -> std::io::Result<Drained> {
        (&mut self.task)
            .await
            .map_err(|e| std::io::Error::other(format!("the server task failed: {e}")))?
    }
}

/// Every listener, bound.
struct Listeners {
    http: TcpListener,
    grpc: TcpListener,
    admin: Option<(TcpListener, TcpListener)>,
}

impl Listeners {
    /// Binds them all, or names the one that could not be bound.
    async fn bind(config: &AppConfig) -> Result<Self, StartError> {
        let http = bind("HTTP", config.http_addr).await?;
        let grpc = bind("gRPC", config.grpc_addr).await?;
        let admin = match &config.admin {
            Some(admin) => Some((
                bind("admin REST", admin.http_addr).await?,
                bind("admin gRPC", admin.grpc_addr).await?,
            )),
            None => None,
        };
        Ok(Listeners { http, grpc, admin })
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Binds every listener and starts serving `registry`'s live ensemble on `pool`: bind, build,
/// serve, and a task that waits for the drain.
pub async fn start(
    registry: Arc<Registry>,
    pool: Arc<ComputePool>,
    config: AppConfig,
) -> Result<App, StartError> {
    if let Some(admin) = &config.admin {
        admin.check().map_err(StartError::Config)?;
    }
    let listeners = Listeners::bind(&config).await?;
    // Before anything records a metric (announcing the live ensemble does).
    let metrics = crate::telemetry::install();
    let parts = Parts::build(registry, pool, &config);
    let (http_addr, grpc_addr) = (listeners.http.local_addr()?, listeners.grpc.local_addr()?);
    let (admin, served) = serve(listeners, &parts, &config, metrics)?;
    if config.handle_signals {
        spawn_signal_task(parts.drain.clone())?;
    }
    let task = tokio::spawn(drain_task(
        parts.drain.signal(),
        served,
        config.drain_timeout,
    ));
    Ok(App {
        http_addr,
        grpc_addr,
        admin,
        service: parts.service,
        deployer: parts.deployer,
        drain: parts.drain,
        task,
    })
}

/// The request path with no listener, for scoring in this process (`lastmile batch`): the same
/// [`Service`] over `registry` and `pool`, with `limits`, no shadow, the live monitor off and no
/// drain (a batch stops itself by taking no new chunk).
pub fn offline(registry: Arc<Registry>, pool: Arc<ComputePool>, limits: Limits) -> Service {
    let hooks = hooks::none();
    let observers = Observers {
        shadow: Arc::new(ShadowSlot::new(
            ShadowSettings::default(),
            Arc::clone(&hooks),
        )),
        monitor: Arc::new(Monitor::new(MonitorSettings {
            fraction: 0.0,
            ..MonitorSettings::default()
        })),
    };
    Service::new(
        registry,
        pool,
        limits,
        observers,
        DrainSignal::never(),
        hooks,
    )
}

/// The serving state, built once every listener is bound.
struct Parts {
    drain: Drain,
    service: Arc<Service>,
    /// With the admin side only.
    deployer: Option<Arc<Deployer>>,
}

impl Parts {
    fn build(registry: Arc<Registry>, pool: Arc<ComputePool>, config: &AppConfig) -> Parts {
        registry.announce();
        let drain = Drain::new();
        let hooks = &config.hooks;
        let shadow = Arc::new(ShadowSlot::new(config.shadow.clone(), Arc::clone(hooks)));
        let monitor = Arc::new(Monitor::new(config.monitor.clone()));
        monitor.start(Arc::clone(&pool));
        let service = Arc::new(Service::new(
            Arc::clone(&registry),
            Arc::clone(&pool),
            config.limits,
            Observers {
                shadow: Arc::clone(&shadow),
                monitor: Arc::clone(&monitor),
            },
            drain.signal(),
            Arc::clone(hooks),
        ));
        let deployer = config.admin.as_ref().map(|admin| {
            registry.set_keep_previous(admin.keep_previous);
            Arc::new(Deployer::new(
                registry,
                pool,
                shadow,
                monitor,
                admin.deploy.clone(),
                drain.signal(),
                Arc::clone(hooks),
            ))
        });
        Parts {
            drain,
            service,
            deployer,
        }
    }
}

type Served = Vec<JoinHandle<std::io::Result<()>>>;

/// Starts every listener (the admin ones beside the serving ones) and the reload triggers.
fn serve(
    listeners: Listeners,
    parts: &Parts,
    config: &AppConfig,
    metrics: Option<&'static PrometheusHandle>,
) -> Result<(Option<AdminAddrs>, Served), StartError> {
    let drain = &parts.drain;
    let service = &parts.service;
    let mut served = vec![
        tokio::spawn(edge::serve_http(
            listeners.http,
            Arc::clone(service),
            metrics,
            config.sagemaker,
            drain.signal(),
        )),
        tokio::spawn(edge::serve_grpc(
            listeners.grpc,
            Arc::clone(service),
            drain.signal(),
        )),
    ];
    let (Some(admin), Some((http, grpc)), Some(deployer)) =
        (&config.admin, listeners.admin, &parts.deployer)
    else {
        return Ok((None, served));
    };
    let addrs = AdminAddrs {
        http_addr: http.local_addr()?,
        grpc_addr: grpc.local_addr()?,
    };
    let auth = AdminAuth::new(admin.token.as_deref());
    served.push(tokio::spawn(edge::admin::serve_http(
        http,
        Arc::clone(deployer),
        auth.clone(),
        drain.signal(),
    )));
    served.push(tokio::spawn(edge::admin::serve_grpc(
        grpc,
        Arc::clone(deployer),
        auth,
        drain.signal(),
    )));
    start_triggers(admin, deployer, drain.signal())?;
    Ok((Some(addrs), served))
}

/// SIGHUP and the manifest watch, if configured.
fn start_triggers(
    config: &AdminConfig,
    deployer: &Arc<Deployer>,
    drain: DrainSignal,
) -> std::io::Result<()> {
    let Some(manifest) = &config.manifest else {
        return Ok(());
    };
    if config.sighup {
        triggers::spawn_sighup_task(Arc::clone(deployer), manifest.clone(), drain.clone())?;
    }
    if let Some(every) = config.watch {
        triggers::spawn_watch_task(Arc::clone(deployer), manifest.clone(), every, drain);
    }
    Ok(())
}

/// Once the drain begins, waits for every listener to finish what it had (the admin ones
/// beside the serving ones, under the same timeout: a deploy in flight is refused, nothing
/// swapped, and its caller told so, not cut off).
async fn drain_task(
    drain: DrainSignal,
    served: Served,
    timeout: Duration,
) -> std::io::Result<Drained> {
    drain.started().await;
    tracing::info!(?timeout, "shutting down: draining in-flight requests");
    let all = async {
        for task in served {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(timeout, all).await {
        Ok(result) => result.map(|()| Drained::Clean),
        Err(_) => Ok(Drained::TimedOut),
    }
}

/// Turns SIGTERM and SIGINT into the drain. The handlers are installed before this returns, so
/// a signal that arrives once `start` returned is never lost.
fn spawn_signal_task(drain: Drain) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        drain.start();
    });
    Ok(())
}
