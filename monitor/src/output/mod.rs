//! Records out: the only thing this program ever writes to stdout, one line per record.
//!
//! [`Output`] owns the writer; an [`Encode`] maps [`Record`] to one line of an output format.
//! A new format is one file next to [`native`] that implements [`Encode`].
//!
//! Records are buffered and flushed once per ring-buffer batch, so a burst costs one `write(2)`
//! while a single event still reaches the reader within milliseconds. A reader that goes away
//! (`monitor --events | head`) is reported as [`OutputError::Closed`] so the daemon can stop
//! cleanly instead of panicking on EPIPE (Rust ignores SIGPIPE, so it arrives as an error).

pub mod native;

use std::io::{self, BufWriter, Write};

use crate::record::Record;

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
    pub fn stdout() -> Self {
        Self::new(io::stdout())
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
    fn broken_pipe_is_closed() {
        let mut o = Output::new(Broken);
        let event = testing::event(EventType::Exit, testing::T0, testing::python(), vec![]);
        o.write(&Record::Event(event)).unwrap();
        assert!(matches!(o.flush(), Err(OutputError::Closed)));
    }
}
