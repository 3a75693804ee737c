//! Reading process facts from `/proc` (or a tree laid out like it, in tests): the pid list, one
//! process's identity and argv, and the `stat` / `status` parsers. Shared by the process table
//! (seeding and lazy lookups) and the start-up baseline (whose socket owners it lists).

use std::{
    fs,
    io::{ErrorKind, Read as _},
    path::{Path, PathBuf},
};

use crate::decode;

/// Longest argument kept from `/proc/<pid>/cmdline`; longer ones are cut and set
/// `argv_truncated` (any user can run a process with megabytes of arguments).
pub const PROC_ARG_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {what}")]
    Parse { path: PathBuf, what: &'static str },
}

/// One process as `/proc` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcProcess {
    pub pid: u32,
    pub ppid: u32,
    /// Real uid / gid.
    pub uid: u32,
    pub gid: u32,
    /// Effective uid (`status`' second `Uid` field), `None` when unreadable.
    pub euid: Option<u32>,
    pub comm: String,
    /// `/proc/<pid>/exe`; `None` for kernel threads and unreadable links.
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// Start time, `CLOCK_BOOTTIME` ns (`stat` starttime).
    pub start_ns: Option<u64>,
}

/// The thread-group ids under a `/proc`-like root, in ascending order.
pub fn pids(root: &Path) -> std::io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir(root)? {
        // An entry that cannot be read is a process that is gone.
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// The process (or one of its descriptors) went away between listing and reading.
pub fn vanished(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Reads process facts from a `/proc`-like tree.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
    /// Nanoseconds per clock tick (`/proc/<pid>/stat` start times are in ticks).
    ns_per_tick: u64,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
        Self {
            root: root.into(),
            ns_per_tick: 1_000_000_000 / hz,
        }
    }

    /// The directory read (`/proc` in the daemon).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    /// The numeric entries of the root (thread-group ids), in ascending order.
    pub fn pids(&self) -> Result<Vec<u32>, ProcError> {
        pids(&self.root).map_err(|source| ProcError::Io {
            path: self.root.clone(),
            source,
        })
    }

    pub fn exe(&self, pid: u32) -> Option<String> {
        fs::read_link(self.path(pid, "exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// `/proc/<pid>/cmdline` as arguments. A process that rewrote its title (php-fpm, nginx,
    /// postgres) pads the old argument area with NULs: trailing NULs are padding, not empty
    /// arguments.
    ///
    /// Bounded like the kernel side's exec record: at most [`monitor_common::ARGS_LEN`] bytes
    /// are read and each argument is cut at [`PROC_ARG_MAX`] bytes (both set the truncated flag),
    /// since any user can start a process with megabytes of arguments.
    pub fn argv(&self, pid: u32) -> Option<(Vec<String>, bool)> {
        let file = fs::File::open(self.path(pid, "cmdline")).ok()?;
        let mut raw = Vec::new();
        // One byte more than kept tells whether there was more.
        file.take(monitor_common::ARGS_LEN as u64 + 1)
            .read_to_end(&mut raw)
            .ok()?;
        // A non-NUL byte past the cap is a cut argument; NULs there are title padding.
        let mut truncated = raw.get(monitor_common::ARGS_LEN).is_some_and(|&b| b != 0);
        raw.truncate(monitor_common::ARGS_LEN);
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let (mut argv, split_truncated) = decode::split_args(&raw[..end]);
        truncated |= split_truncated;
        for arg in &mut argv {
            if arg.len() > PROC_ARG_MAX {
                let cut = (0..=PROC_ARG_MAX)
                    .rev()
                    .find(|&i| arg.is_char_boundary(i))
                    .unwrap_or(0);
                arg.truncate(cut);
                truncated = true;
            }
        }
        Some((argv, truncated))
    }

    /// The audit login uid (`/proc/<pid>/loginuid`, set by `pam_loginuid` when a session
    /// opens); `None` when unset (`4294967295`), unreadable, or without `CONFIG_AUDIT`.
    pub fn loginuid(&self, pid: u32) -> Option<u32> {
        let text = fs::read_to_string(self.path(pid, "loginuid")).ok()?;
        text.trim().parse().ok().filter(|&uid| uid != u32::MAX)
    }

    /// The terminal on the process's standard input (`pts/0`, `tty1`), if it is one.
    pub fn tty(&self, pid: u32) -> Option<String> {
        let target = fs::read_link(self.path(pid, "fd/0")).ok()?;
        let target = target.to_str()?;
        let name = target.strip_prefix("/dev/")?;
        (name.starts_with("pts/") || name.starts_with("tty")).then(|| name.to_owned())
    }

    /// The inode number of the executable the process runs (`stat` of `/proc/<pid>/exe`, which
    /// also works for a deleted one).
    pub fn exe_inode(&self, pid: u32) -> Option<u64> {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(self.path(pid, "exe")).ok().map(|m| m.ino())
    }

    /// The effective uid (`status`), `None` when the process is gone or the line unreadable.
    pub fn euid(&self, pid: u32) -> Option<u32> {
        let text = fs::read_to_string(self.path(pid, "status")).ok()?;
        parse_status(&text).euid
    }

    pub fn tgid_of(&self, tid: u32) -> Option<u32> {
        let text = fs::read_to_string(self.path(tid, "status")).ok()?;
        parse_status(&text).tgid
    }

    /// One process, `None` when it is gone or unreadable. Kernel threads have no exe and an empty
    /// argv.
    pub fn read(&self, pid: u32) -> Option<ProcProcess> {
        match self.try_read(pid) {
            Ok(e) => Some(e),
            Err(e) => {
                log::trace!("{e}");
                None
            }
        }
    }

    fn try_read(&self, pid: u32) -> Result<ProcProcess, ProcError> {
        let read = |file: &str| {
            let path = self.path(pid, file);
            fs::read(&path).map_err(|source| ProcError::Io { path, source })
        };
        let stat_bytes = read("stat")?;
        let stat =
            parse_stat(&String::from_utf8_lossy(&stat_bytes)).ok_or_else(|| ProcError::Parse {
                path: self.path(pid, "stat"),
                what: "no `(comm)` followed by state and ppid",
            })?;
        let status = parse_status(&String::from_utf8_lossy(&read("status")?));
        if status.tgid.is_some_and(|t| t != pid) {
            return Err(ProcError::Parse {
                path: self.path(pid, "status"),
                what: "a thread, not a thread-group leader",
            });
        }
        let (argv, argv_truncated) = self.argv(pid).unwrap_or_default();
        Ok(ProcProcess {
            pid,
            ppid: stat.ppid,
            uid: status.uid.unwrap_or(0),
            gid: status.gid.unwrap_or(0),
            euid: status.euid,
            comm: stat.comm,
            exe: self.exe(pid),
            argv,
            argv_truncated,
            start_ns: stat
                .starttime_ticks
                .map(|t| t.saturating_mul(self.ns_per_tick)),
        })
    }
}

/// The fields of `/proc/<pid>/stat` the table needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    pub ppid: u32,
    pub starttime_ticks: Option<u64>,
}

/// Parses `pid (comm) state ppid ...`. comm may contain spaces and parentheses, so it spans from
/// the first `(` to the LAST `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = line[open + 1..close].to_string();
    let mut rest = line[close + 1..].split_ascii_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    // Field 22 (starttime); after comm, state is field 3, so it is the 19th remaining token
    // counting state as the 1st.
    let starttime_ticks = rest.nth(17).and_then(|s| s.parse().ok());
    Some(ProcStat {
        comm,
        ppid,
        starttime_ticks,
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub tgid: Option<u32>,
    /// Real uid / gid (what `bpf_get_current_uid_gid` reports).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Effective uid.
    pub euid: Option<u32>,
}

pub fn parse_status(text: &str) -> ProcStatus {
    let mut st = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let nth = |n| value.split_ascii_whitespace().nth(n)?.parse().ok();
        match key {
            "Tgid" => st.tgid = nth(0),
            // Real, effective, saved set, filesystem.
            "Uid" => (st.uid, st.euid) = (nth(0), nth(1)),
            "Gid" => st.gid = nth(0),
            _ => {}
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TempDir, fake_proc};

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let s = parse_stat(
            "4242 (a) b (c) )) R 17 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0",
        )
        .unwrap();
        assert_eq!(
            s,
            ProcStat {
                comm: "a) b (c) )".into(),
                ppid: 17,
                starttime_ticks: Some(987_654)
            }
        );
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("12 )x( S 1"), None);
        // Old kernels / truncated lines without starttime still give comm and ppid.
        assert_eq!(parse_stat("1 (init) S 0").unwrap().starttime_ticks, None);
    }

    #[test]
    fn status_parsing() {
        // A setuid-root program run by uid 1000.
        let st = parse_status("Name:\tx\nTgid:\t10\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n");
        assert_eq!(
            st,
            ProcStatus {
                tgid: Some(10),
                uid: Some(1000),
                gid: Some(5),
                euid: Some(0),
            }
        );
        // A short Uid line has no effective uid.
        assert_eq!(parse_status("Uid:\t7\n").euid, None);
    }

    #[test]
    fn proc_argv_is_bounded() {
        let dir = TempDir::new();
        let long = "A".repeat(5000);
        let many: Vec<String> = (0..20).map(|_| "B".repeat(300_000 / 20)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        fake_proc(&dir.0, 10, 1, "x", Some("/x"), &["x", &long, "y"], 1);
        fake_proc(&dir.0, 11, 1, "x", Some("/x"), &many, 1);
        let fs = ProcFs::new(&dir.0);
        let (argv, truncated) = fs.argv(10).unwrap();
        assert!(truncated);
        assert_eq!(argv[0], "x");
        assert_eq!(argv[1].len(), PROC_ARG_MAX);
        let (argv, truncated) = fs.argv(11).unwrap();
        assert!(truncated);
        assert_eq!(argv.len(), 1, "only the first 2048 bytes are read");
        assert_eq!(argv[0].len(), PROC_ARG_MAX);
        // Multi-byte characters are cut on a character boundary.
        let wide = "é".repeat(700);
        fake_proc(&dir.0, 12, 1, "x", Some("/x"), &[&wide], 1);
        let (argv, truncated) = fs.argv(12).unwrap();
        assert!(truncated);
        assert_eq!(argv[0], "é".repeat(PROC_ARG_MAX / 2));
        // A short title with a long NUL padding is not truncated.
        fs::create_dir_all(dir.0.join("13")).unwrap();
        let mut padded = b"php-fpm: pool www".to_vec();
        padded.extend_from_slice(&[0; 4000]);
        fs::write(dir.0.join("13/cmdline"), padded).unwrap();
        assert_eq!(
            fs.argv(13).unwrap(),
            (vec!["php-fpm: pool www".to_owned()], false)
        );
    }

    #[test]
    fn pids_are_sorted_and_numeric_only() {
        let dir = TempDir::new();
        for name in ["30", "4", "self", "100"] {
            fs::create_dir_all(dir.path().join(name)).unwrap();
        }
        assert_eq!(pids(dir.path()).unwrap(), [4, 30, 100]);
        assert!(pids(&dir.path().join("missing")).is_err());
    }
}
