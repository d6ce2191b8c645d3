//! One request's time budget for the calls it makes to dependencies.
//!
//! Each dependency call has its own bound (Secrets Manager 3 s, one key fetch from the identity
//! provider 3 s, one Ably call 7 s), and together they could outlast the function timeout.
//! So every such call also ends by the request's deadline: the invocation's own
//! (`Lambda-Runtime-Deadline-Ms`, i.e. the function timeout) less [`ANSWER_RESERVE`]. However
//! the calls add up, the function then answers with its 503/504 ErrorInfo (CORS headers
//! included) instead of being cut off by Lambda, which the SDKs see as a network failure.
//!
//! [`crate::runtime`] sets the deadline for each invocation ([`within`]); the call sites ask
//! [`bounded`] or [`cut_off`]. Outside an invocation (unit tests, the CLI) only the calls' own
//! bounds apply.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Time kept, at the end of an invocation, for answering after a dependency call was cut off.
pub const ANSWER_RESERVE: Duration = Duration::from_millis(500);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Run `work` with every dependency call in it ending by `deadline`.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The request deadline of an invocation whose Lambda deadline is `deadline_ms` (milliseconds
/// since the Unix epoch): that instant less [`ANSWER_RESERVE`], never before now. `None`
/// when the runtime gave no deadline (0) or one already past when the invocation starts (a
/// local emulator's clock, not a budget to honour).
pub fn of_invocation(deadline_ms: u64) -> Option<Instant> {
    let now = Instant::now();
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if deadline_ms <= epoch_ms {
        return None;
    }
    let left = Duration::from_millis(deadline_ms - epoch_ms).saturating_sub(ANSWER_RESERVE);
    Some(now + left)
}

/// [`within`] when there is a deadline; `work` as it is otherwise.
pub async fn within_any<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    match deadline {
        Some(deadline) => within(deadline, work).await,
        None => work.await,
    }
}

/// `bound`, shortened to what is left of the current request's budget (zero once it is
/// spent); `bound` itself outside a request.
pub fn bounded(bound: Duration) -> Duration {
    DEADLINE
        .try_with(|deadline| bound.min(deadline.saturating_duration_since(Instant::now())))
        .unwrap_or(bound)
}

/// `work`, or `None` when the current request's deadline passes first; outside a request,
/// `work` to its end.
pub async fn cut_off<F: Future>(work: F) -> Option<F::Output> {
    match DEADLINE.try_with(|deadline| *deadline) {
        Ok(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        Err(_) => Some(work.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn outside_a_request_the_calls_own_bounds_apply() {
        assert_eq!(bounded(Duration::from_secs(7)), Duration::from_secs(7));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            1
        };
        assert_eq!(cut_off(slow).await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn within_a_request_calls_end_by_its_deadline() {
        let started = Instant::now();
        within(started + Duration::from_secs(2), async {
            assert_eq!(bounded(Duration::from_secs(7)), Duration::from_secs(2));
            assert_eq!(bounded(Duration::from_secs(1)), Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(bounded(Duration::from_secs(7)), Duration::from_millis(500));
            let hanging = tokio::time::sleep(Duration::from_secs(60));
            assert_eq!(cut_off(hanging).await, None);
            assert_eq!(Instant::now() - started, Duration::from_secs(2));
            assert_eq!(bounded(Duration::from_secs(7)), Duration::ZERO);
        })
        .await;
    }

    #[test]
    fn an_invocation_deadline_keeps_the_answer_reserve() {
        let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let before = Instant::now();
        let deadline = of_invocation(epoch_ms + 10_000).unwrap();
        let left = deadline - before;
        // Whole milliseconds since the epoch: up to 1 ms more than 9.5 s.
        assert!(
            left <= Duration::from_millis(9_501) && left > Duration::from_millis(9_000),
            "{left:?}"
        );
        // Less than the reserve left: nothing left. A deadline already past, or none, is no budget.
        let close = of_invocation(epoch_ms + 300).unwrap();
        assert!(close - before < Duration::from_millis(50));
        assert_eq!(of_invocation(epoch_ms.saturating_sub(1_000)), None);
        assert_eq!(of_invocation(0), None);
    }
}
