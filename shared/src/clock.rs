//! Time, behind a trait so tests can fix it.

use crate::error::IssueError;
use crate::future::BoxFuture;
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Align with a reference clock before timestamps are taken (once per container for
    /// [`crate::ably_rest::AblyClock`], `ABLY_QUERY_TIME=true`); a no-op for local clocks.
    fn calibrate(&self) -> BoxFuture<'_, Result<(), IssueError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that always answers the same instant.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0
    }
}
