//! One client, paired with the bare models. Each round sends one item to the server over gRPC,
//! then runs the same item through the bare models: alone on this thread (the latency floor's
//! measure) and side by side on the compute threads. The three alternate within milliseconds, so
//! the machine's drift (this VM's memory bandwidth moves by a fifth from one minute to the next)
//! touches all three alike, which the floor measured minutes before the load levels cannot promise.

use std::time::{Duration, Instant};

use lastmile::proto::lastmile::v1::lastmile_client::LastmileClient;
use serde_json::{Map, Value};

use super::floor::{median, Bare};
use super::load::{self, Target};

/// Rounds run before any is recorded.
const WARM_UP_ROUNDS: usize = 5;

/// Medians, in seconds per item, over the recorded rounds.
pub struct Paired {
    pub rounds: usize,
    pub errors: usize,
    /// One item answered by the server over gRPC.
    pub server: f64,
    /// The bare models one after the other on one thread, divided by the compute threads.
    pub latency_floor: f64,
    /// The bare models side by side on the compute threads.
    pub side_by_side: f64,
}

/// Runs paired rounds for `duration` (after a few unrecorded ones). `objects[i]` is the request
/// body of `bare`'s item `i`.
pub async fn run(
    target: &Target,
    objects: &[Map<String, Value>],
    bare: &Bare<'_>,
    threads: usize,
    duration: Duration,
) -> Paired {
    let mut client = LastmileClient::new(load::connect(target).await);
    let (mut server, mut alone, mut side) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    let mut end = None;
    for round in 0.. {
        if round == WARM_UP_ROUNDS {
            end = Some(Instant::now() + duration);
        }
        if end.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let item = round % objects.len();
        let started = Instant::now();
        let ok = load::grpc_predict(&mut client, &objects[item]).await;
        let answered = started.elapsed().as_secs_f64();
        let (a, s) =
            tokio::task::block_in_place(|| (bare.alone(item), bare.side_by_side(item, threads)));
        if end.is_none() {
            continue;
        }
        if !ok {
            errors += 1;
            continue;
        }
        server.push(answered);
        alone.push(a / threads as f64);
        side.push(s);
    }
    Paired {
        rounds: server.len(),
        errors,
        server: median(server),
        latency_floor: median(alone),
        side_by_side: median(side),
    }
}
