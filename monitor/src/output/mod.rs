//! Records out: the only thing this program ever writes to stdout, one line per record.
//!
//! [`Output`] owns the writer; an [`Encode`] maps [`Record`] to one line of an output format
//! (docs/formats.md): [`native`] JSON lines (the default for pipes), [`ocsf`] (OCSF 1.8.0),
//! [`ecs`] (Elastic Common Schema 9.x) and [`text`] (a readable line, the default on a
//! terminal). A new format is one file here that implements [`Encode`], and a [`Format`].
//!
//! Records are buffered and flushed once per ring-buffer batch, so a burst costs one `write(2)`
//! while a single event still reaches the reader within milliseconds. A reader that goes away
//! (`monitor --events | head`) is reported as [`OutputError::Closed`] so the daemon can stop
//! cleanly instead of panicking on EPIPE (Rust ignores SIGPIPE, so it arrives as an error).

pub mod ecs;
mod fields;
pub mod native;
pub mod ocsf;
pub mod text;

use std::io::{self, BufWriter, Write};

use crate::record::Record;

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

/// A line writer (stdout in the daemon, a `Vec<u8>` in tests) in one output format.
pub struct Output<W: Write> {
    out: BufWriter<W>,
    format: Box<dyn Encode>,
    /// Reused for every record.
    line: Vec<u8>,
}

impl Output<io::Stdout> {
    pub fn stdout(format: Format) -> Self {
        Self::with_format(io::stdout(), format.encoder())
    }
}

impl<W: Write> Output<W> {
    /// Native JSON lines.
    pub fn new(w: W) -> Self {
        Self::with_format(w, Box::new(native::Native))
    }

    pub fn with_format(w: W, format: Box<dyn Encode>) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, w),
            format,
            line: Vec::with_capacity(4096),
        }
    }

    /// Appends one record as a line; call [`Output::flush`] after the batch.
    pub fn write(&mut self, record: &Record) -> Result<(), OutputError> {
        // Encode first so a failing record never leaves half a line behind.
        self.line.clear();
        self.format.encode(record, &mut self.line)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush()?;
        Ok(())
    }

    pub fn get_ref(&self) -> &W {
        self.out.get_ref()
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
