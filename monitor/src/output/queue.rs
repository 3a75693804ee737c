//! The daemon's output: a writer thread that owns stdout (or `--output FILE`), fed with batches of
//! lines through a channel whose bytes are counted, so that the loop reading the ring buffer
//! never waits for a slow or blocked reader. [`super::Output`] reads [`Queue::backlog`] before
//! each record and drops what the budget does not allow; memory stays bounded whatever the reader
//! does.
//!
//! The writer thread also notices the reader going away: a write failing with EPIPE, or, while
//! nothing is written, the pipe reporting an error (`poll(2)`'s `POLLERR`/`POLLHUP`), so that
//! `monitor | head -1` ends even on a quiet host. What happens then is `--on-output-closed`
//! ([`OnClosed`]). `SIGUSR1` reopens `--output FILE` ([`Queue::reopen`]): after logrotate renamed
//! it, the next batches go to a new file of that name.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::{
        fd::{AsFd as _, AsRawFd as _},
        unix::fs::OpenOptionsExt as _,
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use log::{info, warn};

use super::{OutputError, Sink};

/// Where records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    /// `--output FILE`: appended to, created (mode 0640) when missing, reopened on `SIGUSR1`.
    File(PathBuf),
}

impl Target {
    /// What log lines call it.
    pub fn name(&self) -> String {
        match self {
            Self::Stdout => "stdout".to_owned(),
            Self::File(path) => path.display().to_string(),
        }
    }

    fn open(&self) -> io::Result<File> {
        match self {
            // A descriptor of our own for stdout: plain write(2)s, no `LineWriter` splitting
            // batches at newlines.
            Self::Stdout => Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?)),
            Self::File(path) => open_append(path),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

/// `--on-output-closed`: what the daemon does when the reader of its stdout goes away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnClosed {
    /// Log why and exit non-zero (a supervisor restarts it with a new reader).
    #[default]
    Exit,
    /// Keep running and watching; records are dropped (and counted) from then on.
    Continue,
}

/// A batch in the channel, or an order for the writer.
enum Msg {
    Lines(Vec<u8>),
    Reopen,
}

/// What the writer thread and the daemon's loop share.
struct Shared {
    /// Bytes in the channel and in the writer's hands (buffer capacities: the memory held).
    queued: AtomicUsize,
    /// The reader went away.
    closed: AtomicBool,
    /// A write failed otherwise (disk full, I/O error): the daemon stops with it.
    failed: Mutex<Option<String>>,
    /// Wakes the daemon's loop when the reader went away or a write failed.
    wake: tokio::sync::Notify,
}

/// Wakes the daemon's loop when the reader went away or a write failed (then check
/// [`Queue::closed`] and [`Queue::failed`]).
pub struct Trouble(Arc<Shared>);

impl Trouble {
    pub async fn wait(&self) {
        self.0.wake.notified().await;
    }
}

/// Buffers of at most this capacity are sent back to be filled again.
const SPARE_MAX: usize = 256 * 1024;
/// Batches smaller than this are copied into a buffer of their own size before they are queued,
/// so that a queue of many small batches holds what they need, not a big buffer each.
const COPY_BELOW: usize = 16 * 1024;
/// How often an idle writer checks whether its reader is still there.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The daemon's end of the output queue (a [`Sink`]).
pub struct Queue {
    tx: Option<mpsc::Sender<Msg>>,
    /// Emptied buffers coming back from the writer.
    spare: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    on_closed: OnClosed,
    target: Target,
    thread: Option<thread::JoinHandle<()>>,
}

