//! Knowing a program by what it is, not by its name: whether an executable IS one of the host's
//! shells, web servers or egress tools (interpreters, nc …), whatever it is called.
//!
//! At start and on reload, [`Catalog::resolve`] finds the host's binaries the policy names: the
//! files in the usual program directories whose basename matches the policy's globs (`shells`,
//! `web_servers`, `egress_tools`), the literal paths among those globs, and every shell the
//! `shell_lists` files (`/etc/shells`) list, each followed through its symlinks. For each it keeps
//! the inode and the size; their content hashes are computed only when first needed.
//!
//! An exec is then judged from the kernel's facts about its executable ([`FileId`]: inode, size,
//! modification time), in this order:
//! 1. the same file as a catalogued binary (a hard link): [`MatchKind::Inode`];
//! 2. the same size as a catalogued binary, and the same SHA-256 (a copy, a memfd copy):
//!    [`MatchKind::Content`]. Files of any other size are never opened, so an exec storm costs a
//!    hash-map lookup per exec; a size hit is hashed once per (device, inode, size, mtime) and
//!    cached.
//!
//! The inode match ignores the device: `stat(2)`'s `st_dev` and the kernel's `s_dev` differ on
//! btrfs subvolumes and overlayfs. It requires the same inode number, size and modification time
//! (nanoseconds), so a false match needs a forged mtime on a file of the same size whose inode
//! number collides on another filesystem; it would make a program look like a shell (an alert),
//! never the reverse.
//!
//! The file is read from its path when that is a regular file with the kernel's inode and size,
//! else through `/proc/<pid>/exe` (which opens a deleted file or a memfd while the process runs
//! it). A process that already exited or exec'd again, whose file is gone, cannot be hashed:
//! its program is then judged by path only (docs/policy.md says so).

use std::{
    collections::HashMap,
    fs,
    io::{self, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use sha2::{Digest as _, Sha256};

use crate::{
    decode::FileId,
    matcher::{ExeGlob, matches_any},
    procfs::ProcFs,
    record::MatchKind,
};

/// Where the catalogued binaries are looked for (besides literal paths in the globs and the
/// shell lists).
pub const PROGRAM_DIRS: [&str; 8] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/libexec",
    "/usr/lib/openssh",
];
/// Files hashed at most (a larger file is never a match by content).
const HASH_MAX_BYTES: u64 = 256 << 20;
/// Cached verdicts before the cache is reset.
const CACHE_MAX: usize = 4096;

/// What a program may be; a set of them is a `u8` of these bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Shell = 1,
    WebServer = 2,
    EgressTool = 4,
}

/// A set of [`Class`]es.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Classes(u8);

impl Classes {
    pub fn has(self, c: Class) -> bool {
        self.0 & c as u8 != 0
    }

    pub fn add(&mut self, c: Class) {
        self.0 |= c as u8;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The policy's program lists a catalog is resolved from.
#[derive(Clone, Copy, Debug)]
pub struct Lists<'p> {
    pub shells: &'p [ExeGlob],
    pub web_servers: &'p [ExeGlob],
    pub egress_tools: &'p [ExeGlob],
    /// Files listing shells, one absolute path a line (`/etc/shells`).
    pub shell_lists: &'p [String],
}

impl Lists<'_> {
    /// The classes whose globs match `path` (basename globs, or whole-path ones).
    pub fn classes_by_path(&self, path: &str) -> Classes {
        let mut c = Classes::default();
        let matches = |list: &[ExeGlob]| matches_any(list, path);
        if matches(self.shells) {
            c.add(Class::Shell);
        }
        if matches(self.web_servers) {
            c.add(Class::WebServer);
        }
        if matches(self.egress_tools) {
            c.add(Class::EgressTool);
        }
        c
    }
}

/// The policy's program lists, owned: what the process table judges programs by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Programs {
    pub web_servers: Vec<ExeGlob>,
    pub shells: Vec<ExeGlob>,
    pub egress_tools: Vec<ExeGlob>,
    pub loaders: Vec<ExeGlob>,
    pub shell_lists: Vec<String>,
}

