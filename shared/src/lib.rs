//! The Ably token-issuing engine shared by every Lambda function of this project.
//!
//! One request, top to bottom:
//!
//! ```text
//! event ─ params::parse ─ caller::verify ─ policy::grant ─ Grant::narrow ─ KeySource::current ─ mint ─ http::respond
//! ```
//!
//! Every failure on that path is an [`error::IssueError`], which alone knows its HTTP
//! status and Ably error code; [`http`] is the only place that turns it into a response.

pub mod ably_rest;
pub mod boundary;
pub mod caller;
pub mod capability;
pub mod clock;
pub mod config;
pub mod error;
pub mod grant;
pub mod http;
pub mod http_client;
pub mod json;
pub mod jwt;
pub mod key;
pub mod key_source;
pub mod log;
pub mod params;
pub mod policy;
pub mod revoke;
pub mod runtime;
pub mod secret;
pub mod secrets;
pub mod service;
pub mod token_request;

pub use runtime::run;
pub use service::{Route, Service};
