//! Structured JSON logs: one line per request, never a secret or a caller token.

use tracing_subscriber::EnvFilter;

/// Install the JSON subscriber. Level from `RUST_LOG` (default `info`, with the Lambda
/// runtime's own chatter at `warn`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,lambda_runtime=warn,lambda_http=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn")
    });
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// Log a start-up configuration error (the function then exits).
pub fn startup_error(error: &dyn std::fmt::Display) {
    tracing::error!(error = %error, "configuration error: the function cannot start");
}
