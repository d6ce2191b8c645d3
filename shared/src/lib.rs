//! The Ably token-issuing engine shared by every Lambda function of this project.
//!
//! One request, top to bottom:
//!
//! ```text
//! raw event ─ boundary::admit ─ lambda_http conversion ─ Service::handle
//!   issuing:    caller::identify ─ params::parse ─ policy::grant ─ Grant::narrow ─ KeySource::current ─ issue::mint
//!   revocation: caller::identify ─ policy::grant (mayRevoke) ─ revoke::parse ─ revoke::execute
//! ─ http::respond ─ the answer in the event's shape
//! ```
//!
//! Dependencies point one way: `runtime` → `concurrency` (how many invocations at once, which
//! Tokio runtime) and `service` → `issue` / `revoke` → `deps` →
//! `config` → the modules it assembles (`caller`, `policy`, `key_source`, `secrets`,
//! `ably_rest`) → the vocabulary they share (`env`, `route`, `limits`, `future`, `error`).
//!
//! Every failure on that path is an [`error::IssueError`], which alone knows its HTTP
//! status and Ably error code; [`http`] is the only place that turns it into a response.

pub mod ably_rest;
pub mod boundary;
pub mod caller;
pub mod capability;
pub mod clock;
pub mod concurrency;
pub mod config;
pub mod deadline;
pub mod deps;
pub mod env;
pub mod error;
pub mod future;
pub mod grant;
pub mod http;
pub mod http_client;
pub mod issue;
pub mod json;
pub mod jwt;
pub mod key;
pub mod key_source;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod params;
pub mod policy;
pub mod revoke;
pub mod route;
pub mod runtime;
pub mod secret;
pub mod secrets;
pub mod service;
pub mod token_request;

pub use runtime::{main, run};
pub use service::{Route, Service};
