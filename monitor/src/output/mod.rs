//! Records out: the only thing this program ever writes to stdout, one line per record.
//!
//! [`Output`] owns the writer; an [`Encode`] maps [`Record`] to one line of an output format
//! (docs/formats.md): [`native`] JSON lines (the default for pipes), [`ocsf`] (OCSF 1.8.0),
//! [`ecs`] (Elastic Common Schema 9.x) and [`text`] (a readable line, the default on a
//! terminal). A new format is one file here that implements [`Encode`], and a [`Format`].
//!
//! Records are encoded into one batch and handed to a [`Sink`] once per ring-buffer batch, so a
//! burst costs one `write(2)` while a single event still reaches the reader within milliseconds.
//! Replay and the tests write to any [`Write`] at once; the daemon hands batches to a
//! writer thread through a bounded [`queue`], so that a slow or blocked reader never blocks the
//! ring buffer: when the queue is full, [`Output`] drops records, events first, and counts each
//! drop by kind ([`OutputDrops`]). A reader that goes away (`monitor --events | head`) is
//! reported as [`OutputError::Closed`] (Rust ignores SIGPIPE, so EPIPE arrives as an error).

pub mod ecs;
mod fields;
pub mod native;
pub mod ocsf;
pub mod queue;
pub mod text;

use std::io::{self, Write};

pub use self::queue::{OnClosed, Queue, Target};
pub use crate::record::OutputDrops;
use crate::record::{OutputStatus, Record};

/// The `--format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatName {
    /// monitor's own JSON lines (docs/alerts.md): the default when stdout is not a terminal.
    Native,
    /// OCSF 1.8.0 JSON lines.
    Ocsf,
    /// Elastic Common Schema 9.x JSON lines.
    Ecs,
    /// One readable line per record, coloured on a terminal: the default when stdout is one.
    Text,
}

/// An output format, resolved for the stdout it writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Native,
    Ocsf,
    Ecs,
    /// `colour`: ANSI colours (a terminal, and `NO_COLOR` unset or empty).
    Text {
        colour: bool,
    },
}

impl Format {
    /// What `--format` (or its absence) means: without one, `text` on a terminal and `native`
    /// elsewhere (pipes, files: what programs read). Text is coloured only on a terminal and
    /// only without `NO_COLOR` (<https://no-color.org>: set to anything but the empty string).
    pub fn choose(requested: Option<FormatName>, terminal: bool, no_color: bool) -> Self {
        match requested {
            Some(FormatName::Native) => Self::Native,
            None if !terminal => Self::Native,
            Some(FormatName::Ocsf) => Self::Ocsf,
            Some(FormatName::Ecs) => Self::Ecs,
            Some(FormatName::Text) | None => Self::Text {
                colour: terminal && !no_color,
            },
        }
    }

    /// [`Format::choose`] for this process's stdout and environment.
    pub fn for_stdout(requested: Option<FormatName>) -> Self {
        use std::io::IsTerminal as _;
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self::choose(requested, io::stdout().is_terminal(), no_color)
    }

    pub fn encoder(self) -> Box<dyn Encode> {
        match self {
            Self::Native => Box::new(native::Native),
            Self::Ocsf => Box::new(ocsf::Ocsf),
            Self::Ecs => Box::new(ecs::Ecs),
            Self::Text { colour } => Box::new(text::Text { colour }),
        }
    }
}

/// Maps a record to one line of an output format (without the newline).
pub trait Encode: Send {
    fn encode(&self, record: &Record, line: &mut Vec<u8>) -> Result<(), OutputError>;
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("stdout was closed by its reader")]
    Closed,
    #[error("cannot serialize a record: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("record time `{0}` is not RFC 3339")]
    Time(String),
    #[error("cannot write to stdout: {0}")]
    Io(io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Self::Closed
        } else {
            Self::Io(e)
        }
    }
}

/// Where encoded batches of lines go: any [`Write`] at once (replay, tests), or the daemon's
/// [`Queue`] to its writer thread.
pub trait Sink {
    /// Bytes handed over that the reader has not taken yet; [`Output`] drops records when this
    /// reaches its budget. `usize::MAX` once the reader is gone and records are discarded
    /// (`--on-output-closed=continue`).
    fn backlog(&self) -> usize;
    /// Takes a batch of whole lines (it may leave `batch` holding another, empty buffer).
    fn send(&mut self, batch: &mut Vec<u8>) -> Result<(), OutputError>;
    /// What the status records call it.
    fn name(&self) -> String {
        "stdout".to_owned()
    }
    /// Bytes waiting for the reader.
    fn queued(&self) -> usize {
        0
    }
    /// The reader went away.
    fn closed(&self) -> bool {
        false
    }
}

impl<W: Write> Sink for W {
    fn backlog(&self) -> usize {
        0
    }

