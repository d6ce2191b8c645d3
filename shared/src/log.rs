//! Structured logs: one JSON object per line, never a secret or a caller token.
//!
//! - Every line logged while an invocation is served carries its context: `request_id` (the
//!   Lambda request id), `xray_trace_id` (when Lambda passes one), `function_name` and
//!   `cold_start` (true on the container's first request). The context lives in a task-local
//!   set by [`crate::runtime`] around each invocation, so any line of the request — the
//!   request line, an upstream warning, an audit line — has it.
//! - Lambda's own log controls are honoured: `AWS_LAMBDA_LOG_LEVEL` (the function's
//!   `LoggingConfig.ApplicationLogLevel`) and `AWS_LAMBDA_LOG_FORMAT` (`JSON`, the default, or
//!   `Text`). `RUST_LOG` still overrides the level (any `tracing` filter, for debugging).
//! - Lines carrying metrics ([`crate::metrics`]) are written at any level and stay JSON in
//!   the Text format: CloudWatch reads the metrics from them.

use crate::env::{Env, ProcessEnv};
use std::fmt::{self, Write as _};
use std::future::Future;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The filter used when neither `RUST_LOG` nor `AWS_LAMBDA_LOG_LEVEL` is set: `info`, with
/// the Lambda runtime's and the AWS SDK's own chatter at `warn`.
pub const DEFAULT_FILTER: &str = "info,lambda_runtime=warn,lambda_http=warn,aws_smithy_runtime=warn,hyper=warn";

/// The crates whose own logs are held at `warn` (or `error`) under a Lambda log level.
const CHATTY: [&str; 4] = ["lambda_runtime", "lambda_http", "aws_smithy_runtime", "hyper"];

/// `AWS_LAMBDA_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    Json,
    /// `timestamp LEVEL request_id message key=value…`; metric lines stay JSON.
    Text,
}

/// How the functions log, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A `tracing` filter directive string.
    pub filter: String,
    pub format: LogFormat,
    /// `AWS_LAMBDA_FUNCTION_NAME`, on every line.
    pub function_name: Option<String>,
    /// Said once at start-up: a Lambda log level above INFO with JSON logs, under which Lambda
    /// itself drops the request lines, and with them the metrics the alarms read.
    pub warning: Option<String>,
}

impl LogSettings {
    /// `RUST_LOG` (verbatim) if set, else `AWS_LAMBDA_LOG_LEVEL`, else [`DEFAULT_FILTER`];
    /// then the metric lines at `info` whatever the level.
    pub fn from_env(env: &dyn Env) -> LogSettings {
        let filter = match env.var("RUST_LOG") {
            Some(rust_log) => rust_log.trim().to_owned(),
            None => match env.var("AWS_LAMBDA_LOG_LEVEL").as_deref().and_then(lambda_level) {
                Some(level) => {
                    let chatty = if level == "error" { "error" } else { "warn" };
                    let mut filter = level.to_owned();
                    for target in CHATTY {
                        let _ = write!(filter, ",{target}={chatty}");
                    }
                    filter
                }
                None => DEFAULT_FILTER.to_owned(),
            },
        };
        let format = match env.var("AWS_LAMBDA_LOG_FORMAT") {
            Some(f) if f.trim().eq_ignore_ascii_case("text") => LogFormat::Text,
            _ => LogFormat::Json,
        };
        // Lambda filters JSON lines by their `level` itself; the request lines are INFO.
        let lambda_level_set = env.var("AWS_LAMBDA_LOG_LEVEL");
        let warning = match lambda_level_set.as_deref().map(|l| (l, lambda_level(l))) {
            Some((set, Some("warn" | "error"))) if format == LogFormat::Json => Some(format!(
                "AWS_LAMBDA_LOG_LEVEL is {}: Lambda drops the INFO request lines, which carry the metrics, so the dashboard and the alarms see no traffic; set the function's log level (the template's LogLevel) to INFO",
                set.trim().to_ascii_uppercase()
            )),
            _ => None,
        };
        LogSettings {
            filter: format!("{filter},{}=info", crate::metrics::TARGET),
            format,
            function_name: env.var("AWS_LAMBDA_FUNCTION_NAME"),
            warning,
        }
    }
}

/// Lambda's application log levels as `tracing` levels (`FATAL` is `error`).
fn lambda_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => return None,
    })
}

/// Install the subscriber of the functions (settings from the process environment).
pub fn init() {
    let settings = LogSettings::from_env(&ProcessEnv);
    let (filter, bad_filter) = match EnvFilter::try_new(&settings.filter) {
        Ok(filter) => (filter, None),
        Err(e) => (
            EnvFilter::new(format!("{DEFAULT_FILTER},{}=info", crate::metrics::TARGET)),
            Some(e),
        ),
    };
    let subscriber = subscriber_with(settings.format, settings.function_name, filter, std::io::stdout);
    let _ = tracing::subscriber::set_global_default(subscriber);
    if let Some(e) = bad_filter {
        tracing::warn!(error = %e, "RUST_LOG is not a valid filter (see tracing_subscriber's EnvFilter); logging at info");
    }
    if let Some(warning) = &settings.warning {
        // At ERROR, Lambda keeps only ERROR lines.
        tracing::error!("{warning}");
    }
}