impl Queue {
    /// Opens the target now (so that a bad `--output` stops the daemon before it starts); the
    /// writer thread starts with [`Queue::start`].
    pub fn open(target: Target, on_closed: OnClosed) -> io::Result<Opened> {
        let file = target.open()?;
        Ok(Opened {
            target,
            file,
            on_closed,
        })
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Why a write failed (other than the reader going away), if one did.
    pub fn failed(&self) -> Option<String> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What the daemon's loop waits on to hear of the reader going away or a write failing.
    pub fn trouble_handle(&self) -> Trouble {
        Trouble(Arc::clone(&self.shared))
    }

    /// Bytes queued for the reader now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// What `--on-output-closed` said.
    pub fn on_closed(&self) -> OnClosed {
        self.on_closed
    }

    /// `--output FILE` is opened again by name (after the batches queued before this call), for
    /// log rotation; stdout is left as it is.
    pub fn reopen(&mut self) {
        match &self.target {
            Target::Stdout => info!("SIGUSR1: the output is stdout, nothing to reopen"),
            Target::File(_) => {
                if let Some(tx) = &self.tx {
                    let _ = tx.send(Msg::Reopen);
                }
            }
        }
    }

    /// Stops the writer after it wrote what is queued, waiting at most `grace` for a reader that
    /// does not read (the process then exits with the rest unwritten).
    pub fn finish(&mut self, grace: Duration) {
        drop(self.tx.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                warn!(
                    "{} bytes of records not taken by the reader of {} after {grace:?}: left unwritten",
                    self.queued(),
                    self.target.name()
                );
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = thread.join();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.finish(Duration::from_secs(2));
    }
}

/// An opened target whose writer thread has not started yet.
pub struct Opened {
    target: Target,
    file: File,
    on_closed: OnClosed,
}

impl Opened {
    /// Starts the writer thread (after the daemon gave up its privileges: the thread inherits
    /// what its creator holds).
    pub fn start(self) -> io::Result<Queue> {
        let (tx, rx) = mpsc::channel();
        let (spare_tx, spare) = mpsc::channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            failed: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        });
        let writer = Writer {
            target: self.target.clone(),
            file: self.file,
            rx,
            spare: spare_tx,
            shared: Arc::clone(&shared),
            gone: false,
        };
        let thread = thread::Builder::new()
            .name("monitor-output".to_owned())
            .spawn(move || writer.run())?;
        Ok(Queue {
            tx: Some(tx),
            spare,
            shared,
            on_closed: self.on_closed,
            target: self.target,
            thread: Some(thread),
        })
    }
}

impl Sink for Queue {
    fn name(&self) -> String {
        self.target.name()
    }

    fn queued(&self) -> usize {
        Queue::queued(self)
    }

    fn closed(&self) -> bool {
        Queue::closed(self)
    }

    fn backlog(&self) -> usize {
        if self.on_closed == OnClosed::Continue && self.closed() {
            return usize::MAX;
        }
        self.queued()
    }

    fn send(&mut self, batch: &mut Vec<u8>) -> Result<(), OutputError> {
        if let Some(why) = self.failed() {
            return Err(OutputError::Io(io::Error::other(why)));
        }
        if self.closed() {
            batch.clear();
            return match self.on_closed {
                OnClosed::Exit => Err(OutputError::Closed),
                OnClosed::Continue => Ok(()),
            };
        }
        let Some(tx) = &self.tx else {
            batch.clear();
            return Ok(());
        };
        let lines = if batch.len() < COPY_BELOW {
            let lines = batch.clone();
            batch.clear();
            lines
        } else {
            let fresh = self
                .spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(super::BATCH_BYTES));
            std::mem::replace(batch, fresh)
        };
        let held = lines.capacity();
        self.shared.queued.fetch_add(held, Ordering::Relaxed);
        if tx.send(Msg::Lines(lines)).is_err() {
            // The writer only ends when told to, or when its thread died: nothing takes these.
            self.shared.queued.fetch_sub(held, Ordering::Relaxed);
            return Err(OutputError::Closed);
        }
        Ok(())
    }
}

/// The writer thread's state.
struct Writer {
    target: Target,
    file: File,
    rx: mpsc::Receiver<Msg>,
    spare: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    /// The reader went away (or a write failed): batches are discarded.
    gone: bool,
}