impl Programs {
    pub fn lists(&self) -> Lists<'_> {
        Lists {
            shells: &self.shells,
            web_servers: &self.web_servers,
            egress_tools: &self.egress_tools,
            shell_lists: &self.shell_lists,
        }
    }
}

/// A catalogued binary.
#[derive(Debug)]
struct Known {
    path: PathBuf,
    classes: Classes,
    ino: u64,
    mtime: (i64, u32),
    /// SHA-256, computed on first need.
    hash: Hash,
}

/// A catalogued binary's content hash, computed on first need.
#[derive(Clone, Copy, Debug)]
enum Hash {
    NotYet,
    Unreadable,
    Sha256([u8; 32]),
}

/// What a file was recognised as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileVerdict {
    pub classes: Classes,
    pub matched: MatchKind,
    /// The catalogued binary it is (`/usr/bin/bash`).
    pub same_as: String,
}

/// The cache key of a judged file.
type FileKey = (u64, u64, u64, i64, u32);

fn key(f: &FileId) -> FileKey {
    (f.dev, f.ino, f.size, f.mtime_sec, f.mtime_nsec)
}

/// Counts for the status record and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityStats {
    pub catalogued: usize,
    /// Files hashed (catalogued ones included).
    pub hashed: u64,
    pub cache_hits: u64,
}

/// The host's binaries by file and size, and the verdicts on executed files so far.
#[derive(Debug, Default)]
pub struct Catalog {
    /// What was looked at (directories and files, with their inode and mtime when resolved):
    /// a change means a package was installed, upgraded or removed.
    watched: Vec<(PathBuf, Option<Version>)>,
    known: Vec<Known>,
    by_size: HashMap<u64, Vec<usize>>,
    cache: HashMap<FileKey, Option<FileVerdict>>,
    stats: IdentityStats,
}

/// Most bytes read of a shell list (`/etc/shells` is a few hundred).
const SHELL_LIST_MAX: u64 = 1 << 20;

