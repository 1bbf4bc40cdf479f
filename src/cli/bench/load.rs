//! The load generator: `concurrency` clients, each sending one-item requests back to back over one
//! transport for a fixed time, every latency recorded. Items come from the benchmark data, cycled.
//! The clients run on a runtime of their own, so that the cores they take are counted apart from
//! the server's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lastmile::proto::lastmile::v1 as pb;
use lastmile::proto::lastmile::v1::lastmile_client::LastmileClient;
use serde_json::{Map, Value};
use tonic::transport::Channel;

use super::cores::{self, Cores};

/// How requests reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Rest,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "gRPC",
            Transport::Rest => "REST",
        }
    }
}

/// Where the server listens.
#[derive(Clone)]
pub struct Target {
    /// `http://host:port` of the REST API.
    pub http: String,
    /// `http://host:port` of the gRPC API.
    pub grpc: String,
}

/// What one load level measured.
pub struct Level {
    pub concurrency: usize,
    pub items_per_second: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub errors: usize,
    /// What the server's own metrics say of the models meanwhile.
    pub runs: Option<Runs>,
    /// Where the machine's cores went meanwhile.
    pub cores: Option<Cores>,
}

/// The models' runs during a level, from the server's own metrics.
#[derive(Clone, Copy)]
pub struct Runs {
    /// Mean rows per model run: how full the batches were.
    pub rows_per_run: f64,
    /// Seconds the models ran per item, summed over the models: the floor's measure, taken
    /// inside the server.
    pub seconds_per_item: f64,
}

/// One load level: `clients` concurrent clients, each sending one-item requests to `target` over
/// `transport` back to back for `duration` (after a short warm-up), items cycled.
pub struct Load {
    pub target: Target,
    pub transport: Transport,
    pub items: Arc<Vec<Map<String, Value>>>,
    pub clients: usize,
    pub duration: Duration,
}

/// The load generator's own runtime.
pub struct Generator {
    runtime: tokio::runtime::Runtime,
    /// Whether each level says where this process's cores went: only telling when the server
    /// runs in this process too.
    count_cores: bool,
}

impl Generator {
    pub fn new(count_cores: bool) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(cores::CLIENT_THREADS)
            .build()?;
        Ok(Generator {
            runtime,
            count_cores,
        })
    }

    /// Runs `work` on the generator's runtime, apart from the server's.
    pub async fn on<F>(&self, work: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .spawn(work)
            .await
            .expect("the load generator panicked")
    }

    /// Runs `load` on the generator's runtime and measures it.
    pub async fn level(&self, load: Load) -> Level {
        self.runtime
            .spawn(run(load, self.count_cores))
            .await
            .expect("the load generator panicked")
    }
}

/// Runs `load` on the current runtime and measures it.
async fn run(load: Load, count_cores: bool) -> Level {
    let Load {
        target,
        transport,
        items,
        clients: concurrency,
        duration,
    } = load;
    let next = Arc::new(AtomicUsize::new(0));
    let warm_up = duration.min(Duration::from_secs(1));
    let start = Instant::now() + warm_up;
    let end = start + duration;
    // Where the cores go while the clients are measured.
    let sampler = count_cores.then(|| {
        tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let before = cores::snapshot();
            tokio::time::sleep_until(end.into()).await;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cores::between(before?, cores::snapshot()?, cores)
        })
    });
    let grpc = match transport {
        Transport::Grpc => Some(connect(&target).await),
        Transport::Rest => None,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("an HTTP client");
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (items, next, grpc, http) = (
            Arc::clone(&items),
            Arc::clone(&next),
            grpc.clone(),
            http.clone(),
        );
        let url = format!("{}/v1/predict", target.http);
        clients.push(tokio::spawn(async move {
            let mut grpc = grpc.map(LastmileClient::new);
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let item = &items[next.fetch_add(1, Ordering::Relaxed) % items.len()];
                let ok = match &mut grpc {
                    Some(client) => grpc_predict(client, item).await,
                    None => rest_predict(&http, &url, item).await,
                };
                let done = Instant::now();
                if now >= start {
                    if ok {
                        latencies.push(done - now);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for client in clients {
        let (l, e) = client.await.expect("a load client panicked");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Level {
        concurrency,
        items_per_second: latencies.len() as f64 / duration.as_secs_f64(),
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        errors,
        runs: None,
        cores: match sampler {
            Some(sampler) => sampler.await.ok().flatten(),
            None => None,
        },
    }
}

/// A gRPC connection to the server.
async fn connect(target: &Target) -> Channel {
    connect_to(&target.grpc).await
}

/// A gRPC connection to `url`.
pub async fn connect_to(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .expect("a valid gRPC address")
        .connect()
        .await
        .expect("the server accepts gRPC connections")
}

/// Sends `item` for prediction; true when the server answered it.
async fn grpc_predict(client: &mut LastmileClient<Channel>, item: &Map<String, Value>) -> bool {
    client.predict(grpc_request(item)).await.is_ok()
}

/// A one-item request of `item`'s text fields.
pub fn grpc_request(item: &Map<String, Value>) -> pb::PredictRequest {
    let fields = item
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect();
    pb::PredictRequest {
        items: vec![pb::Item {
            fields,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn rest_predict(http: &reqwest::Client, url: &str, item: &Map<String, Value>) -> bool {
    let body = serde_json::json!({ "item": item });
    match http.post(url).json(&body).send().await {
        Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
        Err(_) => false,
    }
}
