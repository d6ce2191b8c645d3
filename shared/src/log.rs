//! Structured JSON logs: one line per request, never a secret or a caller token.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset: `info`, with the Lambda runtime's and the AWS
/// SDK's own chatter at `warn`.
pub const DEFAULT_FILTER: &str = "info,lambda_runtime=warn,lambda_http=warn,aws_smithy_runtime=warn,hyper=warn";

/// Install the JSON subscriber. Level from `RUST_LOG` (default [`DEFAULT_FILTER`]).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing::subscriber::set_global_default(subscriber(filter, std::io::stdout));
}

/// The JSON log format of the functions (one flat object per line), writing to `writer`
/// (`init` uses stdout; the leak test captures it in memory).
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Who a request line names, learnt along the request path (whatever its outcome).
#[derive(Debug, Default)]
pub struct Who {
    /// The clientId the policy issues the caller (never a client's hint).
    pub client_id: Option<String>,
    /// The verifier that established the caller (`hs256`, `jwks`, `authorizer`, `cookie`),
    /// or `anonymous`.
    pub caller: Option<&'static str>,
}

/// Log a start-up configuration error (the function then exits).
pub fn startup_error(error: &dyn std::fmt::Display) {
    tracing::error!(error = %error, "configuration error: the function cannot start");
}