/// A shell list's text: a regular file (a FIFO would wait for a writer, `/dev/zero` never end),
/// its first [`SHELL_LIST_MAX`] bytes, invalid UTF-8 replaced.
fn read_shell_list(path: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(SHELL_LIST_MAX).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

impl Catalog {
    /// Finds the host's binaries the lists name (see the module doc). Unreadable directories
    /// and files are skipped.
    pub fn resolve(lists: &Lists<'_>) -> Self {
        Self::resolve_in(lists, &PROGRAM_DIRS.map(Path::new))
    }

    pub fn resolve_in(lists: &Lists<'_>, dirs: &[&Path]) -> Self {
        let mut watched: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
        watched.extend(lists.shell_lists.iter().map(PathBuf::from));
        let mut found: HashMap<PathBuf, Classes> = HashMap::new();
        let mut add = |path: PathBuf, classes: Classes| {
            if classes.is_empty() {
                return;
            }
            if let Ok(real) = fs::canonicalize(&path) {
                let c = found.entry(real).or_default();
                c.0 |= classes.0;
            }
        };
        for dir in dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if let Some(p) = path.to_str() {
                    let classes = lists.classes_by_path(p);
                    add(path.clone(), classes);
                }
            }
        }
        // Whole-path globs without wildcards name a file directly.
        for (list, class) in [
            (lists.shells, Class::Shell),
            (lists.web_servers, Class::WebServer),
            (lists.egress_tools, Class::EgressTool),
        ] {
            for g in list {
                let s = g.as_str();
                if s.starts_with('/') && !s.contains(['*', '?', '[']) {
                    let mut c = Classes::default();
                    c.add(class);
                    add(PathBuf::from(s), c);
                }
            }
        }
        for file in lists.shell_lists {
            let Some(text) = read_shell_list(Path::new(file)) else {
                log::debug!("shell list {file}: unreadable, skipped");
                continue;
            };
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('/') {
                    let mut c = Classes::default();
                    c.add(Class::Shell);
                    add(PathBuf::from(line), c);
                }
            }
        }
        let mut catalog = Self::default();
        let mut paths: Vec<_> = found.into_iter().collect();
        watched.extend(paths.iter().map(|(p, _)| p.clone()));
        catalog.watched = watched
            .into_iter()
            .map(|p| {
                let v = version(&p);
                (p, v)
            })
            .collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, classes) in paths {
            let Ok(m) = fs::metadata(&path) else {
                continue;
            };
            if !m.is_file() {
                continue;
            }
            // One entry per file: hard links of one binary found under two names merge.
            if let Some(k) = catalog
                .known
                .iter_mut()
                .find(|k| k.ino == m.ino() && k.mtime == mtime(&m))
            {
                k.classes.0 |= classes.0;
                continue;
            }
            let i = catalog.known.len();
            catalog.known.push(Known {
                path,
                classes,
                ino: m.ino(),
                mtime: mtime(&m),
                hash: Hash::NotYet,
            });
            catalog.by_size.entry(m.size()).or_default().push(i);
        }
        catalog.stats.catalogued = catalog.known.len();
        catalog
    }

    /// Whether a catalogued binary, a program directory or a shell list changed since
    /// [`Catalog::resolve`]: then it should be resolved again (one `stat` each).
    pub fn changed(&self) -> bool {
        self.watched.iter().any(|(p, v)| version(p) != *v)
    }

    pub fn stats(&self) -> IdentityStats {
        self.stats
    }

    /// The catalogued binaries with their classes, for logs and tests.
    pub fn binaries(&self) -> impl Iterator<Item = (&Path, Classes)> {
        self.known.iter().map(|k| (k.path.as_path(), k.classes))
    }

    /// Judges the executable `file` that process `pid` runs, at `path` (the kernel's resolved
    /// path, may be a memfd or deleted file). `None`: it is none of the catalogued binaries, or
    /// its content could not be read.
    pub fn judge(
        &mut self,
        proc: &ProcFs,
        pid: u32,
        path: Option<&str>,
        file: &FileId,
    ) -> Option<FileVerdict> {
        let candidates = self.by_size.get(&file.size)?;
        if let Some(&i) = candidates.iter().find(|&&i| {
            let k = &self.known[i];
            k.ino == file.ino && k.mtime == (file.mtime_sec, file.mtime_nsec)
        }) {
            let k = &self.known[i];
            return Some(FileVerdict {
                classes: k.classes,
                matched: MatchKind::Inode,
                same_as: k.path.display().to_string(),
            });
        }
        if let Some(v) = self.cache.get(&key(file)) {
            self.stats.cache_hits += 1;
            return v.clone();
        }
        let hash = hash_executed(proc, pid, path, file)?;
        self.stats.hashed += 1;
        let candidates = candidates.clone();
        let mut verdict = None;
        for i in candidates {
            if self.known_hash(i) == Some(hash) {
                let k = &self.known[i];
                verdict = Some(FileVerdict {
                    classes: k.classes,
                    matched: MatchKind::Content,
                    same_as: k.path.display().to_string(),
                });
                break;
            }
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key(file), verdict.clone());
        verdict
    }

    /// Judges a file by its path alone (a loader's program, processes read from `/proc`):
    /// stats it and judges it like an executed file.
    pub fn judge_path(&mut self, proc: &ProcFs, pid: u32, path: &Path) -> Option<FileVerdict> {
        let m = fs::metadata(path).ok()?;
        if !m.is_file() {
            return None;
        }
        let file = file_id(&m);
        self.judge(proc, pid, path.to_str(), &file)
    }

    fn known_hash(&mut self, i: usize) -> Option<[u8; 32]> {
        let k = &mut self.known[i];
        if let Hash::NotYet = k.hash {
            k.hash = match fs::File::open(&k.path).and_then(sha256) {
                Ok(h) => Hash::Sha256(h),
                Err(_) => Hash::Unreadable,
            };
            self.stats.hashed += 1;
        }
        match k.hash {
            Hash::Sha256(h) => Some(h),
            Hash::NotYet | Hash::Unreadable => None,
        }
    }
}

