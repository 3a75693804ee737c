//! The configured list files: each one's identity and last good content, and the reloads that
//! re-read only what changed.

use std::{
    fmt, fs,
    io::{self, Read},
    os::unix::fs::{MetadataExt, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    database::{Enrichment, EnrichmentBuilder},
    parse::{Issues, ReputationEntry, parse_plain, parse_reputation_csv, parse_tor},
};
use crate::{
    netrange::Cidr,
    trust::{Trust, Untrusted},
};

/// Larger files are refused: the biggest public feeds (`FireHOL` level sets, full Tor lists) are a
/// few megabytes, and reading an unbounded file into memory is a denial of service.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Which sources to load. Paths and names come from the policy; the caller prefixes errors with
/// the policy key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpListsConfig {
    /// torbulkexitlist or exit-addresses (told apart by content).
    pub tor_exits: Option<PathBuf>,
    /// The reputation CSV.
    pub reputation: Option<PathBuf>,
    /// Plain lists, reported by name in this order.
    pub lists: Vec<NamedList>,
    /// Never loaded from a file: a trusted network must not change because a download did.
    pub trusted: Vec<Cidr>,
    /// Which files are believed, at load and at every reload (the daemon refuses files others
    /// than root can write, unless `--insecure-config`).
    pub trust: Trust,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedList {
    pub name: String,
    pub path: PathBuf,
}

/// A file that cannot be used (at load) or a configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum IpListError {
    #[error("{}: cannot read IP list: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("IP list name must not be empty ({})", .path.display())]
    EmptyName { path: PathBuf },
    #[error("IP list name `{name}` is used twice")]
    DuplicateName { name: String },
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// Its size or modification time moved during the read: a writer is mid-way through it.
    #[error("changed while it was being read")]
    ChangedWhileReading,
    #[error("refused: {0}")]
    Untrusted(#[from] Untrusted),
}

/// Which configured source a file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    TorExits,
    Reputation,
    List(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TorExits => f.write_str("Tor exit list"),
            Self::Reputation => f.write_str("reputation file"),
            Self::List(name) => write!(f, "list `{name}`"),
        }
    }
}

/// What happened to one file in a load or reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read at start-up.
    Loaded,
    /// Changed, read, and now served.
    Reloaded,
    /// Same identity as last time: not read.
    Unchanged,
    /// Changed, but the new content was refused; the last good copy is still served.
    KeptLastGood(KeepReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// Missing, unreadable, too large, or mid-write (the [`ReadError`]'s text).
    Unreadable(String),
    /// No good entry but bad lines, where the last good copy had entries: a truncated download
    /// or the wrong file.
    NoGoodEntries { bad_lines: usize },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Self::NoGoodEntries { bad_lines } => {
                write!(f, "no good entry and {bad_lines} bad lines (truncated?)")
            }
        }
    }
}

/// One file's line in a [`ReloadReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    pub source: Source,
    pub path: PathBuf,
    pub outcome: Outcome,
    /// Entries served after this load or reload.
    pub entries: usize,
    /// Entries served before (0 at start-up), so a drop to zero can be logged.
    pub previous_entries: usize,
    /// Of the content read this time (the refused content for [`Outcome::KeptLastGood`]); empty
    /// when the file was not read.
    pub bad_lines: Issues,
    pub normalised: Issues,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.path.display(), self.source)?;
        match &self.outcome {
            Outcome::Loaded => f.write_str("loaded")?,
            Outcome::Reloaded => f.write_str("reloaded")?,
            Outcome::Unchanged => f.write_str("unchanged")?,
            Outcome::KeptLastGood(reason) => write!(f, "kept the last good copy: {reason}")?,
        }
        write!(
            f,
            ", {} entries ({} before), {} bad lines, {} normalised",
            self.entries,
            self.previous_entries,
            self.bad_lines.count(),
            self.normalised.count()
        )
    }
}

/// The result of [`IpLists::load`] or [`IpLists::reload_changed`], one entry per file in
/// configuration order (Tor, reputation, then the lists).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub files: Vec<FileReport>,
    /// A new [`Enrichment`] was built: swap [`IpLists::database`] in.
    pub rebuilt: bool,
}

