//! JSON lines on stdout: the only thing this program ever writes there.
//!
//! Records are buffered and flushed once per ring-buffer batch, so a burst costs one `write(2)`
//! while a single event still reaches the reader within milliseconds. A reader that goes away
//! (`monitor --events | head`) is reported as [`OutputError::Closed`] so the daemon can stop
//! cleanly instead of panicking on EPIPE (Rust ignores SIGPIPE, so it arrives as an error).

use std::io::{self, BufWriter, Write};

use serde::Serialize;

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

/// A JSON-lines writer (stdout in the daemon, a `Vec<u8>` in tests).
pub struct Output<W: Write> {
    out: BufWriter<W>,
}

impl Output<io::Stdout> {
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }
}

impl<W: Write> Output<W> {
    pub fn new(w: W) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, w),
        }
    }

    /// Appends one record as a line; call [`Output::flush`] after the batch.
    pub fn write<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), OutputError> {
        // Serialize first so a failing record never leaves half a line behind.
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
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
        o.write(&serde_json::json!({"type":"status","n":1}))
            .unwrap();
        o.write(&serde_json::json!({"type":"event","s":"a\nb"}))
            .unwrap();
        o.flush().unwrap();
        let text = String::from_utf8(o.get_ref().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"n":1,"type":"status"}"#,
                r#"{"s":"a\nb","type":"event"}"#
            ]
        );
    }

    #[test]
    fn broken_pipe_is_closed() {
        let mut o = Output::new(Broken);
        o.write(&serde_json::json!({"a":1})).unwrap();
        assert!(matches!(o.flush(), Err(OutputError::Closed)));
    }
}
