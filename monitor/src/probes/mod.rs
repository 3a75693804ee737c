//! Loading and attaching the eBPF programs.
//!
//! The embedded object is loaded with the ring buffer sized from the command line and two
//! globals set: the daemon's own tgid (ignored by every hook) and the kernel struct offsets
//! ([`offsets`], from BTF by [`btf`]). Then the [`table`] of probes is walked ([`attach`]): each
//! logical hook tries its preferred attachment (fentry, cheapest and richest) and falls back to
//! the tracepoint, recording what took and why the others did not — the status record publishes
//! that as `hooks`.

mod attach;
pub mod btf;
mod offsets;
mod table;
mod watch;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
};
use log::{debug, warn};
use monitor_common::{ERROR_SLOTS, KernelOffsets, MAP_DROPS, MAP_ERRORS, MAP_EVENTS};

pub use self::watch::{NetsUpdate, Watch};
use crate::record::{AttachReport, ProgramRuns, Refusal};

/// The eBPF object built by `build.rs` (aya-build) from `monitor-ebpf`.
#[cfg(feature = "ebpf")]
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));
/// Built without the `ebpf` feature (the fuzz targets, which never load it): no object, and a
/// load fails with aya's parse error.
#[cfg(not(feature = "ebpf"))]
static EBPF_OBJECT: &[u8] = &[];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "ring buffer size {0} is invalid: it must be a power of two and a multiple of the page size ({1})"
    )]
    RingBufferSize(u32, u64),
    #[error("loading the eBPF object failed (the daemon needs root, or CAP_BPF + CAP_PERFMON)")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF map {0} is missing from the object (or was already taken)")]
    MissingMap(&'static str),
    #[error("eBPF map error")]
    Map(#[from] aya::maps::MapError),
    #[error("no attachment worked for hook {hook}: {refused}")]
    NoAttachment { hook: &'static str, refused: String },
    #[error("{count} web server users, more than the kernel's {max}")]
    TooManyWebUids { count: usize, max: u32 },
}

/// Options fixed at load time.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Size of the ring buffer in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Thread-group id the kernel side ignores (the daemon's own).
    pub monitor_tgid: u32,
    /// The benchmark's kernel floor: every program returns at once (`monitor --bench-floor`).
    pub floor: bool,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events lost because the ring buffer was full.
    pub drops: u64,
    /// Failures inside the eBPF programs, indexed by `monitor_common::ErrorSlot`.
    pub errors: [u64; monitor_common::ERROR_SLOTS as usize],
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    report: AttachReport,
    offsets: KernelOffsets,
}

impl Probes {
    /// Loads the embedded object, sets globals, attaches every hook (preferred first, then
    /// fallback). Fails only when a hook has no working attachment at all.
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        let page = page_size();
        let size = opts.ring_buffer_bytes;
        if !size.is_power_of_two() || u64::from(size) % page != 0 {
            return Err(ProbeError::RingBufferSize(size, page));
        }
        bump_memlock_rlimit();

        // The kernel's BTF is parsed twice (our struct offsets here, aya's types in `attach_all`),
        // the daemon's peak memory: one after the other, the peak is the larger parse, not the
        // sum of both.
        let offsets = offsets::load_offsets();

        match attach::attach_all(opts, &offsets) {
            Ok((ebpf, report)) => Ok(Self {
                ebpf,
                report,
                offsets,
            }),
            // The programs that follow kernel pointers are the big ones; if a verifier refuses
            // them, load again with every offset group marked invalid (the verifier then prunes
            // those paths as dead code, `KERNEL_OFFSETS` being read-only data) rather than run
            // blind. The socket group goes too: a refusal caused by a socket read would otherwise
            // come back on the second load.
            Err(ProbeError::NoAttachment { hook, refused })
                if offsets.valid == 1 || offsets.sock_valid == 1 =>
            {
                warn!(
                    "{hook}: refused with kernel-memory reads ({refused}); loading again without \
                     them: exe, argv and ppid will come from /proc, socket hooks fall back to the \
                     plain tracepoint"
                );
                let degraded = KernelOffsets {
                    valid: 0,
                    threads_valid: 0,
                    sock_valid: 0,
                    files_valid: 0,
                    file_id_valid: 0,
                    ..offsets
                };
                let (ebpf, mut report) = attach::attach_all(opts, &degraded)?;
                // `refused` lists every attachment of the first load (they all failed); what took
                // now may be a different one (without offsets the socket hooks take the plain
                // tracepoint), so the entry names the first load, not this attachment.
                if let Some(status) = report.get_mut(hook) {
                    status.refused.insert(
                        0,
                        Refusal {
                            hook: format!("every {hook} attachment, with kernel struct offsets"),
                            error: refused,
                        },
                    );
                }
                Ok(Self {
                    ebpf,
                    report,
                    offsets: degraded,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Which hook took for each logical hook and why the others did not.
    pub fn report(&self) -> &AttachReport {
        &self.report
    }

    /// The offsets handed to the eBPF programs (`valid == 0`: exec records carry no exe/argv).
    pub fn kernel_offsets(&self) -> &KernelOffsets {
        &self.offsets
    }

    /// Takes the run-time filter maps (call once).
    pub fn take_watch(&mut self) -> Result<Watch, ProbeError> {
        Watch::take(&mut self.ebpf)
    }

    /// Takes the ring buffer (call once); the daemon wraps it in `tokio::io::unix::AsyncFd`.
    pub fn take_ring_buf(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(ProbeError::MissingMap(MAP_EVENTS))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// What each program has cost the kernel so far (from its fdinfo), by program name; `None`
    /// while `kernel.bpf_stats_enabled` is 0, when the kernel does not count.
    pub fn program_runs(&self) -> Option<BTreeMap<String, ProgramRuns>> {
        let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        if !enabled {
            return None;
        }
        let mut runs = BTreeMap::new();
        for (name, program) in self.ebpf.programs() {
            let Ok(fd) = program.fd() else { continue };
            let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
            if let Ok(info) = std::fs::read_to_string(&path) {
                runs.insert(name.to_owned(), parse_fdinfo_runs(&info));
            }
        }
        Some(runs)
    }

    /// Current per-CPU drop and error counters, summed.
    pub fn counters(&self) -> Result<Counters, ProbeError> {
        let drops = PerCpuArray::<_, u64>::try_from(
            self.ebpf
                .map(MAP_DROPS)
                .ok_or(ProbeError::MissingMap(MAP_DROPS))?,
        )?;
        let errors = PerCpuArray::<_, u64>::try_from(
            self.ebpf
                .map(MAP_ERRORS)
                .ok_or(ProbeError::MissingMap(MAP_ERRORS))?,
        )?;
        let mut counters = Counters {
            drops: drops.get(&0, 0)?.iter().sum(),
            ..Counters::default()
        };
        for (slot, total) in (0..ERROR_SLOTS).zip(counters.errors.iter_mut()) {
            *total = errors.get(&slot, 0)?.iter().sum();
        }
        Ok(counters)
    }
}

/// `prog_id`, `run_cnt` and `run_time_ns` from a BPF program's `/proc/<pid>/fdinfo/<fd>` (0
/// when absent).
fn parse_fdinfo_runs(info: &str) -> ProgramRuns {
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    ProgramRuns {
        id: u32::try_from(field("prog_id:")).unwrap_or(0),
        runs: field("run_cnt:"),
        run_time_ns: field("run_time_ns:"),
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Kernels before 5.11 charge BPF maps to `RLIMIT_MEMLOCK`; raising it is harmless on newer ones.
fn bump_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) } != 0 {
        debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ring_buffer_sizes_are_refused_before_touching_the_kernel() {
        for size in [0, 3000, 4096 * 3] {
            let opts = ProbeOptions {
                ring_buffer_bytes: size,
                monitor_tgid: 1,
                floor: false,
            };
            assert!(matches!(
                Probes::load(&opts),
                Err(ProbeError::RingBufferSize(..))
            ));
        }
    }

    /// Root only: load everything for real, exec `/usr/bin/true` from a child, and find its record
    /// with the exe, argv and ppid resolved in the kernel; our own fork is not reported.
    #[test]
    fn privileged_exec_record_carries_exe_argv_and_ppid() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("MONITOR_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "MONITOR_REQUIRE_PRIVILEGED=1 but not root: cannot load eBPF programs"
            );
            eprintln!("SKIPPED privileged_exec_record_carries_exe_argv_and_ppid: needs root");
            return;
        }
        use monitor_common::{EXEC_EXE_RESOLVED, EventHeader, EventKind, ExecEvent};

        let me = std::process::id();
        let mut probes = Probes::load(&ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            monitor_tgid: me,
            floor: false,
        })
        .expect("load probes as root");
        for hook in ["listen", "connect", "exec", "fork", "exit"] {
            let status = probes
                .report()
                .get(hook)
                .expect("every logical hook is reported");
            assert!(status.attached.is_some(), "{hook} not attached: {status:?}");
        }
        let mut ring = probes.take_ring_buf().expect("ring buffer");

        let marker = format!("probes-test-{}", std::process::id());
        let child = std::process::Command::new("/usr/bin/true")
            .arg(&marker)
            .status()
            .expect("run /usr/bin/true");
        assert!(child.success());

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = None;
        while found.is_none() && std::time::Instant::now() < deadline {
            while let Some(item) = ring.next() {
                let bytes: &[u8] = &item;
                assert!(bytes.len() >= size_of::<EventHeader>(), "short record");
                // SAFETY: length checked; EventHeader is plain integers.
                let header: EventHeader =
                    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                assert_ne!(
                    header.tgid, me,
                    "the monitor's own activity must be filtered out"
                );
                if header.kind != EventKind::Exec as u32 || bytes.len() < size_of::<ExecEvent>() {
                    continue;
                }
                // SAFETY: length checked; ExecEvent is plain integers and byte arrays.
                let ev: ExecEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                let args = &ev.args[..(ev.args_len as usize).min(ev.args.len())];
                if args.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                    found = Some(ev);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ev = found.expect("exec of /usr/bin/true seen within 5 s");
        assert_eq!(ev.header.ppid, me);
        assert_eq!(ev.header.tgid, ev.header.tid);
        assert_ne!(ev.flags & EXEC_EXE_RESOLVED, 0, "flags {:#x}", ev.flags);
        assert_eq!(&ev.exe[..ev.exe_len as usize], b"/usr/bin/true");
        assert_eq!(&ev.filename[..ev.filename_len as usize], b"/usr/bin/true");
        let expected = format!("/usr/bin/true\0{marker}\0");
        assert_eq!(&ev.args[..ev.args_len as usize], expected.as_bytes());
        assert_eq!(&ev.header.comm[..5], b"true\0");
        assert_eq!(probes.counters().expect("counters").drops, 0);
    }

    /// Loads the probes, runs `program` with `marker` as its only argument and returns the exec
    /// record carrying that marker (root only: callers check first).
    fn exec_record_of(program: &std::path::Path, marker: &str) -> monitor_common::ExecEvent {
        use monitor_common::{EventHeader, EventKind, ExecEvent};

        let mut probes = Probes::load(&ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            monitor_tgid: std::process::id(),
            floor: false,
        })
        .expect("load probes as root");
        let mut ring = probes.take_ring_buf().expect("ring buffer");
        let status = std::process::Command::new(program)
            .arg(marker)
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            while let Some(item) = ring.next() {
                let bytes: &[u8] = &item;
                if bytes.len() < size_of::<ExecEvent>() {
                    continue;
                }
                // SAFETY: length checked; EventHeader is plain integers.
                let header: EventHeader =
                    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                if header.kind != EventKind::Exec as u32 {
                    continue;
                }
                // SAFETY: length checked; ExecEvent is plain integers and byte arrays.
                let ev: ExecEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                let args = &ev.args[..(ev.args_len as usize).min(ev.args.len())];
                if args.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                    return ev;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("exec of {} not seen within 5 s", program.display());
    }

    /// Root only: a listen(2) leaves nothing parked; a record parked for a listen no listen(2)
    /// returns for (`io_uring`) is taken by the daemon's sweep once it is old enough, and once.
    #[test]
    fn privileged_abandoned_listens_are_swept_once() {
        if skip_unless_root("privileged_abandoned_listens_are_swept_once") {
            return;
        }
        let mut probes = Probes::load(&ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            monitor_tgid: 1,
            floor: false,
        })
        .expect("load probes as root");
        let mut watch = probes.take_watch().expect("filter maps");
        let listener =
            std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).expect("listen");
        let now = crate::clock::boottime_ns().expect("CLOCK_BOOTTIME");
        assert!(
            watch.abandoned_listens(now + 1_000_000_000, 0).is_empty(),
            "sys_exit_listen sent the record of a listen(2) and left nothing parked"
        );
        drop(listener);
        let parked = |ktime_ns: u64| {
            // SAFETY: PendingListen is made of integers and byte arrays: all zero is a value.
            let mut p: monitor_common::PendingListen = unsafe { std::mem::zeroed() };
            p.event.header.kind = monitor_common::EventKind::Listen as u32;
            p.event.header.ktime_ns = ktime_ns;
            p
        };
        let (old, young) = (now - 1_000_000_000, now);
        watch.park_listen(7, parked(old)).expect("park");
        watch.park_listen(8, parked(young)).expect("park");
        let swept = watch.abandoned_listens(now, 20_000_000);
        assert_eq!(swept.len(), 1, "only the old record is abandoned");
        assert_eq!(swept[0].header.ktime_ns, old);
        assert!(
            watch.abandoned_listens(now, 20_000_000).is_empty(),
            "taken once"
        );
        let later = watch.abandoned_listens(now + 1_000_000_000, 20_000_000);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].header.ktime_ns, young);
    }

    fn skip_unless_root(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return false;
        }
        assert!(
            std::env::var("MONITOR_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "MONITOR_REQUIRE_PRIVILEGED=1 but not root: cannot load eBPF programs"
        );
        eprintln!("SKIPPED {test}: needs root");
        true
    }

    /// A copy of /usr/bin/true at `dir/name` (directories created), removed with `root`.
    struct TrueCopy {
        root: std::path::PathBuf,
        path: std::path::PathBuf,
    }

    impl TrueCopy {
        fn create(root: std::path::PathBuf, dirs: &std::path::Path, name: &str) -> Self {
            let dir = root.join(dirs);
            std::fs::create_dir_all(&dir).expect("create the directories");
            let path = dir.join(name);
            std::fs::copy("/usr/bin/true", &path).expect("copy /usr/bin/true");
            Self { root, path }
        }
    }

    impl Drop for TrueCopy {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// Root only: a path longer than the record's `exe` keeps its TAIL (the binary's name), not
    /// its head, and is flagged truncated.
    #[test]
    fn privileged_long_exe_path_keeps_its_tail() {
        if skip_unless_root("privileged_long_exe_path_keeps_its_tail") {
            return;
        }
        use monitor_common::{EXE_LEN, EXEC_EXE_RESOLVED, EXEC_EXE_TRUNCATED};

        let root = std::env::temp_dir().join(format!("monitor-long-{}", std::process::id()));
        let dirs: std::path::PathBuf = (0..6).map(|i| format!("{i}{}", "x".repeat(99))).collect();
        let copy = TrueCopy::create(root, &dirs, "long-true");
        let full = copy.path.to_str().expect("utf-8 path").as_bytes().to_vec();
        assert!(full.len() >= 600 && full.len() < 1024, "{}", full.len());
        let ev = exec_record_of(&copy.path, &format!("long-{}", std::process::id()));
        assert_ne!(ev.flags & EXEC_EXE_RESOLVED, 0, "flags {:#x}", ev.flags);
        assert_ne!(ev.flags & EXEC_EXE_TRUNCATED, 0, "flags {:#x}", ev.flags);
        assert_eq!(ev.exe_len as usize, EXE_LEN);
        assert_eq!(
            String::from_utf8_lossy(&ev.exe),
            String::from_utf8_lossy(&full[full.len() - EXE_LEN..])
        );
    }

    /// Root only: a path deeper than the walk goes (80 directories) is flagged truncated and what
    /// it has is the end of the real path, the binary's name included.
    #[test]
    fn privileged_deep_exe_path_is_flagged_and_keeps_its_tail() {
        if skip_unless_root("privileged_deep_exe_path_is_flagged_and_keeps_its_tail") {
            return;
        }
        use monitor_common::{EXEC_EXE_RESOLVED, EXEC_EXE_TRUNCATED};

        let root = std::env::temp_dir().join(format!("monitor-deep-{}", std::process::id()));
        let dirs: std::path::PathBuf = std::iter::repeat_n("d", 80).collect();
        let copy = TrueCopy::create(root, &dirs, "deep-true");
        let full = copy.path.to_str().expect("utf-8 path").to_owned();
        let ev = exec_record_of(&copy.path, &format!("deep-{}", std::process::id()));
        assert_ne!(ev.flags & EXEC_EXE_RESOLVED, 0, "flags {:#x}", ev.flags);
        assert_ne!(ev.flags & EXEC_EXE_TRUNCATED, 0, "flags {:#x}", ev.flags);
        let exe = String::from_utf8_lossy(&ev.exe[..ev.exe_len as usize]).into_owned();
        assert!(exe.ends_with("/d/deep-true"), "{exe}");
        assert!(full.ends_with(&exe), "{exe} is not the end of {full}");
        assert!(exe.len() < full.len(), "{exe}");
    }

    /// Root only: the exec record carries the executable's inode identity, decoded to what
    /// `stat(2)` says of the file (device in `st_dev` encoding, inode, size, mtime to the
    /// nanosecond).
    #[test]
    fn privileged_exec_record_carries_the_file_identity() {
        if skip_unless_root("privileged_exec_record_carries_the_file_identity") {
            return;
        }
        use std::{os::unix::fs::MetadataExt as _, time::Duration};

        use crate::decode::{self, FileId, KernelEvent};

        let root = std::env::temp_dir().join(format!("monitor-fileid-{}", std::process::id()));
        let copy = TrueCopy::create(root, std::path::Path::new("bin"), "id-true");
        // An mtime with nanoseconds, so that both halves are checked.
        let mtime = std::time::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
        std::fs::File::options()
            .write(true)
            .open(&copy.path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set the copy's mtime");
        for path in [std::path::Path::new("/usr/bin/true"), &copy.path] {
            let meta = std::fs::metadata(path).expect("stat");
            let ev = exec_record_of(path, &format!("fileid-{}", std::process::id()));
            let Ok(KernelEvent::Exec(exec)) = decode::decode(&crate::testing::bytes_of(&ev)) else {
                panic!("the exec record does not decode");
            };
            assert_eq!(
                exec.file,
                Some(FileId {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    size: meta.size(),
                    mtime_sec: meta.mtime(),
                    mtime_nsec: u32::try_from(meta.mtime_nsec()).expect("nanoseconds"),
                }),
                "{}: flags {:#x}",
                path.display(),
                ev.flags
            );
        }
        assert_eq!(
            std::fs::metadata(&copy.path).expect("stat").mtime_nsec(),
            123_456_789
        );
    }

    /// A child process (forked from this test) that waits for a byte on `go`, then, from a new
    /// grandchild when `grandchild`, sends one datagram to 127.0.0.1 at each of `ports` from one
    /// unbound UDP socket, and exits. Returns the child's pid.
    fn udp_sender(go: &std::os::fd::OwnedFd, ports: &[u16], grandchild: bool) -> u32 {
        use std::os::fd::AsRawFd as _;

        // Everything is prepared before fork: after it, in this multi-threaded process, the child
        // only makes async-signal-safe calls (read, fork, waitpid, socket, sendto, _exit).
        let addrs: Vec<libc::sockaddr_in> = ports
            .iter()
            .map(|p| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: p.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
                },
                sin_zero: [0; 8],
            })
            .collect();
        let go = go.as_raw_fd();
        // SAFETY: the child only calls async-signal-safe functions on memory prepared above and
        // leaves through _exit; the parent reaps it (wait_child).
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let mut byte = 0u8;
                if libc::read(go, (&raw mut byte).cast(), 1) != 1 {
                    libc::_exit(2);
                }
                if grandchild {
                    let g = libc::fork();
                    if g != 0 {
                        let mut status = 0;
                        libc::waitpid(g, &raw mut status, 0);
                        libc::_exit(i32::from(g < 0));
                    }
                }
                let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                for sa in &addrs {
                    libc::sendto(
                        fd,
                        b"x".as_ptr().cast(),
                        1,
                        0,
                        std::ptr::from_ref(sa).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                }
                libc::_exit(0);
            }
            pid as u32
        }
    }

    /// Lets a [`udp_sender`] go (one byte on `go_write`) and waits for it.
    fn run_sender(pid: u32, go_write: &std::os::fd::OwnedFd) {
        use std::os::fd::AsRawFd as _;
        let mut status = 0;
        // SAFETY: writing one byte from a local, and waiting for our own child.
        unsafe {
            assert_eq!(
                libc::write(go_write.as_raw_fd(), b"g".as_ptr().cast(), 1),
                1
            );
            assert_eq!(libc::waitpid(pid as i32, &raw mut status, 0), pid as i32);
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "sender {pid} failed (status {status})"
        );
    }

    /// Root only: without `--events` (UDP filter 0) the kernel reports UDP destinations only of
    /// processes marked in `WEB_TREE` (and of their new children, marked by the fork hook) or
    /// running as a web user, once per destination, never port 53; exit unmarks.
    #[test]
    fn privileged_udp_reported_only_for_web_processes_and_users() {
        if skip_unless_root("privileged_udp_reported_only_for_web_processes_and_users") {
            return;
        }
        use std::{
            collections::BTreeMap,
            os::fd::{FromRawFd as _, OwnedFd},
            time::{Duration, Instant},
        };

        use crate::{
            decode::{self, KernelEvent, SockKind},
            record::Protocol,
        };

        let mut probes = Probes::load(&ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            monitor_tgid: std::process::id(),
            floor: false,
        })
        .expect("load probes as root");
        let udp = probes.report().get("udp").expect("udp is reported");
        assert!(udp.attached.is_some(), "udp not attached: {udp:?}");
        let mut watch = probes.take_watch().expect("filter maps");
        watch.send_all(false).expect("scope");
        let mut ring = probes.take_ring_buf().expect("ring buffer");
        let mut pipe = [0; 2];
        // SAFETY: pipe(2) writes two descriptors into the array, owned from here on.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: both were just returned by pipe(2) and nothing else owns them.
        let (go_read, go_write) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };

        // Ports nothing listens on (loopback only: an ICMP port-unreachable is all that comes back).
        let base = 47_100 + (std::process::id() % 500) as u16 * 10;
        let (unmarked, marked, inherited, by_uid, uid_dropped, last) =
            (base, base + 1, base + 2, base + 3, base + 4, base + 5);

        let plain = udp_sender(&go_read, &[unmarked], false);
        run_sender(plain, &go_write);

        let web = udp_sender(&go_read, &[marked, marked, 53], false);
        watch.mark_web_tree(web).expect("mark");
        watch.mark_web_tree(web).expect("marking twice is fine");
        run_sender(web, &go_write);
        assert!(!watch.in_web_tree(web), "exit unmarks the process");

        // The child is marked; the grandchild it forks is marked by the kernel and sends.
        let parent = udp_sender(&go_read, &[inherited], true);
        watch.mark_web_tree(parent).expect("mark");
        run_sender(parent, &go_write);

        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        watch.set_web_uids(&[uid, 33]).expect("web users");
        let as_user = udp_sender(&go_read, &[by_uid], false);
        run_sender(as_user, &go_write);
        watch.set_web_uids(&[33]).expect("web users");
        let no_longer = udp_sender(&go_read, &[uid_dropped], false);
        run_sender(no_longer, &go_write);
        assert!(matches!(
            watch.set_web_uids(&(0..65).collect::<Vec<u32>>()),
            Err(ProbeError::TooManyWebUids { count: 65, max: 64 })
        ));

        let closing = udp_sender(&go_read, &[last], false);
        watch.mark_web_tree(closing).expect("mark");
        run_sender(closing, &go_write);

        // port → (tgid, ppid) of every UDP record of ours; the last one closes the window (one
        // ring buffer, reserved in order: every earlier send's record is in by then).
        let mut seen: BTreeMap<u16, Vec<(u32, u32)>> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen.contains_key(&last) && Instant::now() < deadline {
            while let Some(item) = ring.next() {
                let Ok(KernelEvent::Sock(s)) = decode::decode(&item) else {
                    continue;
                };
                let Some(remote) = s.socket.remote else {
                    continue;
                };
                if s.kind == SockKind::Connect
                    && s.socket.protocol == Protocol::Udp
                    && (remote.port == 53 || (base..=last).contains(&remote.port))
                {
                    assert_eq!(
                        s.origin.hook,
                        Some(monitor_common::Hook::TracepointSysEnterSendto)
                    );
                    assert_eq!(remote.ip, std::net::Ipv4Addr::LOCALHOST);
                    seen.entry(remote.port)
                        .or_default()
                        .push((s.origin.tgid, s.origin.ppid));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            seen.get(&marked),
            Some(&vec![(web, std::process::id())]),
            "{seen:?}"
        );
        let grandchild = seen.get(&inherited).expect("the grandchild's send");
        assert!(
            grandchild.len() == 1 && grandchild[0].1 == parent && grandchild[0].0 != parent,
            "{seen:?}"
        );
        assert_eq!(seen.get(&by_uid).map(Vec::len), Some(1), "{seen:?}");
        assert_eq!(seen.get(&last).map(Vec::len), Some(1), "{seen:?}");
        for port in [unmarked, uid_dropped, 53] {
            assert!(!seen.contains_key(&port), "port {port} reported: {seen:?}");
        }
        assert_eq!(
            probes.counters().expect("counters").errors,
            [0; ERROR_SLOTS as usize]
        );
    }

    /// One socket a [`binder`] child opens: `SOCK_DGRAM` (UDP) or `SOCK_STREAM` (TCP) in
    /// `domain`, bound to the address in `sockaddr`, or (`send`) left unbound and sent one
    /// datagram to it instead (autobind).
    struct Bind {
        domain: libc::c_int,
        kind: libc::c_int,
        sockaddr: Vec<u8>,
        send: bool,
    }

    impl Bind {
        fn v4(kind: libc::c_int, ip: [u8; 4], port: u16) -> Self {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip),
                },
                sin_zero: [0; 8],
            };
            Self {
                domain: libc::AF_INET,
                kind,
                sockaddr: crate::testing::bytes_of(&sa),
                send: false,
            }
        }

        fn v6(ip: std::net::Ipv6Addr, port: u16) -> Self {
            // SAFETY: sockaddr_in6 is plain integers and byte arrays; all zero is valid.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = port.to_be();
            sa.sin6_addr.s6_addr = ip.octets();
            Self {
                domain: libc::AF_INET6,
                kind: libc::SOCK_DGRAM,
                sockaddr: crate::testing::bytes_of(&sa),
                send: false,
            }
        }
    }

    /// A child process (forked from this test) that waits for a byte on `go`, then opens a socket
    /// per entry of `binds` in order (keeping them all open) and exits. Returns the child's pid.
    fn binder(go: &std::os::fd::OwnedFd, binds: &[Bind]) -> u32 {
        use std::os::fd::AsRawFd as _;
        let go = go.as_raw_fd();
        // SAFETY: the child only calls async-signal-safe functions (read, socket, bind, sendto,
        // _exit) on memory prepared before the fork; the parent reaps it (run_sender).
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let mut byte = 0u8;
                if libc::read(go, (&raw mut byte).cast(), 1) != 1 {
                    libc::_exit(2);
                }
                for b in binds {
                    let fd = libc::socket(b.domain, b.kind, 0);
                    let sa = b.sockaddr.as_ptr().cast();
                    let len = b.sockaddr.len() as libc::socklen_t;
                    if b.send {
                        libc::sendto(fd, b"x".as_ptr().cast(), 1, 0, sa, len);
                    } else {
                        libc::bind(fd, sa, len);
                    }
                }
                libc::_exit(0);
            }
            pid as u32
        }
    }

    /// Root only: a UDP socket bound by bind(2) to a port of its choosing is a listen record with
    /// protocol UDP, sent when the bind succeeded; port 0, a failed bind, TCP, autobind by a send
    /// and (while the kernel is told to skip them) loopback are not.
    #[test]
    fn privileged_udp_bind_reported_as_listen() {
        if skip_unless_root("privileged_udp_bind_reported_as_listen") {
            return;
        }
        use std::{
            net::{IpAddr, Ipv6Addr},
            os::fd::{FromRawFd as _, OwnedFd},
            time::{Duration, Instant},
        };

        use crate::{
            decode::{self, KernelEvent, SockKind},
            record::{Family, Protocol},
        };

        let mut probes = Probes::load(&ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            monitor_tgid: std::process::id(),
            floor: false,
        })
        .expect("load probes as root");
        let bind = probes
            .report()
            .get("udp_bind")
            .expect("udp_bind is reported");
        assert!(bind.attached.is_some(), "udp_bind not attached: {bind:?}");
        let mut watch = probes.take_watch().expect("filter maps");
        watch.skip_loopback_listens(true).expect("scope");
        watch.send_all(false).expect("scope");
        let mut ring = probes.take_ring_buf().expect("ring buffer");
        let mut pipe = [0; 2];
        // SAFETY: pipe(2) writes two descriptors into the array, owned from here on.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: both were just returned by pipe(2) and nothing else owns them.
        let (go_read, go_write) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };

        let base = 43_100 + (std::process::id() % 500) as u16 * 10;
        let (wildcard, loopback, tcp, v6, autobound, last, loopback_sent) = (
            base,
            base + 1,
            base + 2,
            base + 3,
            base + 4,
            base + 5,
            base + 6,
        );
        let any = [0, 0, 0, 0];
        let lo = [127, 0, 0, 1];
        let mut send = Bind::v4(libc::SOCK_DGRAM, lo, autobound);
        send.send = true;
        let quiet = binder(
            &go_read,
            &[
                Bind::v4(libc::SOCK_DGRAM, any, wildcard),
                // The same port again: EADDRINUSE, nothing more is sent.
                Bind::v4(libc::SOCK_DGRAM, any, wildcard),
                // The kernel picks the port.
                Bind::v4(libc::SOCK_DGRAM, any, 0),
                Bind::v4(libc::SOCK_DGRAM, lo, loopback),
                Bind::v4(libc::SOCK_STREAM, any, tcp),
                Bind::v6(Ipv6Addr::UNSPECIFIED, v6),
                send,
                Bind::v4(libc::SOCK_DGRAM, any, last),
            ],
        );
        run_sender(quiet, &go_write);
        // With loopback not skipped, a loopback bind is sent too.
        watch.skip_loopback_listens(false).expect("scope");
        let loud = binder(&go_read, &[Bind::v4(libc::SOCK_DGRAM, lo, loopback_sent)]);
        run_sender(loud, &go_write);

        let mut seen: Vec<(u32, u16, IpAddr, Family)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen.iter().any(|s| s.1 == loopback_sent) && Instant::now() < deadline {
            while let Some(item) = ring.next() {
                let Ok(KernelEvent::Sock(s)) = decode::decode(&item) else {
                    continue;
                };
                if s.kind != SockKind::Listen || (s.origin.tgid != quiet && s.origin.tgid != loud) {
                    continue;
                }
                assert_eq!(s.socket.protocol, Protocol::Udp, "{s:?}");
                assert_eq!(
                    s.origin.hook,
                    Some(monitor_common::Hook::TracepointSysExitBind)
                );
                assert_eq!(s.socket.remote, None);
                seen.push((
                    s.origin.tgid,
                    s.socket.local.port,
                    s.socket.local.ip,
                    s.socket.family,
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let v4_any = IpAddr::from([0, 0, 0, 0]);
        assert_eq!(
            seen,
            [
                (quiet, wildcard, v4_any, Family::Ipv4),
                (quiet, v6, IpAddr::from(Ipv6Addr::UNSPECIFIED), Family::Ipv6),
                (quiet, last, v4_any, Family::Ipv4),
                (loud, loopback_sent, IpAddr::from(lo), Family::Ipv4),
            ]
        );
        assert_eq!(
            probes.counters().expect("counters").errors,
            [0; ERROR_SLOTS as usize]
        );
    }

    /// Root only: a UDP connect's record is sent when connect(2) returns, with the local address
    /// and the port the connect gave the socket (its whole 5-tuple), IPv4 and IPv6.
    #[test]
    fn privileged_udp_connect_carries_its_local_side() {
        if skip_unless_root("privileged_udp_connect_carries_its_local_side") {
            return;
        }
        use std::{
            net::{IpAddr, Ipv4Addr, Ipv6Addr},
            os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
            time::{Duration, Instant},
        };

        use crate::{
            decode::{self, KernelEvent, SockKind},
            record::Protocol,
        };

        let mut probes = Probes::load(&ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            monitor_tgid: std::process::id(),
            floor: false,
        })
        .expect("load probes as root");
        let mut watch = probes.take_watch().expect("filter maps");
        watch.send_all(false).expect("scope");
        let mut ring = probes.take_ring_buf().expect("ring buffer");
        let pipe = || {
            let mut fds = [0; 2];
            // SAFETY: pipe(2) writes two descriptors into the array, owned from here on.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both were just returned by pipe(2) and nothing else owns them.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        let base = 44_100 + (std::process::id() % 500) as u16 * 10;
        for (ip, port) in [
            (IpAddr::from(Ipv4Addr::LOCALHOST), base),
            (IpAddr::from(Ipv6Addr::LOCALHOST), base + 1),
        ] {
            let (go_read, go_write) = pipe();
            let (port_read, port_write) = pipe();
            let connect = match ip {
                IpAddr::V4(v4) => Bind::v4(libc::SOCK_DGRAM, v4.octets(), port),
                IpAddr::V6(v6) => Bind::v6(v6, port),
            };
            let (go, out) = (go_read.as_raw_fd(), port_write.as_raw_fd());
            // SAFETY: the child only calls async-signal-safe functions (read, socket, connect,
            // getsockname, write, _exit) on memory prepared before the fork; reaped below.
            let child = unsafe {
                let pid = libc::fork();
                assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
                if pid == 0 {
                    let mut byte = 0u8;
                    if libc::read(go, (&raw mut byte).cast(), 1) != 1 {
                        libc::_exit(2);
                    }
                    let fd = libc::socket(connect.domain, libc::SOCK_DGRAM, 0);
                    let len = connect.sockaddr.len() as libc::socklen_t;
                    if libc::connect(fd, connect.sockaddr.as_ptr().cast(), len) != 0 {
                        libc::_exit(3);
                    }
                    let mut local = [0u8; 28];
                    let mut local_len = local.len() as libc::socklen_t;
                    libc::getsockname(fd, local.as_mut_ptr().cast(), &raw mut local_len);
                    // sin_port and sin6_port at 2, network byte order.
                    libc::write(out, local[2..4].as_ptr().cast(), 2);
                    libc::_exit(0);
                }
                pid as u32
            };
            watch.mark_web_tree(child).expect("mark");
            run_sender(child, &go_write);
            let mut local_port = [0u8; 2];
            // SAFETY: reading two bytes into a local.
            let n = unsafe { libc::read(port_read.as_raw_fd(), local_port.as_mut_ptr().cast(), 2) };
            assert_eq!(n, 2, "the child's local port");
            let local_port = u16::from_be_bytes(local_port);

            let deadline = Instant::now() + Duration::from_secs(5);
            let record = 'found: loop {
                assert!(
                    Instant::now() < deadline,
                    "no UDP connect record of {child}"
                );
                while let Some(item) = ring.next() {
                    if let Ok(KernelEvent::Sock(s)) = decode::decode(&item)
                        && s.kind == SockKind::Connect
                        && s.origin.tgid == child
                    {
                        break 'found s;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            assert_eq!(record.socket.protocol, Protocol::Udp);
            assert_eq!(
                record.origin.hook,
                Some(monitor_common::Hook::TracepointSysEnterConnect)
            );
            assert_eq!(
                record.socket.remote.map(|r| (r.ip, r.port)),
                Some((ip, port))
            );
            assert_eq!(
                (record.socket.local.ip, record.socket.local.port),
                (ip, local_port)
            );
            assert_ne!(local_port, 0);
        }
        assert_eq!(
            probes.counters().expect("counters").errors,
            [0; ERROR_SLOTS as usize]
        );
    }

    /// Opens `path` read-only WITHOUT close-on-exec, so that a child can exec it through
    /// `/proc/self/fd/<fd>`.
    fn open_inheritable(path: &std::path::Path, flags: libc::c_int) -> std::os::fd::OwnedFd {
        use std::os::{fd::FromRawFd, unix::ffi::OsStrExt};
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
        // SAFETY: c is a valid C string; the mode is only read with O_CREAT/O_TMPFILE.
        let fd = unsafe { libc::open(c.as_ptr(), flags, 0o755) };
        assert!(
            fd >= 0,
            "open {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just returned by open(2) and nothing else owns it.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    }

    /// Root only: an executable unlinked before it runs (exec through its fd) and an `O_TMPFILE`
    /// one are reported as /proc/<pid>/exe shows them: path + " (deleted)".
    #[test]
    fn privileged_deleted_exe_is_marked_deleted() {
        if skip_unless_root("privileged_deleted_exe_is_marked_deleted") {
            return;
        }
        use std::os::fd::AsRawFd;

        use monitor_common::{EXEC_EXE_RESOLVED, EXEC_EXE_TRUNCATED};

        let root = std::env::temp_dir().join(format!("monitor-deleted-{}", std::process::id()));
        let copy = TrueCopy::create(root.clone(), std::path::Path::new("bin"), "gone-true");
        let unlinked = open_inheritable(&copy.path, libc::O_RDONLY);
        std::fs::remove_file(&copy.path).expect("unlink the copy");

        // O_TMPFILE: written through one fd, exec'd through a read-only reopen (exec refuses a
        // file open for writing: ETXTBSY).
        let tmp_dir = root.join("bin");
        let tmpfile = open_inheritable(&tmp_dir, libc::O_TMPFILE | libc::O_RDWR);
        let bytes = std::fs::read("/usr/bin/true").expect("read /usr/bin/true");
        // SAFETY: bytes is a valid buffer of that length.
        let n = unsafe { libc::write(tmpfile.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(
            usize::try_from(n).ok(),
            Some(bytes.len()),
            "write the O_TMPFILE"
        );
        let tmp_ro = open_inheritable(
            std::path::Path::new(&format!("/proc/self/fd/{}", tmpfile.as_raw_fd())),
            libc::O_RDONLY,
        );
        drop(tmpfile);

        for (what, fd) in [("unlinked", &unlinked), ("O_TMPFILE", &tmp_ro)] {
            let link = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            let expected = std::fs::read_link(&link).expect("readlink the fd");
            let expected = expected.to_str().expect("utf-8 path").to_owned();
            assert!(expected.ends_with(" (deleted)"), "{what}: {expected}");
            let ev = exec_record_of(&link, &format!("deleted-{}-{what}", std::process::id()));
            assert_ne!(
                ev.flags & EXEC_EXE_RESOLVED,
                0,
                "{what}: flags {:#x}",
                ev.flags
            );
            assert_eq!(
                ev.flags & EXEC_EXE_TRUNCATED,
                0,
                "{what}: flags {:#x}",
                ev.flags
            );
            let exe = String::from_utf8_lossy(&ev.exe[..ev.exe_len as usize]).into_owned();
            assert_eq!(exe, expected, "{what}");
        }
        // A file that still exists gets no suffix.
        let kept = TrueCopy::create(root.join("kept"), std::path::Path::new("bin"), "kept-true");
        let ev = exec_record_of(&kept.path, &format!("kept-{}", std::process::id()));
        assert_eq!(
            &ev.exe[..ev.exe_len as usize],
            kept.path.to_str().expect("utf-8 path").as_bytes()
        );
    }
}