/// A file's identity from its metadata.
pub fn file_id(m: &fs::Metadata) -> FileId {
    let (mtime_sec, mtime_nsec) = mtime(m);
    FileId {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_sec,
        mtime_nsec,
    }
}

/// A file's inode and mtime (seconds, nanoseconds).
type Version = (u64, (i64, u32));

/// A path's inode and mtime, `None` when it does not exist.
fn version(p: &Path) -> Option<Version> {
    fs::metadata(p).ok().map(|m| (m.ino(), mtime(&m)))
}

fn mtime(m: &fs::Metadata) -> (i64, u32) {
    (m.mtime(), u32::try_from(m.mtime_nsec()).unwrap_or(0))
}

/// The SHA-256 of the executed file: from `path` when it is that very file, else from
/// `/proc/<pid>/exe`. The opened file must have the kernel's inode and size.
fn hash_executed(proc: &ProcFs, pid: u32, path: Option<&str>, file: &FileId) -> Option<[u8; 32]> {
    if file.size > HASH_MAX_BYTES {
        return None;
    }
    let same = |f: &fs::File| {
        f.metadata()
            .is_ok_and(|m| m.is_file() && m.ino() == file.ino && m.size() == file.size)
    };
    let on_disk = path
        .filter(|p| p.starts_with('/') && !p.ends_with(" (deleted)"))
        .and_then(|p| fs::File::open(p).ok())
        .filter(same);
    let f = on_disk.or_else(|| fs::File::open(proc.path(pid, "exe")).ok().filter(same))?;
    sha256(f).ok()
}

fn sha256(f: fs::File) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut f = f.take(HASH_MAX_BYTES);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The program a dynamic loader exec runs: the first argument after the loader's own options
/// (`ld-linux-x86-64.so.2 [--library-path P] [--preload L] … PROGRAM ARGS`). `None` when argv
/// names none (`--list`, `--help`, no argument).
pub fn loaded_program(argv: &[String]) -> Option<&str> {
    // glibc's rtld options that take a value, and those that do not.
    const WITH_VALUE: [&str; 7] = [
        "--library-path",
        "--inhibit-rpath",
        "--audit",
        "--preload",
        "--argv0",
        "--glibc-hwcaps-prefix",
        "--glibc-hwcaps-mask",
    ];
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--" {
            return args.next().map(String::as_str);
        }
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
            continue;
        }
        if a.starts_with("--") {
            if ["--list", "--verify", "--help", "--version"].contains(&a.as_str())
                || a.starts_with("--list-")
            {
                return None;
            }
            // `--opt=value` and flags (`--inhibit-cache`).
            continue;
        }
        return Some(a);
    }
    None
}

