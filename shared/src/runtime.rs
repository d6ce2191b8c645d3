//! The one entry point of every function: `main` is `shared::runtime::main(Route::Jwt)`.
//!
//! The Lambda runtime hands each invocation's event over raw; [`answer`] admits it at the
//! [`crate::boundary`] (so no client input reaches a panicking conversion), then runs the
//! real `lambda_http` conversion and the [`Service`], and shapes the answer for the event's
//! origin (REST, HTTP API, Function URL) exactly as `lambda_http::run` does.

use crate::boundary::{self, Admitted};
use crate::concurrency::Mode;
use crate::service::{Route, Service};
use lambda_http::lambda_runtime::{self, Context, LambdaEvent, Service as _};
pub use lambda_http::Error;
use lambda_http::{service_fn, Adapter, Request};
use serde::Serialize;
use serde_json::value::RawValue;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set until the container's first invocation takes it (`cold_start` in the logs, the
/// `ColdStart` metric).
static COLD: AtomicBool = AtomicBool::new(true);

/// What each function's `main` calls: initialise logging, pick the tokio runtime for the
/// execution environment's mode ([`crate::concurrency`]), then [`run`] on it. A configuration
/// error is logged and ends the process (the function then refuses to start, naming the
/// setting).
pub fn main(route: Route) -> Result<(), Error> {
    crate::log::init();
    let mode = Mode::from_process().inspect_err(|e| crate::log::startup_error(e))?;
    if let Some(warning) = mode.ignored_concurrency {
        tracing::warn!("{warning}");
    }
    let runtime = mode.flavour.build().inspect_err(|e| crate::log::startup_error(e))?;
    runtime.block_on(run(route, mode))
}

/// Initialise metrics and the [`Service`] for `route`, then serve invocations until the
/// runtime stops: `mode.concurrency` at once (each worker polls the Runtime API for its
/// next invocation), or one at a time. Logging must be initialised ([`crate::log::init`]).
///
/// The [`Service`] is built once and shared by every worker: its caches (the secrets, the
/// identity provider's keys, Ably's clock) let one request read while concurrent requests
/// wait for that read.
///
/// Each invocation runs with its context (request id, X-Ray trace id, cold start) set for
/// every log line it writes ([`crate::log::within`]), and with its deadline for every call to
/// a dependency ([`crate::deadline`]); both are task-locals of that invocation's future, so
/// concurrent invocations never see each other's.
pub async fn run(route: Route, mode: Mode) -> Result<(), Error> {
    let started = std::time::Instant::now();
    crate::metrics::init(&crate::env::ProcessEnv).inspect_err(|e| crate::log::startup_error(e))?;
    let service = Service::from_env(route)
        .await
        .inspect_err(|e| crate::log::startup_error(e))?;
    let init_us = started.elapsed().as_micros() as u64;
    tracing::info!(
        route = route.name(),
        init_us,
        concurrency = mode.concurrency,
        runtime = mode.flavour.name(),
        threads = mode.flavour.threads(),
        "initialised: serving requests"
    );
    // Lives as long as the process; every worker holds a reference.
    let service: &'static Service = Box::leak(Box::new(service));
    let handler = service_fn(move |event: LambdaEvent<Box<RawValue>>| invocation(service, init_us, event));
    // `run_concurrent` polls with AWS_LAMBDA_MAX_CONCURRENCY workers when it is above 1, and
    // exactly as `lambda_runtime::run` otherwise.
    lambda_runtime::run_concurrent(handler).await
}

/// One invocation, in its own log context and with its own deadline.
async fn invocation(
    service: &'static Service,
    init_us: u64,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<impl Serialize + Send + 'static, Infallible> {
    let context = crate::log::Invocation {
        request_id: event.context.request_id.clone(),
        xray_trace_id: event.context.xray_trace_id.clone(),
        cold_start: COLD.swap(false, Ordering::Relaxed),
        init_us,
    };
    let deadline = crate::deadline::of_invocation(event.context.deadline);
    let answer = crate::log::within(context, answer(service, event.payload.get(), event.context));
    Ok(crate::deadline::within_any(deadline, answer).await)
}

/// Answer one raw event: never a panic, always an HTTP answer in the event's shape.
///
/// Both kinds of event go through `lambda_http`'s own adapter: the conversion into a
/// [`Request`] (with the Lambda context and the X-Ray header), then the answer shaped for the
/// event's origin. A refused event is converted as its harmless stand-in and answered with
/// its problem.
pub async fn answer(service: &Service, raw_event: &str, context: Context) -> impl Serialize + Send + 'static {
    let (event, mut refusal) = match boundary::admit(raw_event) {
        Admitted::Event(event) => (event, None),
        Admitted::Refused { stand_in, problem } => (stand_in, Some(problem)),
    };
    let mut adapter = Adapter::from(service_fn(move |request: Request| {
        let refusal = refusal.take();
        async move {
            Ok::<_, Infallible>(match refusal {
                None => service.handle(request).await,
                Some(problem) => service.refuse(&request, problem),
            })
        }
    }));
    match adapter.call(LambdaEvent::new(event, context)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
