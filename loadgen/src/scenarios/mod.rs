//! The kinds of result-day users, one file each, and the request helper they share. Every
//! request is named by its route template so reports group it, and every response is checked
//! (status, then body) before it counts as a success.
//!
//! - [`student`]: a student looking up their own result (uniform over the seeded IDs), sometimes
//!   refreshing.
//! - [`hot_spot`]: the skewed mix: the students of a few schools check first.
//! - [`wrong_id`]: mistyped IDs: malformed (400 expected) and unknown (404 expected).
//! - [`harvest`]: a harvester walking the seeded IDs in order, each once, as fast as allowed.
//! - [`alias`]: the reference design's path `/student/{id}`.

pub mod alias;
pub mod harvest;
pub mod hot_spot;
pub mod student;
pub mod wrong_id;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use goose::goose::{
    GooseMethod, GooseRequest, GooseResponse, GooseUser, Scenario, Transaction, TransactionFunction, TransactionResult,
};
use results_core::factor::{FACTOR_HEADER, generated_pin};

use crate::client::UserClients;
use crate::config::Options;
use crate::error::LoadgenError;
use crate::failure::{Failure, Mismatch};
use crate::ids::IdSpace;
use crate::live::Live;
use crate::recorder::Recorder;
use crate::request::Request;
use crate::validate::{check_error, check_result};

/// The 429 envelopes `--rate-limited-ok` accepts: NGINX's per-client limit (`rate_limited`) and
/// the API's failed-lookup limits, per client and per number (docs/second-factor.md).
pub const REFUSAL_CODES: [&str; 3] = ["rate_limited", "too_many_failed_lookups", "too_many_tries"];

/// Whom a request asks for, and so what answer is right.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A seeded student: 200 with that student's result.
    Student(u32),
    /// A well-formed ID outside the data set: 404 `unknown_id`.
    Unknown(u32),
    /// A malformed ID: 400 `invalid_id`.
    Malformed(&'static str),
}

impl Target {
    fn expected_status(self) -> u16 {
        match self {
            Target::Student(_) => 200,
            Target::Unknown(_) => 404,
            Target::Malformed(_) => 400,
        }
    }

    fn check(self, body: &[u8]) -> Result<(), Mismatch> {
        match self {
            Target::Student(id) => check_result(body, id),
            Target::Unknown(_) => check_error(body, 404, "unknown_id"),
            Target::Malformed(_) => check_error(body, 400, "invalid_id"),
        }
    }
}

/// What every user of a run shares: the ID space and the live metrics.
#[derive(Debug)]
pub struct Plan {
    /// The IDs to draw from.
    pub ids: IdSpace,
    /// Live metrics and progress.
    pub live: Arc<Live>,
    /// Percent of a student's lookups that refresh the same result.
    pub refresh_percent: u8,
    /// The run's mergeable latency histograms.
    pub latency: Recorder,
    /// Where each arriving user gets its HTTP client.
    pub clients: UserClients,
    /// The data set requires PINs (`seeder load --pins`): the seed they derive from.
    pub pins: Option<u64>,
    /// A 429 `rate_limited` answer counts as expected (`--rate-limited-ok`).
    pub rate_limited_ok: bool,
    /// The harvest scenario's next position in the ID space.
    pub harvest_next: std::sync::atomic::AtomicU32,
}

/// A path such as `/v1/results/1234567`, written on the stack.
struct PathBuf {
    bytes: [u8; 48],
    len: usize,
}

