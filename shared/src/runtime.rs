//! The one entry point of every function: `main` is `shared::runtime::run(Route::Jwt)`.
//!
//! The Lambda runtime hands each invocation's event over raw; [`answer`] admits it at the
//! [`crate::boundary`] (so no client input reaches a panicking conversion), then runs the
//! real `lambda_http` conversion and the [`Service`], and shapes the answer for the event's
//! origin (REST, HTTP API, Function URL) exactly as `lambda_http::run` does.

use crate::boundary::{self, Admitted};
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

/// Initialise logging, metrics and the [`Service`] for `route`, then serve invocations until
/// the runtime stops. A configuration error is logged and ends the process (the function then
/// refuses to start, naming the setting).
///
/// Each invocation runs with its context (request id, X-Ray trace id, cold start) set for
/// every log line it writes ([`crate::log::within`]), and with its deadline for every call to
/// a dependency ([`crate::deadline`]).
pub async fn run(route: Route) -> Result<(), Error> {
    crate::log::init();
    let started = std::time::Instant::now();
    crate::metrics::init(&crate::env::ProcessEnv).inspect_err(|e| crate::log::startup_error(e))?;
    let service = Service::from_env(route)
        .await
        .inspect_err(|e| crate::log::startup_error(e))?;
    let init_us = started.elapsed().as_micros() as u64;
    tracing::info!(route = route.name(), init_us, "initialised: serving requests");
    let service = &service;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        let invocation = crate::log::Invocation {
            request_id: event.context.request_id.clone(),
            xray_trace_id: event.context.xray_trace_id.clone(),
            cold_start: COLD.swap(false, Ordering::Relaxed),
            init_us,
        };
        let deadline = crate::deadline::of_invocation(event.context.deadline);
        let answer = crate::log::within(invocation, answer(service, event.payload.get(), event.context));
        Ok::<_, Infallible>(crate::deadline::within_any(deadline, answer).await)
    }))
    .await
}

/// Answer one raw event: never a panic, always an HTTP answer in the event's shape.
///
/// Both kinds of event go through `lambda_http`'s own adapter: the conversion into a
/// [`Request`] (with the Lambda context and the X-Ray header), then the answer shaped for the
/// event's origin. A refused event is converted as its harmless stand-in and answered with
/// its problem.
pub async fn answer(service: &Service, raw_event: &str, context: Context) -> impl Serialize + Send {
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
