//! The daemon's log lines on stderr, as text or JSON. Text lines show control characters in
//! messages and fields (a step's output, an alert's labels) as escapes such as `\r` and
//! `\u{1b}`, so that a logged value can neither forge a line nor drive the terminal; JSON
//! escapes them by itself. A log write that fails (stderr closed) is dropped, never a panic.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use clap::ValueEnum;
use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether `c` must not reach a text log as it is: control characters, and the marks that
/// reorder text (bidirectional overrides and isolates).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`hidden`] character written as an escape (`\r`, `\n`, `\t`, `\u{1b}`).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes one field of a text line: the message as it is, others as `name=value`, escaped.
fn field(w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let text = format!("{value:?}");
    match field.name() {
        "message" => w.write_str(&escape(&text)),
        name => write!(w, "{}={}", name.trim_start_matches("r#"), escape(&text)),
    }
}

/// How text lines write the fields of events and spans.
pub fn text_fields() -> impl for<'w> format::FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(field).delimited(" ")
}

/// Logs to stderr at the level `UNTOIL_LOG` asks for (default info), in `format`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNTOIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_target(false)
            .fmt_fields(text_fields())
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn messages_fields_and_spans_show_control_characters_escaped() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .with_target(false)
            .fmt_fields(text_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("run", runbook = %"rb\r\n");
            let _in = span.enter();
            let line = "ok\rFORGED ERROR\u{1b}[2J\u{202e}x\ty";
            tracing::info!(step = %"s\n", stream = "std\rout", "{line}");
        });
        let text = buffer
            .0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        let line = text.trim_end_matches('\n');
        assert!(!line.chars().any(hidden), "{line:?}");
        assert!(
            line.contains("ok\\rFORGED ERROR\\u{1b}[2J\\u{202e}x\\ty"),
            "{line:?}"
        );
        assert!(line.contains("runbook=rb\\r\\n"), "{line:?}");
        assert!(line.contains("step=s\\n"), "{line:?}");
        assert!(line.contains("stream=\"std\\rout\""), "{line:?}");
    }

    #[test]
    fn plain_text_is_left_as_it_is() {
        assert!(matches!(escape("disk 91% on db-1 é"), Cow::Borrowed(_)));
    }
}