impl PathBuf {
    fn new(prefix: &str, target: Target) -> Self {
        let mut bytes = [0u8; 48];
        let mut cursor = &mut bytes[..];
        // The longest path is 12 + 10 bytes: writing cannot run out of room.
        let _ = match target {
            Target::Student(id) | Target::Unknown(id) => write!(cursor, "{prefix}{id}"),
            Target::Malformed(text) => write!(cursor, "{prefix}{text}"),
        };
        let len = 48 - cursor.len();
        Self { bytes, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("/")
    }
}

/// Records a completed request in the live metrics and the run's histograms.
fn done(plan: &Plan, request: Request, started: Instant, cadence_ms: u64, error: Option<Failure>) {
    let now = Instant::now();
    let elapsed = now.saturating_duration_since(started);
    plan.live.record(request, elapsed, error.map(Failure::kind));
    plan.latency.record_at(now, request, elapsed, cadence_ms, error);
}

/// Makes `request` for `target`, checks the answer and records it: a wrong status, a transport
/// error or a wrong body is a failure (the last with its request in the error log).
pub async fn fetch(user: &mut GooseUser, plan: &Plan, request: Request, target: Target) -> TransactionResult {
    let path = PathBuf::new(request.prefix(), target);
    let expected = target.expected_status();
    let mut builder = GooseRequest::builder().path(path.as_str()).name(request.name()).expect_status_code(expected);
    // A student knows their own PIN; a mistyped number goes with the PIN the student meant it for.
    if let (Some(seed), Target::Student(id) | Target::Unknown(id)) = (plan.pins, target) {
        let with_pin = user.get_request_builder(&GooseMethod::Get, path.as_str())?;
        builder = builder.set_request_builder(with_pin.header(FACTOR_HEADER, generated_pin(seed, id)));
    }
    let goose_request = builder.build();
    let started = Instant::now();
    let GooseResponse { request: mut metric, response } = user.request(goose_request).await?;
    // goose's expected cadence of this user (ms) under --co-mitigation: the histograms' correction.
    let cadence = metric.user_cadence;
    let response = match response {
        Ok(response) => response,
        Err(_) => {
            // goose has counted the failure and logged the error.
            done(plan, request, started, cadence, Some(Failure::Transport));
            return Ok(());
        }
    };
    if plan.rate_limited_ok && response.status().as_u16() == 429 {
        // Refused by a limit (NGINX's per-client limit, or the API's failed-lookup limits, which
        // a flood of unknown numbers from one address reaches): expected of a flood, if it says so.
        let body = response.bytes().await.unwrap_or_default();
        let refusal = REFUSAL_CODES.iter().map(|code| check_error(&body, 429, code)).find(Result::is_ok);
        return match refusal.unwrap_or(Err(Mismatch::WrongErrorBody)) {
            Ok(()) => {
                done(plan, request, started, cadence, None);
                user.set_success(&mut metric)
            }
            Err(mismatch) => {
                done(plan, request, started, cadence, Some(Failure::Body(mismatch)));
                user.set_failure(&mismatch.to_string(), &mut metric, None, Some(&String::from_utf8_lossy(&body)))
            }
        };
    }
    if response.status().as_u16() != expected {
        done(plan, request, started, cadence, Some(Failure::Status));
        return Ok(());
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(_) => {
            done(plan, request, started, cadence, Some(Failure::Body(Mismatch::Unreadable)));
            return user.set_failure(&Mismatch::Unreadable.to_string(), &mut metric, None, None);
        }
    };
    match target.check(&body) {
        Ok(()) => {
            done(plan, request, started, cadence, None);
            Ok(())
        }
        Err(mismatch) => {
            done(plan, request, started, cadence, Some(Failure::Body(mismatch)));
            let body = String::from_utf8_lossy(&body);
            user.set_failure(&mismatch.to_string(), &mut metric, None, Some(&body))
        }
    }
}

/// A transaction named `name` that runs `look_up` with the plan on every iteration.
macro_rules! plan_transaction {
    ($plan:expr, $name:expr, $look_up:path) => {{
        let plan = std::sync::Arc::clone($plan);
        let function: goose::goose::TransactionFunction = std::sync::Arc::new(move |user| {
            let plan = std::sync::Arc::clone(&plan);
            Box::pin(async move { $look_up(user, &plan).await })
        });
        goose::goose::Transaction::new(function).set_name($name)
    }};
}
pub(crate) use plan_transaction;

/// Adds the user's arrival (`arrive`, then counted in the live users gauge) and departure.
/// One on-start transaction, as goose pauses for the think time after each.
fn with_arrival(plan: &Arc<Plan>, scenario: Scenario, arrive: Arrive) -> Scenario {
    let start = Arc::clone(plan);
    let on_start: TransactionFunction = Arc::new(move |user| {
        match start.clients.for_user() {
            Ok(client) => user.client = client,
            // goose's own client still works; only its idle timeout is not ours.
            Err(e) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| eprintln!("loadgen: a user keeps goose's HTTP client: {e}"));
            }
        }
        arrive(user, &start);
        start.live.user(1);
        start.latency.arrived();
        Box::pin(async { Ok(()) })
    });
    let stop = Arc::clone(plan);
    let on_stop: TransactionFunction = Arc::new(move |_user| {
        stop.live.user(-1);
        Box::pin(async { Ok(()) })
    });
    scenario
        .register_transaction(Transaction::new(on_start).set_name("user arrives").set_on_start())
        .register_transaction(Transaction::new(on_stop).set_name("user leaves").set_on_stop())
}

/// What a user does on arrival, before its first lookup.
type Arrive = fn(&mut GooseUser, &Plan);

fn nothing(_user: &mut GooseUser, _plan: &Plan) {}

/// The weighted scenarios of `options` (a weight of 0 leaves a scenario out).
///
/// # Errors
/// When every weight is 0 or the think time is refused by goose.
pub fn build(plan: &Arc<Plan>, options: &Options) -> Result<Vec<Scenario>, LoadgenError> {
    let (min, max) = options.think_time();
    let candidates: [(usize, Scenario, Arrive); 5] = [
        (options.weight_student, student::scenario(plan), student::arrive),
        (options.weight_hot_spot, hot_spot::scenario(plan), nothing),
        (options.weight_wrong_id, wrong_id::scenario(plan), nothing),
        (options.weight_alias, alias::scenario(plan), nothing),
        (options.weight_harvest, harvest::scenario(plan), nothing),
    ];
    let mut scenarios = Vec::new();
    for (weight, scenario, arrive) in candidates {
        if weight == 0 {
            continue;
        }
        let scenario =
            with_arrival(plan, scenario, arrive).set_weight(weight).map_err(|e| LoadgenError::Config(e.to_string()))?;
        let scenario = if max.is_zero() {
            scenario
        } else {
            scenario.set_wait_time(min, max).map_err(|e| LoadgenError::Config(format!("think time: {e}")))?
        };
        scenarios.push(scenario);
    }
    if scenarios.is_empty() {
        return Err(LoadgenError::Config("every scenario weight is 0 (LOADGEN_WEIGHT_*)".into()));
    }
    Ok(scenarios)
}