/// The JSON log format of the functions, writing to `writer` (the leak test captures it in
/// memory; the benchmarks write to a sink).
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_with(LogFormat::Json, None, filter, writer)
}

/// The subscriber in `format`, naming `function_name` on every line.
pub fn subscriber_with<W>(
    format: LogFormat,
    function_name: Option<String>,
    filter: EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .event_format(LambdaFormat {
            format,
            function_name: function_name.map(String::into_boxed_str),
        })
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// What every line of an invocation says about it.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub request_id: String,
    pub xray_trace_id: Option<String>,
    /// The container's first invocation.
    pub cold_start: bool,
    /// The function's own init duration (configuration, secrets), in microseconds.
    pub init_us: u64,
}

tokio::task_local! {
    static INVOCATION: Invocation;
}

/// Run `work` (one invocation) with `invocation` as the context of its log lines.
pub async fn within<F: Future>(invocation: Invocation, work: F) -> F::Output {
    INVOCATION.scope(invocation, work).await
}

/// The init duration (µs) when the current invocation is the container's first.
pub fn cold_start_init_us() -> Option<u64> {
    INVOCATION
        .try_with(|i| i.cold_start.then_some(i.init_us))
        .ok()
        .flatten()
}

/// The event format: flat JSON (`timestamp`, `level`, `message`, the event's fields, then the
/// invocation's), or text.
pub struct LambdaFormat {
    format: LogFormat,
    function_name: Option<Box<str>>,
}

