//! How many invocations one execution environment serves at once, and the tokio runtime
//! that serves them.
//!
//! Standard Lambda hands an execution environment one invocation at a time. Lambda Managed
//! Instances hand it up to `AWS_LAMBDA_MAX_CONCURRENCY` at once (the function's
//! `PerExecutionEnvironmentMaxConcurrency`); the runtime then polls with that many workers
//! ([`crate::runtime`]). The same binary serves both: the variable unset, empty, not a
//! number or ≤ 1 means one at a time, exactly as before.
//!
//! The tokio runtime follows the mode (`TOKIO_RUNTIME=auto`, the default): one at a time
//! runs on a current-thread runtime (nothing to share, no thread hand-offs); concurrent mode
//! runs on a multi-thread runtime with one worker thread per CPU the environment may use
//! (`std::thread::available_parallelism`, which honours cgroup quotas and CPU affinity), or
//! on a current-thread runtime when that is one CPU. Multi-thread is refused when serving one
//! invocation at a time: the Lambda runtime then calls `set_var` for each invocation. docs/PERFORMANCE.md ("Concurrent mode")
//! measures both flavours in both modes.

use crate::env::{invalid, ConfigError, Env};

/// `AWS_LAMBDA_MAX_CONCURRENCY`: set by Lambda Managed Instances.
pub const MAX_CONCURRENCY_VAR: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
/// `TOKIO_RUNTIME`: `auto` (default), `current-thread` or `multi-thread`.
pub const RUNTIME_VAR: &str = "TOKIO_RUNTIME";

/// The tokio runtime flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    CurrentThread,
    /// With this many worker threads.
    MultiThread(usize),
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::CurrentThread => "current-thread",
            Flavour::MultiThread(_) => "multi-thread",
        }
    }

    /// Worker threads running invocations.
    pub fn threads(self) -> usize {
        match self {
            Flavour::CurrentThread => 1,
            Flavour::MultiThread(n) => n,
        }
    }

    /// The tokio runtime of this flavour, with the I/O driver (the HTTP clients) and the
    /// time driver (deadlines, retries).
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self {
            Flavour::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavour::MultiThread(threads) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(threads.max(1));
                b
            }
        };
        builder.enable_all().build()
    }
}