/// `(dev, inode, size, mtime)`: a changed file changes one of them, whether it is rewritten in
/// place or replaced by a rename. A same-size rewrite within one timestamp tick of the previous
/// write is missed until the next change; downloaders that write a temporary file and rename it
/// always change the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// Reads through one open descriptor and compares `fstat` before and after, so a file replaced
/// or rewritten during the read is noticed rather than half-parsed.
fn read_file(path: &Path, trust: Trust) -> Result<(Identity, String), ReadError> {
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer (regular files ignore it).
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    trust.check(&meta)?;
    let before = Identity::of(&meta);
    if before.size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
    (&mut file)
        .take(MAX_FILE_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let after = Identity::of(&file.metadata()?);
    if after != before || read != before.size {
        return Err(ReadError::ChangedWhileReading);
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok((after, text))
}

#[derive(Debug)]
enum Content {
    Prefixes(Vec<Cidr>),
    Reputation(Vec<ReputationEntry>),
}

impl Content {
    fn len(&self) -> usize {
        match self {
            Self::Prefixes(p) => p.len(),
            Self::Reputation(r) => r.len(),
        }
    }
}

/// The content and the issues of one file's text, parsed as its source's format.
fn parse_source(source: &Source, text: &str) -> (Content, Issues, Issues) {
    match source {
        Source::TorExits | Source::List(_) => {
            let parsed = if *source == Source::TorExits {
                parse_tor(text)
            } else {
                parse_plain(text)
            };
            let content = Content::Prefixes(parsed.entries);
            (content, parsed.bad_lines, parsed.normalised)
        }
        Source::Reputation => {
            let parsed = parse_reputation_csv(text);
            let content = Content::Reputation(parsed.entries);
            (content, parsed.bad_lines, parsed.normalised)
        }
    }
}

#[derive(Debug)]
struct SourceFile {
    source: Source,
    path: PathBuf,
    identity: Identity,
    /// The last good content: what is served.
    content: Content,
}

/// The configured list files, each with its identity and last good content, and the database
/// built from them.
#[derive(Debug)]
pub struct IpLists {
    files: Vec<SourceFile>,
    trusted: Vec<Cidr>,
    trust: Trust,
    database: Arc<Enrichment>,
}

impl IpLists {
    /// Reads every configured file. Bad lines are skipped and reported in the returned report.
    ///
    /// # Errors
    ///
    /// A list name that is empty or used twice, or a file that is missing or unreadable
    /// ([`IpListError::Read`] names it); the caller adds the policy key.
    pub fn load(config: &IpListsConfig) -> Result<(Self, ReloadReport), IpListError> {
        let mut seen: Vec<&str> = Vec::new();
        for list in &config.lists {
            if list.name.trim().is_empty() {
                return Err(IpListError::EmptyName {
                    path: list.path.clone(),
                });
            }
            if seen.contains(&list.name.as_str()) {
                return Err(IpListError::DuplicateName {
                    name: list.name.clone(),
                });
            }
            seen.push(&list.name);
        }
        let sources = config
            .tor_exits
            .iter()
            .map(|p| (Source::TorExits, p))
            .chain(config.reputation.iter().map(|p| (Source::Reputation, p)))
            .chain(
                config
                    .lists
                    .iter()
                    .map(|l| (Source::List(l.name.clone()), &l.path)),
            );
        let mut files = Vec::new();
        let mut reports = Vec::new();
        for (source, path) in sources {
            let (identity, text) =
                read_file(path, config.trust).map_err(|source| IpListError::Read {
                    path: path.clone(),
                    source,
                })?;
            let (content, bad_lines, normalised) = parse_source(&source, &text);
            reports.push(FileReport {
                source: source.clone(),
                path: path.clone(),
                outcome: Outcome::Loaded,
                entries: content.len(),
                previous_entries: 0,
                bad_lines,
                normalised,
            });
            files.push(SourceFile {
                source,
                path: path.clone(),
                identity,
                content,
            });
        }
        let database = Arc::new(build(&files, &config.trusted));
        let lists = Self {
            files,
            trusted: config.trusted.clone(),
            trust: config.trust,
            database,
        };
        Ok((
            lists,
            ReloadReport {
                files: reports,
                rebuilt: true,
            },
        ))
    }

    /// Re-stats every file and re-reads only those whose identity changed. A changed file's new
    /// content replaces the old unless
    /// - it cannot be read (gone, unreadable, too large, mid-write), or
    /// - it has no good entry but has bad lines while the last good copy had entries
    ///   (truncated, or garbage);
    ///
    /// then the last good copy stays and the report says why. Such a file is re-read on every
    /// call until it is fixed, so the report keeps saying so. A file that now holds no entries
    /// and no bad lines (comments only, or zero bytes) is accepted as legitimately empty; so is
    /// a file cut short after some good lines, which cannot be told from a list that shrank
    /// (the report's `previous_entries` shows the drop).
    ///
    /// When anything was replaced, a new database is built and `rebuilt` is set; the old
    /// [`Arc`] handed out by [`database`](Self::database) stays valid for whoever holds it.
    pub fn reload_changed(&mut self) -> ReloadReport {
        let mut report = ReloadReport::default();
        for file in &mut self.files {
            let file_report = reload_file(file, self.trust);
            report.rebuilt |= file_report.outcome == Outcome::Reloaded;
            report.files.push(file_report);
        }
        if report.rebuilt {
            self.database = Arc::new(build(&self.files, &self.trusted));
        }
        report
    }

    /// The current database; cheap to clone into whatever the readers share.
    #[must_use]
    pub fn database(&self) -> Arc<Enrichment> {
        Arc::clone(&self.database)
    }

    /// Every configured file.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

fn reload_file(file: &mut SourceFile, trust: Trust) -> FileReport {
    let served = file.content.len();
    let mut report = FileReport {
        source: file.source.clone(),
        path: file.path.clone(),
        outcome: Outcome::Unchanged,
        entries: served,
        previous_entries: served,
        bad_lines: Issues::default(),
        normalised: Issues::default(),
    };
    let kept = |report: FileReport, reason| FileReport {
        outcome: Outcome::KeptLastGood(reason),
        ..report
    };
    let now = match fs::metadata(&file.path) {
        Ok(meta) => Identity::of(&meta),
        Err(e) => return kept(report, KeepReason::Unreadable(e.to_string())),
    };
    if now == file.identity {
        return report;
    }
    let (identity, text) = match read_file(&file.path, trust) {
        Ok(read) => read,
        Err(e) => return kept(report, KeepReason::Unreadable(e.to_string())),
    };
    let (content, bad_lines, normalised) = parse_source(&file.source, &text);
    report.bad_lines = bad_lines;
    report.normalised = normalised;
    if content.len() == 0 && !report.bad_lines.is_empty() && served > 0 {
        let bad = report.bad_lines.count();
        return kept(report, KeepReason::NoGoodEntries { bad_lines: bad });
    }
    report.outcome = Outcome::Reloaded;
    report.entries = content.len();
    file.identity = identity;
    file.content = content;
    report
}

fn build(files: &[SourceFile], trusted: &[Cidr]) -> Enrichment {
    let mut builder = EnrichmentBuilder::new();
    for file in files {
        match (&file.source, &file.content) {
            (Source::TorExits, Content::Prefixes(p)) => {
                builder.tor_exits(p);
            }
            (Source::List(name), Content::Prefixes(p)) => {
                builder.list(name, p);
            }
            (Source::Reputation, Content::Reputation(r)) => {
                builder.reputation(r);
            }
            // parse_source pairs sources and contents; a mismatch cannot be built from.
            _ => {}
        }
    }
    builder.trusted(trusted);
    builder.build()
}

#[cfg(test)]
mod tests {
    use std::{
        fs::FileTimes,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::iplist::parse::{
        Classification,
        tests::{EXIT_ADDRESSES, cidrs, ip},
    };

    // --- files and reloads ------------------------------------------------------------------

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("monitor-iplist-{}-{tag}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn outcome_of<'a>(report: &'a ReloadReport, source: &Source) -> &'a FileReport {
        report
            .files
            .iter()
            .find(|f| f.source == *source)
            .unwrap_or_else(|| panic!("no report for {source}"))
    }

    /// A list file replaced by a FIFO (a downloader gone wrong, a hostile path) is not a file:
    /// opening it for reading used to wait for a writer, and the reload with it.
    #[test]
    fn a_fifo_is_not_read() {
        let dir = TempDir::new("fifo");
        let fifo = dir.0.join("tor.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_file(&fifo, Trust::OwnerOnly).map(|_| ())));
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a FIFO returns instead of blocking");
        assert!(matches!(got, Err(ReadError::NotAFile)), "{got:?}");
    }

    #[test]
    fn load_reads_every_source_and_reports_bad_lines() {
        let dir = TempDir::new("load");
        let tor = dir.write("tor", EXIT_ADDRESSES);
        let reputation = dir.write("rep.csv", "ip,classification\n9.9.9.9,malicious\noops\n");
        let drop = dir.write("drop.txt", "; DROP\n1.10.16.0/20 ; SBL1\n10.1.2.3/8\n");
        let config = IpListsConfig {
            tor_exits: Some(tor.clone()),
            reputation: Some(reputation.clone()),
            lists: vec![NamedList {
                name: "spamhaus_drop".into(),
                path: drop.clone(),
            }],
            trusted: cidrs(&["192.168.0.0/16"]),
            trust: Trust::OwnerOnly,
        };
        let (lists, report) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.rebuilt);
        let files: Vec<(&Source, &Outcome, usize, usize)> = report
            .files
            .iter()
            .map(|f| (&f.source, &f.outcome, f.entries, f.bad_lines.count()))
            .collect();
        let drop_source = Source::List("spamhaus_drop".into());
        assert_eq!(
            files,
            vec![
                (&Source::TorExits, &Outcome::Loaded, 5, 4),
                (&Source::Reputation, &Outcome::Loaded, 1, 1),
                (&drop_source, &Outcome::Loaded, 2, 0),
            ]
        );
        let rep_report = outcome_of(&report, &Source::Reputation);
        assert_eq!(
            rep_report.bad_lines.shown()[0]
                .at(&rep_report.path)
                .to_string(),
            format!(
                "{}:3: expected `ip_or_cidr,classification[,name[,tags]]`: `oops`",
                reputation.display()
            )
        );
        assert_eq!(outcome_of(&report, &drop_source).normalised.count(), 1);
        assert_eq!(
            outcome_of(&report, &drop_source).to_string(),
            format!(
                "{}: list `spamhaus_drop`: loaded, 2 entries (0 before), 0 bad lines, 1 normalised",
                drop.display()
            )
        );

        let db = lists.database();
        assert!(db.lookup(ip("185.220.101.2")).tor_exit);
        assert!(db.lookup(ip("9.9.9.9")).is_watched());
        assert_eq!(
            db.lookup(ip("10.200.0.1")).lists.to_vec(),
            vec!["spamhaus_drop"]
        );
        assert!(db.lookup(ip("192.168.1.1")).trusted);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = TempDir::new("errors");
        let missing = dir.0.join("missing.txt");
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "gone".into(),
                path: missing.clone(),
            }],
            ..IpListsConfig::default()
        };
        let err = IpLists::load(&config).expect_err("missing file");
        assert!(matches!(&err, IpListError::Read { path, .. } if *path == missing));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read IP list: ", missing.display())),
            "{err}"
        );

        let config = IpListsConfig {
            tor_exits: Some(dir.0.clone()),
            ..IpListsConfig::default()
        };
        let err = IpLists::load(&config).expect_err("a directory");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read IP list: not a regular file",
                dir.0.display()
            )
        );

        let a = dir.write("a", "1.1.1.1\n");
        let twice = IpListsConfig {
            lists: vec![
                NamedList {
                    name: "x".into(),
                    path: a.clone(),
                },
                NamedList {
                    name: "x".into(),
                    path: a.clone(),
                },
            ],
            ..IpListsConfig::default()
        };
        assert!(matches!(
            IpLists::load(&twice),
            Err(IpListError::DuplicateName { name }) if name == "x"
        ));
        let unnamed = IpListsConfig {
            lists: vec![NamedList {
                name: " ".into(),
                path: a,
            }],
            ..IpListsConfig::default()
        };
        assert!(matches!(
            IpLists::load(&unnamed),
            Err(IpListError::EmptyName { .. })
        ));
    }

    #[test]
    fn reload_keeps_the_last_good_copy_of_broken_files() {
        let dir = TempDir::new("reload");
        let path = dir.write("drop.txt", "1.10.16.0/20\n2.56.192.0/22\n");
        let source = Source::List("drop".into());
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "drop".into(),
                path: path.clone(),
            }],
            ..IpListsConfig::default()
        };
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        let first = lists.database();

        // Nothing changed: nothing read, nothing rebuilt, same database.
        let report = lists.reload_changed();
        assert_eq!(outcome_of(&report, &source).outcome, Outcome::Unchanged);
        assert_eq!(outcome_of(&report, &source).entries, 2);
        assert!(!report.rebuilt);
        assert!(Arc::ptr_eq(&first, &lists.database()));

        // A truncated download / an HTML error page: kept, with the reason.
        dir.write("drop.txt", "<html><body>502 Bad Gateway</body></html>\n");
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert_eq!(
            file.outcome,
            Outcome::KeptLastGood(KeepReason::NoGoodEntries { bad_lines: 1 })
        );
        assert_eq!((file.entries, file.bad_lines.count()), (2, 1));
        assert!(
            file.to_string()
                .contains("kept the last good copy: no good entry")
        );
        assert!(!report.rebuilt);
        assert!(
            lists
                .database()
                .lookup(ip("1.10.16.1"))
                .lists
                .contains("drop")
        );
        // Still broken: still reported, not silently accepted on the next pass.
        let report = lists.reload_changed();
        assert!(matches!(
            outcome_of(&report, &source).outcome,
            Outcome::KeptLastGood(KeepReason::NoGoodEntries { .. })
        ));

        // Valid again: reloaded, and a bad line among good ones is just skipped.
        dir.write("drop.txt", "; new\n5.6.7.0/24\nbogus\n");
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert_eq!(file.outcome, Outcome::Reloaded);
        assert_eq!(
            (file.entries, file.previous_entries, file.bad_lines.count()),
            (1, 2, 1)
        );
        assert!(report.rebuilt);
        let db = lists.database();
        assert!(!Arc::ptr_eq(&first, &db));
        assert!(db.lookup(ip("5.6.7.8")).lists.contains("drop"));
        assert!(db.lookup(ip("1.10.16.1")).lists.is_empty());
        // The old database is untouched for whoever still holds it.
        assert!(first.lookup(ip("1.10.16.1")).lists.contains("drop"));

        // Deleted: kept, with the reason.
        fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert!(
            matches!(&file.outcome, Outcome::KeptLastGood(KeepReason::Unreadable(e)) if e.contains("No such file")),
            "{file}"
        );
        assert_eq!(file.entries, 1);
        assert!(
            lists
                .database()
                .lookup(ip("5.6.7.8"))
                .lists
                .contains("drop")
        );

        // Back, legitimately empty (comments only): accepted.
        dir.write("drop.txt", "# no entries today\n");
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert_eq!(file.outcome, Outcome::Reloaded);
        assert_eq!((file.entries, file.previous_entries), (0, 1));
        assert!(lists.database().lookup(ip("5.6.7.8")).lists.is_empty());

        // Garbage after an empty copy replaces nothing worth keeping: accepted, bad lines shown.
        dir.write("drop.txt", "garbage\n");
        let report = lists.reload_changed();
        assert_eq!(outcome_of(&report, &source).outcome, Outcome::Reloaded);
        assert_eq!(outcome_of(&report, &source).bad_lines.count(), 1);
    }

    #[test]
    fn reload_rereads_only_changed_files() {
        let dir = TempDir::new("only-changed");
        let tor = dir.write("tor", "185.220.101.1\n");
        let list = dir.write("list", "1.1.1.1\n");
        let config = IpListsConfig {
            tor_exits: Some(tor.clone()),
            lists: vec![NamedList {
                name: "l".into(),
                path: list.clone(),
            }],
            ..IpListsConfig::default()
        };
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));

        // Same size, different content, modification time put back: the identity is unchanged,
        // so the file must not be read (the new address must not appear).
        let mtime = fs::metadata(&list)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(&list, "2.2.2.2\n").unwrap_or_else(|e| panic!("{e}"));
        fs::File::options()
            .write(true)
            .open(&list)
            .and_then(|f| f.set_times(FileTimes::new().set_modified(mtime)))
            .unwrap_or_else(|e| panic!("{e}"));
        dir.write("tor", "185.220.101.1\n185.220.101.2\n");

        let report = lists.reload_changed();
        assert_eq!(
            outcome_of(&report, &Source::TorExits).outcome,
            Outcome::Reloaded
        );
        let list_report = outcome_of(&report, &Source::List("l".into()));
        assert_eq!(list_report.outcome, Outcome::Unchanged);
        assert!(list_report.bad_lines.is_empty());
        let db = lists.database();
        assert!(db.lookup(ip("185.220.101.2")).tor_exit);
        assert!(db.lookup(ip("1.1.1.1")).lists.contains("l"));
        assert!(db.lookup(ip("2.2.2.2")).lists.is_empty());
    }

    #[test]
    fn reload_of_a_reputation_file_and_a_tor_file_turned_to_exit_addresses() {
        let dir = TempDir::new("formats");
        let tor = dir.write("tor", "192.42.116.16\n");
        let reputation = dir.write("rep.csv", "9.9.9.9,malicious,x\n");
        let config = IpListsConfig {
            tor_exits: Some(tor),
            reputation: Some(reputation),
            ..IpListsConfig::default()
        };
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        dir.write("tor", EXIT_ADDRESSES);
        dir.write("rep.csv", "ip,classification\n9.9.9.9,benign,y\n");
        let report = lists.reload_changed();
        assert!(report.files.iter().all(|f| f.outcome == Outcome::Reloaded));
        let db = lists.database();
        assert!(db.lookup(ip("204.8.96.2")).tor_exit);
        assert!(!db.lookup(ip("192.42.116.16")).tor_exit);
        assert_eq!(
            db.lookup(ip("9.9.9.9"))
                .reputation
                .map(|r| r.classification),
            Some(Classification::Benign)
        );
        // A reputation file turned to garbage keeps the malicious-free copy it had.
        dir.write("rep.csv", "\u{0}\u{1}\u{2}\n\u{ff}\n");
        let report = lists.reload_changed();
        assert!(matches!(
            outcome_of(&report, &Source::Reputation).outcome,
            Outcome::KeptLastGood(KeepReason::NoGoodEntries { bad_lines: 2 })
        ));
    }

    #[test]
    fn invalid_utf8_spoils_only_its_line() {
        let dir = TempDir::new("utf8");
        let path = dir.0.join("list");
        fs::write(&path, b"# caf\xe9\n1.1.1.1\n2.2.2.\xff\n3.3.3.3\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "l".into(),
                path,
            }],
            ..IpListsConfig::default()
        };
        let (_, report) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        let file = &report.files[0];
        assert_eq!(file.entries, 2);
        assert_eq!(file.bad_lines.shown()[0].line, 3);
    }

    #[test]
    fn files_others_can_write_are_refused_at_load_and_at_reload() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new("trust");
        let path = dir.write("drop.txt", "1.10.16.0/20\n");
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "drop".into(),
                path: path.clone(),
            }],
            trust: Trust::OwnerOnly,
            ..IpListsConfig::default()
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = IpLists::load(&config).expect_err("a file anyone can write");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read IP list: refused: {}",
                path.display(),
                Untrusted::Writable { mode: 0o666 }
            )
        );
        // --insecure-config reads it.
        let insecure = IpListsConfig {
            trust: Trust::Any,
            ..config.clone()
        };
        assert!(IpLists::load(&insecure).is_ok());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        // Replaced by a file its group can write: the last good copy stays.
        let new = dir.write("drop.txt.new", "9.9.9.0/24\n");
        fs::set_permissions(&new, fs::Permissions::from_mode(0o664)).unwrap();
        fs::rename(&new, &path).unwrap();
        let report = lists.reload_changed();
        assert!(!report.rebuilt);
        match &report.files[0].outcome {
            Outcome::KeptLastGood(KeepReason::Unreadable(why)) => {
                assert!(why.contains("writable by its group"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(report.files[0].entries, 1);
    }
}
