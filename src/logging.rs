//! The broker's log: text lines (the default) or one JSON object per line,
//! on stderr, filtered by `RUST_LOG` (tracing's `EnvFilter` syntax, e.g.
//! `info,sluice::connection=debug`; unset: `info`).
//!
//! Both formats carry the same fields: the event's own (`topic`,
//! `partition`, `error`, …) and those of the spans it happened in — above
//! all the `request` span of a client request (`api`, `v` for its version,
//! `corr` for its correlation id, `client` for its client id, `peer`; see
//! `connection.rs`). In JSON an event's fields are at the top level next to
//! `timestamp`, `level`, `target` and `message`; the innermost span's
//! fields (with its `name`) are under `span`, and every enclosing span,
//! outermost first, under `spans`. So no event has a field named `message`
//! (nor `level`, `target`, `timestamp`, `span`, `spans`): it would hide the
//! line's own in JSON; handlers name the reason sent to the client `detail`.
//!
//! The format comes from `--log-format` / `SLUICE_LOG_FORMAT`, else from
//! `log.format` in the configuration file: logging starts before the rest of
//! the configuration is checked, so that what the check reports is logged
//! in the chosen format.

use std::io::Write;

use serde::Deserialize;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// The filter of `RUST_LOG`, or `info` when it is unset. A malformed
/// `RUST_LOG` also falls back to `info` (the broker still starts).
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The subscriber writing `format` lines to `writer`, filtered by `filter`;
/// text lines are colored when `ansi`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Installs the process's subscriber: `format` lines on stderr, filtered by
/// `RUST_LOG`, with the records of the `log` crate (rustls's) forwarded to
/// it. Text is colored only on a terminal, and not when `NO_COLOR` is set:
/// a log file or a container's log gets plain lines.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let s = subscriber(format, env_filter(), std::io::stderr, ansi);
    if let Err(e) = s.try_init() {
        let _ = writeln!(std::io::stderr(), "cannot install the log subscriber: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buf {
        type Writer = Buf;
        fn make_writer(&'w self) -> Buf {
            self.clone()
        }
    }

    fn capture(format: LogFormat, filter: &str) -> String {
        let buf = Buf::default();
        let s = subscriber(format, EnvFilter::new(filter), buf.clone(), false);
        tracing::subscriber::with_default(s, || {
            let span = tracing::info_span!(
                "request",
                api = "Produce",
                v = 9,
                corr = 42,
                client = "rdkafka",
                peer = "127.0.0.1:5000"
            );
            let _g = span.enter();
            tracing::warn!(topic = "orders", partition = 3, "produce rejected");
            tracing::debug!("not shown at info");
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_event_and_request_span_fields() {
        let out = capture(LogFormat::Json, "info");
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "produce rejected");
        assert_eq!(v["topic"], "orders");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["span"]["name"], "request");
        assert_eq!(v["span"]["api"], "Produce");
        assert_eq!(v["span"]["v"], 9);
        assert_eq!(v["span"]["corr"], 42);
        assert_eq!(v["span"]["client"], "rdkafka");
        assert_eq!(v["span"]["peer"], "127.0.0.1:5000");
        assert!(v["timestamp"].is_string() && v["target"].is_string());
    }

    #[test]
    fn text_lines_carry_the_same_fields() {
        let out = capture(LogFormat::Text, "info");
        assert_eq!(out.lines().count(), 1, "{out}");
        for f in [
            "WARN",
            "request{",
            "api=\"Produce\"",
            "v=9",
            "corr=42",
            "client=\"rdkafka\"",
            "peer=\"127.0.0.1:5000\"",
            "produce rejected",
            "topic=\"orders\"",
            "partition=3",
        ] {
            assert!(out.contains(f), "{f} missing in {out}");
        }
    }

    #[test]
    fn the_filter_applies_to_both_formats() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(capture(format, "error"), "", "{format}");
            assert_eq!(capture(format, "debug").lines().count(), 2, "{format}");
        }
    }

    #[test]
    fn the_format_is_read_in_lowercase() {
        #[derive(Deserialize)]
        struct T {
            f: LogFormat,
        }
        let t: T = toml::from_str("f = \"json\"").unwrap();
        assert_eq!(t.f, LogFormat::Json);
        assert!(toml::from_str::<T>("f = \"xml\"").is_err());
    }
}
