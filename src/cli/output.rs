//! What the CLI prints: human tables, JSON for scripts, errors in plain
//! words with Kafka's error names, and progress on a terminal.

use std::io::IsTerminal;

/// A failed command; its kind decides the exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad flags or input (exit code 2).
    Usage(String),
    /// A Kafka error or another failed operation (exit code 1).
    Failed(String),
    /// The broker cannot be reached (exit code 3).
    Unreachable(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) | CliError::Unreachable(m) => f.write_str(m),
        }
    }
}

impl From<crate::client::Error> for CliError {
    fn from(e: crate::client::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

pub use crate::client::error_name;

/// `what` failed with a Kafka error `code`: "cannot create topic t:
/// TOPIC_ALREADY_EXISTS (36): Topic 't' already exists."
pub fn kafka_error(what: &str, code: i16, message: Option<&str>) -> CliError {
    let detail = match message.filter(|m| !m.is_empty()) {
        Some(m) => format!(": {m}"),
        None => describe(code).map(|d| format!(": {d}")).unwrap_or_default(),
    };
    CliError::Failed(format!(
        "{what}: {} (error {code}){detail}",
        error_name(code)
    ))
}

/// Ok for error code 0, else [`kafka_error`].
pub fn check(
    what: impl FnOnce() -> String,
    code: i16,
    message: Option<&str>,
) -> Result<(), CliError> {
    if code == 0 {
        Ok(())
    } else {
        Err(kafka_error(&what(), code, message))
    }
}

/// A few common errors in words, for answers without an error message.
fn describe(code: i16) -> Option<&'static str> {
    Some(match code {
        3 => "the topic or partition does not exist",
        15 => "the group coordinator is not available",
        16 => "this broker is not the group's coordinator",
        25 => "the group has active members; stop its consumers first",
        29 => "not authorized for this topic",
        30 => "not authorized for this group",
        31 => "not authorized for this cluster operation",
        36 => "a topic with this name already exists",
        37 => "the partition count is not valid",
        38 => "the replication factor is not valid",
        40 => "the config is not valid",
        68 => "the group is not empty; stop its consumers first",
        69 => "the group does not exist",
        _ => return None,
    })
}

/// Rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Prints `value` as JSON, or `human` when not `json`.
pub fn print(json: bool, value: &serde_json::Value, human: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not worth a panic.
    let _ = if json {
        writeln!(out, "{value}")
    } else {
        out.write_all(human.as_bytes())
    };
}

/// A one-line progress count on stderr, shown only on a terminal.
pub struct Progress {
    what: &'static str,
    total: Option<u64>,
    done: u64,
    shown: bool,
    last: std::time::Instant,
    on: bool,
}

impl Progress {
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        Self {
            what,
            total,
            done: 0,
            shown: false,
            last: std::time::Instant::now(),
            on: std::io::stderr().is_terminal(),
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.on && self.last.elapsed() >= std::time::Duration::from_millis(200) {
            self.last = std::time::Instant::now();
            self.shown = true;
            match self.total {
                Some(t) => eprint!("\r{} {}/{t}", self.what, self.done),
                None => eprint!("\r{} {}", self.what, self.done),
            }
        }
    }

    /// Clears the line, if one was shown.
    pub fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names() {
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(0), "NONE");
    }

    #[test]
    fn table_pads_columns() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