impl Writer {
    fn run(mut self) {
        loop {
            match self.rx.recv_timeout(IDLE_CHECK) {
                Ok(Msg::Lines(mut lines)) => {
                    if !self.gone {
                        self.write(&lines);
                    }
                    self.shared
                        .queued
                        .fetch_sub(lines.capacity(), Ordering::Relaxed);
                    if lines.capacity() <= SPARE_MAX && lines.capacity() >= super::BATCH_BYTES {
                        lines.clear();
                        let _ = self.spare.send(lines);
                    }
                }
                Ok(Msg::Reopen) => self.reopen(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !self.gone && reader_gone(&self.file) {
                        self.closed("it reports an error or a hang-up");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.gone {
            let _ = self.file.flush();
        }
    }

    fn write(&mut self, lines: &[u8]) {
        match self.file.write_all(lines) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.closed("EPIPE"),
            Err(e) => {
                self.gone = true;
                let why = format!("cannot write to {}: {e}", self.target.name());
                *self
                    .shared
                    .failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                self.shared.wake.notify_one();
            }
        }
    }

    fn closed(&mut self, how: &str) {
        self.gone = true;
        warn!(
            "the reader of {} went away ({how}): records can no longer be delivered",
            self.target.name()
        );
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    fn reopen(&mut self) {
        let Target::File(path) = &self.target else {
            return;
        };
        match open_append(path) {
            Ok(file) => {
                let _ = self.file.flush();
                self.file = file;
                info!("SIGUSR1: {} reopened", path.display());
            }
            Err(e) => warn!(
                "SIGUSR1: cannot reopen {} ({e}): still writing to the file opened before",
                path.display()
            ),
        }
    }
}

/// Whether the other end of `file` is gone: a pipe whose reader closed it reports `POLLERR`, a
/// terminal that hung up `POLLHUP`. Regular files never do.
fn reader_gone(file: &File) -> bool {
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, timeout 0.
    let n = unsafe { libc::poll(&raw mut fd, 1, 0) };
    n == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        output::{Output, OutputDrops},
        record::{EventType, Record},
        testing,
    };

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned by nobody else.
        unsafe {
            use std::os::fd::FromRawFd as _;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        }
    }

    fn queue_on(file: File, on_closed: OnClosed) -> Queue {
        Opened {
            target: Target::Stdout,
            file,
            on_closed,
        }
        .start()
        .unwrap()
    }

    fn event(kind: EventType) -> Record {
        Record::Event(testing::event(kind, testing::T0, testing::python(), vec![]))
    }

    fn status() -> Record {
        let mut p = crate::testing::status_record();
        p.status = crate::record::Status::Running;
        Record::Status(p)
    }

    #[test]
    fn a_blocked_reader_costs_drops_not_memory_events_first() {
        // Nobody reads the pipe: the writer blocks once the pipe's 64 KiB are full.
        let (reader, writer) = pipe();
        let budget = 1024 * 1024;
        let mut out = Output::new(queue_on(writer, OnClosed::Exit)).with_budget(budget);
        for _ in 0..20_000 {
            out.write(&event(EventType::Connect)).unwrap();
            out.flush().unwrap();
        }
        let queued = out.get_ref().queued();
        assert!(queued <= budget, "{queued} bytes queued, budget {budget}");
        let drops = out.drops();
        assert!(drops.connect > 10_000, "{drops:?}");
        // Events stop at half the budget: alerts and status records still fit.
        out.write(&status()).unwrap();
        out.flush().unwrap();
        assert_eq!(out.drops().status, 0);
        assert_eq!(
            out.drops(),
            OutputDrops {
                connect: drops.connect,
                ..OutputDrops::default()
            }
        );
        // Reading again drains the queue.
        let mut reader = reader;
        let drained = thread::spawn(move || {
            let mut all = Vec::new();
            let _ = io::Read::read_to_end(&mut reader, &mut all);
            all
        });
        out.get_mut().finish(Duration::from_secs(10));
        drop(out);
        let all = drained.join().unwrap();
        let text = String::from_utf8(all).unwrap();
        assert!(text.lines().last().unwrap().contains(r#""type":"status""#));
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
    }

    #[test]
    fn a_reader_that_left_is_noticed_without_a_write() {
        let (reader, writer) = pipe();
        let q = queue_on(writer, OnClosed::Exit);
        drop(reader);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !q.closed() {
            assert!(Instant::now() < deadline, "closed reader not noticed");
            thread::sleep(Duration::from_millis(20));
        }
        let mut out = Output::new(q);
        out.write(&event(EventType::Exec)).unwrap();
        assert!(matches!(out.flush(), Err(OutputError::Closed)));
    }

    #[test]
    fn continue_after_the_reader_left_counts_drops() {
        let (reader, writer) = pipe();
        drop(reader);
        let mut out = Output::new(queue_on(writer, OnClosed::Continue)).with_budget(1 << 20);
        // The first batch meets EPIPE; from then on everything is dropped and counted.
        out.write(&event(EventType::Exec)).unwrap();
        out.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !out.get_ref().closed() {
            assert!(Instant::now() < deadline, "EPIPE not noticed");
            thread::sleep(Duration::from_millis(20));
        }
        out.write(&event(EventType::Exec)).unwrap();
        out.write(&status()).unwrap();
        out.flush().unwrap();
        assert_eq!((out.drops().exec, out.drops().status), (1, 1));
    }

    #[test]
    fn reopen_follows_a_renamed_file() {
        let dir = testing::TempDir::new();
        let path = dir.path().join("out.jsonl");
        let target = Target::File(path.clone());
        let q = Queue::open(target, OnClosed::Exit)
            .unwrap()
            .start()
            .unwrap();
        let mut out = Output::new(q);
        out.write(&event(EventType::Exec)).unwrap();
        out.flush().unwrap();
        let rotated = dir.path().join("out.jsonl.1");
        // Written before the rename reaches the old file, as logrotate expects.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read(&path).unwrap().is_empty() {
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&path, &rotated).unwrap();
        out.get_mut().reopen();
        out.write(&event(EventType::Exit)).unwrap();
        out.flush().unwrap();
        out.get_mut().finish(Duration::from_secs(5));
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains(r#""event":"exec""#) && !old.contains(r#""event":"exit""#));
        assert!(new.contains(r#""event":"exit""#) && !new.contains(r#""event":"exec""#));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077 & !0o040, 0, "{mode:o}");
    }
}