/// How an execution environment serves invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Invocations served at once: 1, or `AWS_LAMBDA_MAX_CONCURRENCY` when above 1.
    pub concurrency: u32,
    pub flavour: Flavour,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` was set but is not a whole number: served one at a time
    /// (as the Lambda runtime does), and said at start-up.
    pub ignored_concurrency: Option<&'static str>,
}

impl Mode {
    /// From the environment, with `cpus` the CPUs this process may use.
    pub fn from_env(env: &dyn Env, cpus: usize) -> Result<Mode, ConfigError> {
        let raw = env.var(MAX_CONCURRENCY_VAR);
        // Parsed exactly as the Lambda runtime parses it (no trimming), so that the mode said
        // at start-up is the one it polls in.
        let parsed = raw.as_deref().map(str::parse::<u32>);
        let (concurrency, ignored_concurrency) = match parsed {
            None => (1, None),
            Some(Ok(n)) => (n.max(1), None),
            Some(Err(_)) => (
                1,
                Some("AWS_LAMBDA_MAX_CONCURRENCY is not a whole number: serving one invocation at a time"),
            ),
        };
        let cpus = cpus.max(1);
        let flavour = match env.var(RUNTIME_VAR).as_deref().map(str::trim) {
            None | Some("auto") if concurrency > 1 && cpus > 1 => Flavour::MultiThread(cpus),
            None | Some("auto") => Flavour::CurrentThread,
            Some("current-thread") => Flavour::CurrentThread,
            Some("multi-thread") if concurrency > 1 => Flavour::MultiThread(cpus),
            Some("multi-thread") => {
                return Err(invalid(
                    RUNTIME_VAR,
                    "multi-thread needs AWS_LAMBDA_MAX_CONCURRENCY above 1: serving one invocation at a time, the Lambda runtime sets _X_AMZN_TRACE_ID with set_var for each invocation, which is unsound while other threads run; use auto or current-thread",
                ))
            }
            Some(_) => {
                return Err(invalid(
                    RUNTIME_VAR,
                    "use auto (the default: current-thread when serving one invocation at a time, multi-thread with one thread per CPU when AWS_LAMBDA_MAX_CONCURRENCY is above 1), current-thread or multi-thread",
                ))
            }
        };
        Ok(Mode {
            concurrency,
            flavour,
            ignored_concurrency,
        })
    }

    /// From the process environment and the CPUs available to it.
    pub fn from_process() -> Result<Mode, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::from_env(&crate::env::ProcessEnv, cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mode(vars: &[(&str, &str)], cpus: usize) -> Result<Mode, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Mode::from_env(&move |k: &str| vars.get(k).cloned(), cpus)
    }

    #[test]
    fn unset_empty_or_one_serves_one_invocation_at_a_time_on_one_thread() {
        for vars in [
            &[][..],
            &[(MAX_CONCURRENCY_VAR, "")],
            &[(MAX_CONCURRENCY_VAR, "1")],
            &[(MAX_CONCURRENCY_VAR, "0")],
        ] {
            let m = mode(vars, 4).unwrap();
            assert_eq!(
                (m.concurrency, m.flavour, m.ignored_concurrency),
                (1, Flavour::CurrentThread, None),
                "{vars:?}"
            );
        }
    }

    #[test]
    fn managed_instances_concurrency_runs_one_thread_per_cpu() {
        let m = mode(&[(MAX_CONCURRENCY_VAR, "64")], 2).unwrap();
        assert_eq!((m.concurrency, m.flavour), (64, Flavour::MultiThread(2)));
        // One CPU: nothing to gain from more threads.
        assert_eq!(
            mode(&[(MAX_CONCURRENCY_VAR, "64")], 1).unwrap().flavour,
            Flavour::CurrentThread
        );
    }

    #[test]
    fn a_concurrency_that_is_not_a_number_is_served_one_at_a_time_and_said() {
        // " 8" too: the Lambda runtime does not trim it either, and polls one at a time.
        for raw in ["lots", " 8", "8.0", "-4"] {
            let m = mode(&[(MAX_CONCURRENCY_VAR, raw)], 2).unwrap();
            assert_eq!((m.concurrency, m.flavour), (1, Flavour::CurrentThread), "{raw:?}");
            assert!(
                m.ignored_concurrency.is_some_and(|w| w.contains(MAX_CONCURRENCY_VAR)),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn the_flavour_can_be_chosen_and_a_bad_choice_refuses_to_start() {
        let forced = mode(&[(MAX_CONCURRENCY_VAR, "8"), (RUNTIME_VAR, "current-thread")], 2).unwrap();
        assert_eq!(forced.flavour, Flavour::CurrentThread);
        let forced = mode(&[(MAX_CONCURRENCY_VAR, "8"), (RUNTIME_VAR, "multi-thread")], 1).unwrap();
        assert_eq!((forced.concurrency, forced.flavour), (8, Flavour::MultiThread(1)));
        // One at a time, the runtime calls set_var per invocation: only on one thread.
        let err = mode(&[(RUNTIME_VAR, "multi-thread")], 3).unwrap_err().to_string();
        assert!(err.contains("needs AWS_LAMBDA_MAX_CONCURRENCY above 1"), "{err}");
        let err = mode(&[(RUNTIME_VAR, "threads")], 2).unwrap_err().to_string();
        assert!(err.starts_with("TOKIO_RUNTIME is invalid: use auto"), "{err}");
    }

    #[test]
    fn both_flavours_build_and_run() {
        for flavour in [Flavour::CurrentThread, Flavour::MultiThread(2)] {
            let rt = flavour.build().unwrap();
            assert_eq!(rt.block_on(async { tokio::spawn(async { 7 }).await.unwrap() }), 7);
        }
    }
}