impl<S, N> FormatEvent<S, N> for LambdaFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        if self.format == LogFormat::Text && metadata.target() != crate::metrics::TARGET {
            return self.text(&mut writer, event);
        }
        writer.write_str(r#"{"timestamp":""#)?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, r#"","level":"{}""#, metadata.level())?;
        let mut fields = JsonFields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some(name) = &self.function_name {
            writer.write_str(r#","function_name":"#)?;
            json_string(&mut writer, name)?;
        }
        INVOCATION
            .try_with(|i| {
                writer.write_str(r#","request_id":"#)?;
                json_string(&mut writer, &i.request_id)?;
                if let Some(trace) = &i.xray_trace_id {
                    writer.write_str(r#","xray_trace_id":"#)?;
                    json_string(&mut writer, trace)?;
                }
                write!(writer, r#","cold_start":{}"#, i.cold_start)
            })
            .unwrap_or(Ok(()))?;
        writer.write_str("}\n")
    }
}

impl LambdaFormat {
    fn text(&self, writer: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result {
        SystemTime.format_time(writer)?;
        write!(writer, " {:>5}", event.metadata().level())?;
        INVOCATION
            .try_with(|i| write!(writer, " {}", i.request_id))
            .unwrap_or(Ok(()))?;
        let mut fields = TextFields {
            out: writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some(name) = &self.function_name {
            write!(writer, " function_name={name}")?;
        }
        INVOCATION
            .try_with(|i| {
                if let Some(trace) = &i.xray_trace_id {
                    write!(writer, " xray_trace_id={trace}")?;
                }
                write!(writer, " cold_start={}", i.cold_start)
            })
            .unwrap_or(Ok(()))?;
        writer.write_char('\n')
    }
}

/// Writes each field as `,"name":value`; the `emf` field's value is written as is (the
/// members [`crate::metrics`] renders).
struct JsonFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(',')?;
        json_string(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| json_string(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put(field, |out| write!(out, "{value}"));
        } else {
            self.put(field, |out| write!(out, "\"{value}\""));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "emf" {
            if self.result.is_ok() {
                self.result = self.out.write_char(',').and_then(|()| write!(self.out, "{value:?}"));
            }
            return;
        }
        self.put(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Writes `message key=value…` (strings quoted when they need it).
struct TextFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = if value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') || value.is_empty() {
                write!(self.out, " {}={value:?}", field.name())
            } else {
                write!(self.out, " {}={value}", field.name())
            };
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = match field.name() {
                "message" => write!(self.out, " {value:?}"),
                name => write!(self.out, " {name}={value:?}"),
            };
        }
    }
}

/// `s` as a JSON string.
fn json_string(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// A writer escaping what it is given for the inside of a JSON string.
struct Escaped<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::json::write_escaped(self.0, s, true)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn settings(vars: &[(&str, &str)]) -> LogSettings {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LogSettings::from_env(&move |k: &str| vars.get(k).cloned())
    }

    fn capture(format: LogFormat, filter: &str, work: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber_with(format, Some("issue-jwt".into()), EnvFilter::new(filter), move || {
            writer.clone()
        });
        tracing::subscriber::with_default(subscriber, work);
        buffer.lines()
    }

    fn in_invocation(work: impl FnOnce()) {
        let invocation = Invocation {
            request_id: "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(),
            xray_trace_id: Some("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into()),
            cold_start: true,
            init_us: 2500,
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(within(invocation, async move { work() }));
    }

    #[test]
    fn lambda_log_level_sets_the_filter_and_rust_log_overrides_it() {
        assert_eq!(settings(&[]).filter, format!("{DEFAULT_FILTER},metrics=info"));
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]).filter,
            "debug,lambda_runtime=warn,lambda_http=warn,aws_smithy_runtime=warn,hyper=warn,metrics=info"
        );
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]).filter,
            "error,lambda_runtime=error,lambda_http=error,aws_smithy_runtime=error,hyper=error,metrics=info"
        );
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "shared=trace")]).filter,
            "shared=trace,metrics=info"
        );
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "loud")]).filter,
            settings(&[]).filter
        );
    }

    #[test]
    fn lambda_log_format_chooses_json_or_text() {
        assert_eq!(settings(&[]).format, LogFormat::Json);
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).format, LogFormat::Json);
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).format, LogFormat::Text);
        let named = settings(&[("AWS_LAMBDA_FUNCTION_NAME", "stack-IssueJwtFunction-x")]);
        assert_eq!(named.function_name.as_deref(), Some("stack-IssueJwtFunction-x"));
    }

    #[test]
    fn every_line_of_an_invocation_carries_its_request_id_trace_and_cold_start() {
        let lines = capture(LogFormat::Json, "info", || {
            in_invocation(|| {
                tracing::info!(route = "issue-jwt", status = 200u16, "request");
                tracing::warn!(error = %"a \"quoted\"\nline", "something odd");
            })
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            let v: Value = serde_json::from_str(line).expect("one JSON object per line");
            assert_eq!(v["request_id"], "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
            assert_eq!(
                v["xray_trace_id"],
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
            );
            assert_eq!(v["function_name"], "issue-jwt");
            assert_eq!(v["cold_start"], true);
            assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
        }
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            (first["level"].as_str(), first["message"].as_str()),
            (Some("INFO"), Some("request"))
        );
        assert_eq!(first["status"], 200);
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["error"], "a \"quoted\"\nline");
    }

    #[test]
    fn lines_outside_an_invocation_have_no_request_id() {
        let lines = capture(LogFormat::Json, "info", || {
            tracing::info!(init_us = 12u64, "initialised: serving requests")
        });
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(v.get("request_id").is_none() && v.get("cold_start").is_none(), "{v}");
        assert_eq!(v["init_us"], 12);
    }

    #[test]
    fn a_lambda_log_level_above_info_is_warned_about_with_json_logs() {
        for level in ["WARN", "ERROR", "FATAL"] {
            let warning = settings(&[("AWS_LAMBDA_LOG_LEVEL", level)]).warning;
            let warning = warning.unwrap_or_else(|| panic!("no warning at {level}"));
            assert!(
                warning.contains(&format!("AWS_LAMBDA_LOG_LEVEL is {level}:"))
                    && warning.contains("drops the INFO request lines")
                    && warning.contains("to INFO"),
                "{warning}"
            );
        }
        for quiet in [
            &[("AWS_LAMBDA_LOG_LEVEL", "INFO")][..],
            &[("AWS_LAMBDA_LOG_LEVEL", "DEBUG")],
            &[],
        ] {
            assert_eq!(settings(quiet).warning, None, "{quiet:?}");
        }
        // Text logs are not filtered by Lambda.
        let text = settings(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("AWS_LAMBDA_LOG_FORMAT", "Text")]);
        assert_eq!(text.warning, None);
    }

    #[test]
    fn metric_lines_pass_any_level_and_stay_json_in_text_format() {
        let filter = settings(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR")]).filter;
        let lines = capture(LogFormat::Text, &filter, || {
            in_invocation(|| {
                tracing::info!("dropped at ERROR");
                tracing::error!(route = "issue-jwt", "a text line");
                crate::metrics::upstream_failure(crate::metrics::Dependency::Ably, crate::metrics::Failure::Timeout);
            })
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("ERROR 8476a536-e9f4-11e8-9739-2dfe598c3fcd a text line route=issue-jwt"),
            "{}",
            lines[0]
        );
        let metric: Value = serde_json::from_str(&lines[1]).expect("metric lines are JSON");
        assert_eq!(metric["UpstreamFailures"], 1);
        assert_eq!(metric["request_id"], "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert!(metric["_aws"]["CloudWatchMetrics"].is_array());
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        json_string(&mut out, "a\u{1}b\u{7f}\"\\").unwrap();
        assert_eq!(out, r#""a\u0001b\u007f\"\\""#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, "a\u{1}b\u{7f}\"\\");
    }
}