    fn send(&mut self, batch: &mut Vec<u8>) -> Result<(), OutputError> {
        self.write_all(batch)?;
        batch.clear();
        self.flush()?;
        Ok(())
    }
}

/// Batches flushed early once they hold this much (a drain of thousands of `--events` records).
const BATCH_BYTES: usize = 64 * 1024;

/// Records in one output format, batched into a [`Sink`].
pub struct Output<S: Sink> {
    sink: S,
    format: Box<dyn Encode>,
    /// Whole lines not handed to the sink yet; records are encoded straight into it.
    batch: Vec<u8>,
    /// Bytes the sink and the batch may hold before records are dropped (`None`: never drop).
    budget: Option<usize>,
    drops: OutputDrops,
}

impl Output<io::Stdout> {
    pub fn stdout(format: Format) -> Self {
        Self::with_format(io::stdout(), format.encoder())
    }
}

impl<S: Sink> Output<S> {
    /// Native JSON lines.
    pub fn new(sink: S) -> Self {
        Self::with_format(sink, Box::new(native::Native))
    }

    pub fn with_format(sink: S, format: Box<dyn Encode>) -> Self {
        Self {
            sink,
            format,
            batch: Vec::with_capacity(BATCH_BYTES),
            budget: None,
            drops: OutputDrops::default(),
        }
    }

    /// Drops records rather than hold more than `bytes` not yet taken by the reader: events once
    /// half of it is used, alerts at seven eighths, status records at the whole.
    #[must_use]
    pub fn with_budget(mut self, bytes: usize) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// Appends one record as a line, or drops and counts it when the budget does not allow it;
    /// call [`Output::flush`] after the batch.
    pub fn write(&mut self, record: &Record) -> Result<(), OutputError> {
        if let Some(budget) = self.budget {
            let limit = match record {
                Record::Event(_) => budget / 2,
                Record::Alert(_) => budget / 8 * 7,
                Record::Status(_) => budget,
            };
            if self.sink.backlog().saturating_add(self.batch.len()) >= limit {
                self.drops.count(record);
                return Ok(());
            }
        }
        // A record that fails to encode leaves no half line behind.
        let start = self.batch.len();
        if let Err(e) = self.format.encode(record, &mut self.batch) {
            self.batch.truncate(start);
            return Err(e);
        }
        self.batch.push(b'\n');
        if self.batch.len() >= BATCH_BYTES {
            self.sink.send(&mut self.batch)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.sink.send(&mut self.batch)
    }

    /// Records dropped so far, by kind.
    pub fn drops(&self) -> OutputDrops {
        self.drops
    }

    /// For the status records.
    pub fn status(&self) -> OutputStatus {
        OutputStatus {
            target: self.sink.name(),
            queued_bytes: self.sink.queued(),
            queue_bytes: self.budget.unwrap_or(0),
            dropped: self.drops,
            closed: self.sink.closed(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.sink
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{record::EventType, testing};

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_line_per_record() {
        let mut o = Output::new(Vec::new());
        let mut process = testing::python();
        process.argv = vec!["a\nb".to_owned()];
        let event = testing::event(EventType::Exec, testing::T0, process, vec![]);
        o.write(&Record::Event(event.clone())).unwrap();
        o.write(&Record::Event(event)).unwrap();
        o.flush().unwrap();
        let text = String::from_utf8(o.get_ref().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with(r#"{"type":"event","#), "{text}");
        assert!(lines[0].contains(r#""argv":["a\nb"]"#), "{text}");
    }

    #[test]
    fn text_on_a_terminal_native_for_programs() {
        use FormatName as N;
        // No --format: the terminal decides; NO_COLOR only takes the colours away.
        assert_eq!(Format::choose(None, false, false), Format::Native);
        assert_eq!(
            Format::choose(None, true, false),
            Format::Text { colour: true }
        );
        assert_eq!(
            Format::choose(None, true, true),
            Format::Text { colour: false }
        );
        // An explicit format is kept; text into a pipe has no escape sequences.
        assert_eq!(
            Format::choose(Some(N::Text), false, false),
            Format::Text { colour: false }
        );
        assert_eq!(Format::choose(Some(N::Native), true, false), Format::Native);
        assert_eq!(Format::choose(Some(N::Ocsf), true, false), Format::Ocsf);
        assert_eq!(Format::choose(Some(N::Ecs), false, false), Format::Ecs);
    }

    #[test]
    fn broken_pipe_is_closed() {
        let mut o = Output::new(Broken);
        let event = testing::event(EventType::Exit, testing::T0, testing::python(), vec![]);
        o.write(&Record::Event(event)).unwrap();
        assert!(matches!(o.flush(), Err(OutputError::Closed)));
    }
}