/// Whether `exe` is a dynamic loader by the policy's `loaders` globs.
pub fn is_loader(loaders: &[ExeGlob], exe: &str) -> bool {
    matches_any(loaders, exe)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::testing::TempDir;

    fn globs(list: &[&str]) -> Vec<ExeGlob> {
        list.iter().map(|g| ExeGlob::new(g).unwrap()).collect()
    }

    struct Host {
        dir: TempDir,
        shells: Vec<ExeGlob>,
        web: Vec<ExeGlob>,
        tools: Vec<ExeGlob>,
        lists: Vec<String>,
    }

    impl Host {
        /// bin/bash, bin/dash (shells), bin/nginx (web server), bin/python3.11 (tool), all of
        /// different sizes, and bin/true.
        fn new() -> Self {
            let dir = TempDir::new();
            let bin = dir.0.join("bin");
            fs::create_dir_all(&bin).unwrap();
            for (name, body) in [
                ("bash", "#bash binary#".repeat(50)),
                ("dash", "#dash#".repeat(20)),
                ("nginx", "#nginx#".repeat(70)),
                ("python3.11", "#py#".repeat(90)),
                ("true", "#true#".repeat(3)),
            ] {
                fs::write(bin.join(name), body).unwrap();
                fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::os::unix::fs::symlink("dash", bin.join("sh")).unwrap();
            std::os::unix::fs::symlink("python3.11", bin.join("python3")).unwrap();
            let shells_file = dir.0.join("shells");
            fs::write(&shells_file, "# comment\n/bin/nonexistent\n").unwrap();
            Self {
                shells: globs(&["sh", "bash", "dash"]),
                web: globs(&["nginx"]),
                tools: globs(&["python[0-9]*"]),
                lists: vec![shells_file.display().to_string()],
                dir,
            }
        }

        fn lists(&self) -> Lists<'_> {
            Lists {
                shells: &self.shells,
                web_servers: &self.web,
                egress_tools: &self.tools,
                shell_lists: &self.lists,
            }
        }

        fn catalog(&self) -> Catalog {
            let bin = self.dir.0.join("bin");
            Catalog::resolve_in(&self.lists(), &[bin.as_path()])
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.0.join(rel)
        }
    }

    fn id_of(path: &Path) -> FileId {
        file_id(&fs::metadata(path).unwrap())
    }

    fn judge(c: &mut Catalog, path: &Path) -> Option<FileVerdict> {
        let proc = ProcFs::new("/nonexistent-proc");
        c.judge(&proc, 1, path.to_str(), &id_of(path))
    }

    #[test]
    fn catalog_follows_symlinks_and_merges_names() {
        let host = Host::new();
        let c = host.catalog();
        let mut names: Vec<(String, Classes)> = c
            .binaries()
            .map(|(p, cl)| (p.file_name().unwrap().to_string_lossy().into_owned(), cl))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let shell = Classes(Class::Shell as u8);
        assert_eq!(
            names,
            [
                ("bash".to_owned(), shell),
                ("dash".to_owned(), shell),
                ("nginx".to_owned(), Classes(Class::WebServer as u8)),
                ("python3.11".to_owned(), Classes(Class::EgressTool as u8)),
            ]
        );
        assert_eq!(c.stats().catalogued, 4);
        assert_eq!(c.stats().hashed, 0, "nothing is hashed before it is needed");
    }

    #[test]
    fn copies_hard_links_and_strangers() {
        let host = Host::new();
        let mut c = host.catalog();
        // A renamed copy: same content, another inode.
        let copy = host.path(".x");
        fs::copy(host.path("bin/bash"), &copy).unwrap();
        let v = judge(&mut c, &copy).unwrap();
        assert_eq!(v.matched, MatchKind::Content);
        assert!(v.classes.has(Class::Shell) && !v.classes.has(Class::WebServer));
        assert!(v.same_as.ends_with("/bin/bash"), "{}", v.same_as);
        // A hard link: the same inode.
        let link = host.path("ngx");
        fs::hard_link(host.path("bin/nginx"), &link).unwrap();
        let v = judge(&mut c, &link).unwrap();
        assert_eq!(v.matched, MatchKind::Inode);
        assert!(v.classes.has(Class::WebServer));
        // The catalogued file itself is an inode match.
        let v = judge(&mut c, &host.path("bin/python3.11")).unwrap();
        assert_eq!(v.matched, MatchKind::Inode);
        assert!(v.classes.has(Class::EgressTool));
        // Same size as bash, other content: hashed, no match.
        let fake = host.path("fake");
        let mut body = fs::read(host.path("bin/bash")).unwrap();
        body[0] = b'X';
        fs::write(&fake, body).unwrap();
        assert_eq!(judge(&mut c, &fake), None);
        // Another size: never opened.
        let hashed = c.stats().hashed;
        assert_eq!(judge(&mut c, &host.path("bin/true")), None);
        assert_eq!(c.stats().hashed, hashed, "a size miss costs no read");
    }

    #[test]
    fn verdicts_are_cached_per_file_version() {
        let host = Host::new();
        let mut c = host.catalog();
        let copy = host.path(".x");
        fs::copy(host.path("bin/dash"), &copy).unwrap();
        assert!(judge(&mut c, &copy).is_some());
        let hashed = c.stats().hashed;
        for _ in 0..100 {
            assert!(judge(&mut c, &copy).is_some());
        }
        assert_eq!(c.stats().hashed, hashed, "hashed once");
        assert_eq!(c.stats().cache_hits, 100);
        // Rewritten in place (same size, new mtime): judged again.
        let mut body = fs::read(&copy).unwrap();
        body[0] = b'Y';
        std::thread::sleep(std::time::Duration::from_millis(5));
        fs::write(&copy, body).unwrap();
        assert_eq!(judge(&mut c, &copy), None);
    }

    #[test]
    fn a_file_not_the_kernels_is_not_hashed() {
        let host = Host::new();
        let mut c = host.catalog();
        let copy = host.path(".x");
        fs::copy(host.path("bin/bash"), &copy).unwrap();
        let mut id = id_of(&copy);
        // The path now holds another file than the one executed (replaced after the exec), and
        // /proc has no such process: no verdict rather than the wrong file's.
        id.ino += 1;
        let proc = ProcFs::new("/nonexistent-proc");
        assert_eq!(c.judge(&proc, 1, copy.to_str(), &id), None);
    }

    #[test]
    fn a_changed_binary_or_directory_is_noticed() {
        let host = Host::new();
        let c = host.catalog();
        assert!(!c.changed());
        // An upgrade replaces bash (a new inode) by rename.
        let new = host.path("bin/.bash.new");
        fs::write(&new, "#new bash#".repeat(60)).unwrap();
        fs::rename(&new, host.path("bin/bash")).unwrap();
        assert!(c.changed());
        let c = host.catalog();
        assert!(!c.changed());
        // A new shell installed.
        fs::write(host.path("bin/zsh-x"), "z").unwrap();
        assert!(c.changed(), "the directory's mtime moved");
    }

    #[test]
    fn shells_from_shell_lists() {
        let host = Host::new();
        let other = host.path("opt/zsh5");
        fs::create_dir_all(other.parent().unwrap()).unwrap();
        fs::write(&other, "#zsh#".repeat(33)).unwrap();
        fs::write(
            &host.lists[0],
            format!("# /etc/shells\n{}\n", other.display()),
        )
        .unwrap();
        let c = host.catalog();
        assert!(
            c.binaries()
                .any(|(p, cl)| p.ends_with("opt/zsh5") && cl.has(Class::Shell))
        );
    }

    /// A shell list that is no regular file is skipped: `/dev/zero` used to be read without
    /// end, and a FIFO to wait for a writer, at start and on every catalogue refresh.
    #[test]
    fn shell_lists_that_are_not_files_are_skipped() {
        let mut host = Host::new();
        let fifo = host.path("shells.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        host.lists = vec![
            "/dev/zero".to_owned(),
            fifo.display().to_string(),
            host.lists[0].clone(),
        ];
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(host.catalog().binaries().count()));
        let binaries = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the catalogue is built instead of reading forever");
        assert!(binaries > 0);
        assert_eq!(read_shell_list(Path::new("/dev/zero")), None);
    }

    #[test]
    fn loader_arguments() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            loaded_program(&argv(&[
                "/lib64/ld-linux-x86-64.so.2",
                "/bin/bash",
                "-c",
                "id"
            ])),
            Some("/bin/bash")
        );
        assert_eq!(
            loaded_program(&argv(&[
                "ld.so",
                "--library-path",
                "/tmp",
                "--inhibit-cache",
                "--argv0",
                "sshd",
                "./x"
            ])),
            Some("./x")
        );
        assert_eq!(
            loaded_program(&argv(&["ld.so", "--", "/bin/sh"])),
            Some("/bin/sh")
        );
        assert_eq!(loaded_program(&argv(&["ld.so", "--list", "/bin/sh"])), None);
        assert_eq!(loaded_program(&argv(&["ld.so"])), None);
        let loaders = globs(&["ld-linux*.so*", "ld.so"]);
        assert!(is_loader(
            &loaders,
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        ));
        assert!(is_loader(&loaders, "/lib64/ld-linux-x86-64.so.2 (deleted)"));
        assert!(!is_loader(&loaders, "/usr/bin/ldd"));
    }
}
