//! Loading and attaching the eBPF programs.
//!
//! The embedded object is loaded with the ring buffer sized from the command line and two
//! globals set: the daemon's own tgid (ignored by every hook) and the kernel struct offsets found
//! in BTF by [`crate::btf`]. Then a small probe table attaches each logical hook: it tries the
//! preferred attachment (fentry, cheapest and richest) and falls back to the tracepoint,
//! recording what took and why the others did not — the status record publishes that as
//! `hooks`.

use std::collections::BTreeMap;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{FEntry, TracePoint},
};
use log::{debug, info, warn};
use monitor_common::{
    ERROR_SLOTS, GLOBAL_KERNEL_OFFSETS, GLOBAL_MONITOR_TGID, KernelOffsets, MAP_DROPS, MAP_ERRORS,
    MAP_EVENTS, OFFSET_ABSENT, PROG_CONNECT_INET_SOCK_SET_STATE, PROG_CONNECT_SYS_ENTER_CONNECT,
    PROG_CONNECT_SYS_EXIT_CONNECT, PROG_CONNECT_TCP_CONNECT, PROG_CONNECT_TCP_RETRANSMIT_SKB,
    PROG_EXEC_SCHED_PROCESS_EXEC, PROG_LISTEN_INET_LISTEN, PROG_LISTEN_INET_SOCK_SET_STATE,
    PROG_LISTEN_SYS_ENTER_LISTEN, PROG_LISTEN_SYS_EXIT_LISTEN, PROG_PROCESS_SCHED_PROCESS_EXIT,
    PROG_PROCESS_SCHED_PROCESS_FORK,
};
use serde::Serialize;

use crate::btf;

/// The eBPF object built by `build.rs` (aya-build) from `monitor-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// Where tracefs keeps the tracepoint format files (the debugfs path is the pre-4.1 location).
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

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
}

/// Options fixed at load time.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Size of the ring buffer in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Thread-group id the kernel side ignores (the daemon's own).
    pub monitor_tgid: u32,
}

/// One attach attempt that did not take.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// e.g. `fentry:inet_listen`.
    pub hook: String,
    pub error: String,
}

/// Outcome for one logical hook (`listen`, `connect`, `exec`, `fork`, `exit`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HookStatus {
    /// The hook that took, e.g. `tracepoint:sock:inet_sock_set_state`; `null` when none did.
    pub attached: Option<String>,
    pub refused: Vec<Refusal>,
}

/// Keyed by logical hook name; serialized as the `hooks` object of the status record.
pub type AttachReport = BTreeMap<String, HookStatus>;

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counters {
    /// Events lost because the ring buffer was full.
    pub drops: u64,
    /// Failures inside the eBPF programs, by `monitor_common::ErrorSlot`.
    pub errors: [u64; monitor_common::ERROR_SLOTS as usize],
}

/// One way of attaching a logical hook.
#[derive(Clone, Copy, Debug)]
enum Attach {
    /// fentry program on a kernel function (needs BTF and the socket offsets).
    FEntry {
        program: &'static str,
        function: &'static str,
    },
    TracePoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// A tracepoint program plus `syscalls:sys_enter_<syscall>` / `sys_exit_<syscall>` programs
    /// that bracket the syscall, so that a record can wait inside it for data the tracepoint does
    /// not have yet (the connect fallback's source port). Needs the socket offsets.
    TracePointInSyscall {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        syscall: &'static str,
        enter: &'static str,
        exit: &'static str,
        /// Best effort: another tracepoint that sends a parked record sooner. When it does not
        /// attach, the rest still works; the report names it among the refusals.
        hasten: Option<Companion>,
    },
}

/// A tracepoint program attached alongside another attachment.
#[derive(Clone, Copy, Debug)]
struct Companion {
    program: &'static str,
    category: &'static str,
    name: &'static str,
}

impl Companion {
    fn label(self) -> String {
        format!("tracepoint:{}:{}", self.category, self.name)
    }
}

/// An attachment that took: the label the report shows, and the optional part that did not take.
#[derive(Debug)]
struct Took {
    label: String,
    refused: Option<Refusal>,
}

impl Attach {
    fn program(self) -> &'static str {
        match self {
            Attach::FEntry { program, .. }
            | Attach::TracePoint { program, .. }
            | Attach::TracePointInSyscall { program, .. } => program,
        }
    }

    /// Every program this attachment loads (a companion that did not take is simply not loaded).
    fn programs(self) -> impl Iterator<Item = &'static str> {
        let (brackets, hasten) = match self {
            Attach::TracePointInSyscall {
                enter,
                exit,
                hasten,
                ..
            } => ([Some(enter), Some(exit)], hasten.map(|c| c.program)),
            Attach::FEntry { .. } | Attach::TracePoint { .. } => ([None, None], None),
        };
        core::iter::once(self.program()).chain(brackets.into_iter().chain([hasten]).flatten())
    }

    /// The name the report uses: `fentry:inet_listen`, `tracepoint:sock:inet_sock_set_state`,
    /// `tracepoint:sock:inet_sock_set_state+syscalls:sys_exit_connect`.
    fn label(self) -> String {
        match self {
            Attach::FEntry { function, .. } => format!("fentry:{function}"),
            Attach::TracePoint { category, name, .. } => format!("tracepoint:{category}:{name}"),
            Attach::TracePointInSyscall {
                category,
                name,
                syscall,
                ..
            } => format!("tracepoint:{category}:{name}+syscalls:sys_exit_{syscall}"),
        }
    }
}

/// The probe table: logical hook → attachments in order of preference.
const PROBE_TABLE: &[(&str, &[Attach])] = &[
    (
        "listen",
        &[
            Attach::FEntry {
                program: PROG_LISTEN_INET_LISTEN,
                function: "inet_listen",
            },
            // TCP_LISTEN comes before get_port() binds the port and before the listen can still
            // fail: the record waits for listen(2) to return and goes out only if it returned 0.
            Attach::TracePointInSyscall {
                program: PROG_LISTEN_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
                syscall: "listen",
                enter: PROG_LISTEN_SYS_ENTER_LISTEN,
                exit: PROG_LISTEN_SYS_EXIT_LISTEN,
                hasten: None,
            },
            // Same program without the brackets: every TCP_LISTEN is sent at once (port 0 for an
            // unbound socket, failed listens included).
            Attach::TracePoint {
                program: PROG_LISTEN_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
            },
        ],
    ),
    (
        "connect",
        &[
            Attach::FEntry {
                program: PROG_CONNECT_TCP_CONNECT,
                function: "tcp_connect",
            },
            // SYN_SENT comes before inet_hash_connect() picks the source port: the records wait
            // for it, until connect(2) returns, the socket leaves SYN_SENT, or the SYN is
            // retransmitted, whichever comes first.
            Attach::TracePointInSyscall {
                program: PROG_CONNECT_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
                syscall: "connect",
                enter: PROG_CONNECT_SYS_ENTER_CONNECT,
                exit: PROG_CONNECT_SYS_EXIT_CONNECT,
                hasten: Some(Companion {
                    program: PROG_CONNECT_TCP_RETRANSMIT_SKB,
                    category: "tcp",
                    name: "tcp_retransmit_skb",
                }),
            },
            // Same program without the syscall brackets: every record goes out at SYN_SENT,
            // with local port 0.
            Attach::TracePoint {
                program: PROG_CONNECT_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
            },
        ],
    ),
    (
        "exec",
        &[Attach::TracePoint {
            program: PROG_EXEC_SCHED_PROCESS_EXEC,
            category: "sched",
            name: "sched_process_exec",
        }],
    ),
    (
        "fork",
        &[Attach::TracePoint {
            program: PROG_PROCESS_SCHED_PROCESS_FORK,
            category: "sched",
            name: "sched_process_fork",
        }],
    ),
    (
        "exit",
        &[Attach::TracePoint {
            program: PROG_PROCESS_SCHED_PROCESS_EXIT,
            category: "sched",
            name: "sched_process_exit",
        }],
    ),
];

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

        let btf = match Btf::from_sys_fs() {
            Ok(btf) => Some(btf),
            Err(e) => {
                warn!("kernel BTF unavailable ({e}): fentry hooks will be skipped");
                None
            }
        };
        let offsets = load_offsets();

        match attach_all(opts, btf.as_ref(), &offsets) {
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
                    ..offsets
                };
                let (ebpf, mut report) = attach_all(opts, btf.as_ref(), &degraded)?;
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

    /// Takes the ring buffer (call once); the daemon wraps it in `tokio::io::unix::AsyncFd`.
    pub fn take_ring_buf(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(ProbeError::MissingMap(MAP_EVENTS))?;
        Ok(RingBuf::try_from(map)?)
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

/// Loads the object with these globals and walks the probe table. Fails when a logical hook has
/// no working attachment (dropping the half-attached `Ebpf` detaches the rest).
fn attach_all(
    opts: &ProbeOptions,
    btf: Option<&Btf>,
    offsets: &KernelOffsets,
) -> Result<(Ebpf, AttachReport), ProbeError> {
    let mut loader = EbpfLoader::new();
    loader
        .btf(btf)
        .map_max_entries(MAP_EVENTS, opts.ring_buffer_bytes)
        .override_global(GLOBAL_MONITOR_TGID, &opts.monitor_tgid, true)
        .override_global(GLOBAL_KERNEL_OFFSETS, offsets, true);
    let mut ebpf = loader.load(EBPF_OBJECT)?;

    let mut report = AttachReport::new();
    for &(hook, attaches) in PROBE_TABLE {
        let mut status = HookStatus::default();
        for &attach in attaches {
            match try_attach(&mut ebpf, attach, btf, offsets) {
                Ok(took) => {
                    if let Some(refusal) = took.refused {
                        warn!("{hook}: {} refused: {}", refusal.hook, refusal.error);
                        status.refused.push(refusal);
                    }
                    status.attached = Some(took.label);
                    break;
                }
                Err(error) => {
                    debug!("{hook}: {} refused: {error}", attach.label());
                    status.refused.push(Refusal {
                        hook: attach.label(),
                        error,
                    });
                }
            }
        }
        match &status.attached {
            Some(label) => info!("{hook}: attached {label}"),
            None => {
                let refused = status
                    .refused
                    .iter()
                    .map(|r| format!("{}: {}", r.hook, r.error))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ProbeError::NoAttachment { hook, refused });
            }
        }
        report.insert(hook.to_owned(), status);
    }
    Ok((ebpf, report))
}

/// Loads and attaches one program (and its companions); the error text is what the report shows.
fn try_attach(
    ebpf: &mut Ebpf,
    attach: Attach,
    btf: Option<&Btf>,
    offsets: &KernelOffsets,
) -> Result<Took, String> {
    let mut took = Took {
        label: attach.label(),
        refused: None,
    };
    match attach {
        Attach::FEntry { program, function } => {
            let btf = btf.ok_or("kernel BTF unavailable")?;
            if offsets.sock_valid != 1 {
                return Err(sock_offsets_unavailable(offsets, ""));
            }
            let prog: &mut FEntry = ebpf
                .program_mut(program)
                .ok_or_else(|| format!("program {program} missing from the object"))?
                .try_into()
                .map_err(error_chain)?;
            prog.load(function, btf).map_err(error_chain)?;
            prog.attach().map_err(error_chain)?;
        }
        Attach::TracePoint {
            program,
            category,
            name,
        } => attach_tracepoint(ebpf, program, category, name)?,
        Attach::TracePointInSyscall {
            program,
            category,
            name,
            syscall,
            enter,
            exit,
            hasten,
        } => {
            if offsets.sock_valid != 1 {
                return Err(sock_offsets_unavailable(
                    offsets,
                    " (needed to read the port when the syscall returns)",
                ));
            }
            let enter_tp = format!("sys_enter_{syscall}");
            let exit_tp = format!("sys_exit_{syscall}");
            // Exit before enter: a thread that sys_enter marks must be seen leaving, or the
            // record parked for it would wait for the thread's next call.
            let attached = attach_tracepoint(ebpf, exit, "syscalls", &exit_tp)
                .map_err(|e| format!("tracepoint:syscalls:{exit_tp}: {e}"))
                .and_then(|()| {
                    attach_tracepoint(ebpf, enter, "syscalls", &enter_tp)
                        .map_err(|e| format!("tracepoint:syscalls:{enter_tp}: {e}"))
                })
                .and_then(|()| {
                    attach_tracepoint(ebpf, program, category, name)
                        .map_err(|e| format!("tracepoint:{category}:{name}: {e}"))
                });
            if let Err(e) = attached {
                // Detach and unload whatever took, so the next attachment in the table (the
                // same tracepoint without the brackets) can load the program afresh.
                for p in [program, enter, exit] {
                    unload_tracepoint(ebpf, p);
                }
                return Err(e);
            }
            if let Some(c) = hasten {
                match attach_tracepoint(ebpf, c.program, c.category, c.name) {
                    Ok(()) => took.label = format!("{}+{}:{}", took.label, c.category, c.name),
                    Err(error) => {
                        unload_tracepoint(ebpf, c.program);
                        took.refused = Some(Refusal {
                            hook: c.label(),
                            error,
                        });
                    }
                }
            }
        }
    }
    // How close a program is to the verifier's 1M-instruction budget, for whoever grows it next.
    for program in attach.programs() {
        if let Some(Ok(info)) = ebpf.program(program).map(|p| p.info()) {
            debug!(
                "{program}: verifier processed {:?} instructions",
                info.verified_instruction_count()
            );
        }
    }
    Ok(took)
}

/// Why an attachment that reads `struct sock` is skipped: the offsets were not found, or they
/// were found and then switched off by the degraded reload (`skc_family` is never 0 once found:
/// `sock_common` starts with the addresses).
fn sock_offsets_unavailable(offsets: &KernelOffsets, needed_for: &str) -> String {
    if offsets.skc_family != 0 {
        format!("struct sock offsets switched off after a verifier refusal{needed_for}")
    } else {
        format!("struct sock offsets not found in BTF{needed_for}")
    }
}

/// Loads one tracepoint program and attaches it to `category:name`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(error_chain)?;
    prog.load().map_err(error_chain)?;
    prog.attach(category, name).map_err(error_chain)?;
    Ok(())
}

/// Detaches and unloads a tracepoint program if it was loaded (best effort: used on a path that
/// is already failing, so a second error is only logged).
fn unload_tracepoint(ebpf: &mut Ebpf, program: &str) {
    let Some(prog) = ebpf.program_mut(program) else {
        return;
    };
    let Ok(prog) = <&mut TracePoint>::try_from(prog) else {
        return;
    };
    if prog.fd().is_ok()
        && let Err(e) = prog.unload()
    {
        debug!("unloading {program}: {}", error_chain(e));
    }
}

/// "outer: inner: innermost" — aya's errors keep the errno in their sources. A verifier log, if
/// any, is left out of the report (it can be megabytes) and goes to the debug log instead.
fn error_chain(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if let Some((head, log)) = text.split_once("Verifier output:") {
        debug!("verifier output: {log}");
        text = head.trim_end().to_owned();
    }
    text
}

/// Offsets from BTF and the tracepoint formats; anything missing is logged and left invalid.
fn load_offsets() -> KernelOffsets {
    let mut offsets = match btf::Btf::from_sys_fs() {
        Ok(parsed) => {
            let report = btf::kernel_offsets(&parsed);
            for missing in &report.missing {
                warn!("BTF: {missing}; falling back (see /proc for exe and argv)");
            }
            report.offsets
        }
        Err(e) => {
            warn!("BTF: {e}; exec records will carry no exe/argv (userspace reads /proc)");
            KernelOffsets::UNKNOWN
        }
    };
    match tracepoint_field("sched", "sched_process_fork", "child_pid") {
        Ok(Some(off)) => offsets.tp_fork_child_pid = off,
        Ok(None) => warn!(
            "sched_process_fork has no child_pid field; assuming offset {}",
            offsets.tp_fork_child_pid
        ),
        Err(e) => warn!(
            "{e}; assuming child_pid at offset {}",
            offsets.tp_fork_child_pid
        ),
    }
    match tracepoint_field("sched", "sched_process_exit", "group_dead") {
        Ok(Some(off)) => offsets.tp_exit_group_dead = off,
        Ok(None) => offsets.tp_exit_group_dead = OFFSET_ABSENT,
        Err(e) => warn!(
            "{e}; assuming group_dead at offset {}",
            offsets.tp_exit_group_dead
        ),
    }
    offsets
}

/// Offset of `field` in a tracepoint's record, from its tracefs `format` file.
fn tracepoint_field(category: &str, name: &str, field: &str) -> Result<Option<u32>, String> {
    let mut last_error = String::new();
    for root in TRACEFS_ROOTS {
        let path = format!("{root}/events/{category}/{name}/format");
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(format_field_offset(&text, field)),
            Err(e) => last_error = format!("reading {path}: {e}"),
        }
    }
    Err(last_error)
}

/// Parses lines like `\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;`.
fn format_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
        // The name is the declaration's last word, without an array suffix (`comm[16]`).
        let name = decl.split_whitespace().last()?.split('[').next()?;
        if name != field {
            return None;
        }
        line.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raising it is harmless on newer ones.
fn bump_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_FORMAT: &str = "name: sched_process_fork\nID: 366\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
    const OLD_EXIT_FORMAT: &str = "format:\n\
        \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n";

    #[test]
    fn tracepoint_format_fields_are_found_by_name() {
        assert_eq!(format_field_offset(FORK_FORMAT, "child_pid"), Some(20));
        assert_eq!(format_field_offset(FORK_FORMAT, "parent_pid"), Some(12));
        assert_eq!(format_field_offset(OLD_EXIT_FORMAT, "comm"), Some(8));
        assert_eq!(format_field_offset(OLD_EXIT_FORMAT, "pid"), Some(24));
        assert_eq!(format_field_offset(OLD_EXIT_FORMAT, "group_dead"), None);
        // "pid" must not match "child_pid" or "parent_pid".
        assert_eq!(format_field_offset(FORK_FORMAT, "pid"), None);
    }

    #[test]
    fn refusal_report_serializes_as_the_status_record_expects() {
        let mut report = AttachReport::new();
        report.insert(
            "listen".to_owned(),
            HookStatus {
                attached: Some(
                    Attach::TracePoint {
                        program: PROG_LISTEN_INET_SOCK_SET_STATE,
                        category: "sock",
                        name: "inet_sock_set_state",
                    }
                    .label(),
                ),
                refused: vec![Refusal {
                    hook: Attach::FEntry {
                        program: PROG_LISTEN_INET_LISTEN,
                        function: "inet_listen",
                    }
                    .label(),
                    error: "EPERM".to_owned(),
                }],
            },
        );
        let json = serde_json::to_value(&report).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({"listen": {"attached": "tracepoint:sock:inet_sock_set_state",
                "refused": [{"hook": "fentry:inet_listen", "error": "EPERM"}]}})
        );
    }

    #[test]
    fn connect_falls_back_to_the_bracketed_tracepoint_then_the_plain_one() {
        let (_, attaches) = PROBE_TABLE
            .iter()
            .find(|(hook, _)| *hook == "connect")
            .expect("connect is in the probe table");
        let labels: Vec<String> = attaches.iter().map(|a| a.label()).collect();
        assert_eq!(
            labels,
            [
                "fentry:tcp_connect",
                "tracepoint:sock:inet_sock_set_state+syscalls:sys_exit_connect",
                "tracepoint:sock:inet_sock_set_state",
            ]
        );
        // The bracketed variant is hastened by SYN retransmissions; when that part attaches the
        // report's label grows a `+tcp:tcp_retransmit_skb`.
        assert!(matches!(
            attaches[1],
            Attach::TracePointInSyscall {
                hasten: Some(Companion {
                    name: "tcp_retransmit_skb",
                    ..
                }),
                ..
            }
        ));
        // Both tracepoint variants run the same program, so the plain one only loses the port.
        assert_eq!(attaches[1].program(), attaches[2].program());
    }

    #[test]
    fn listen_falls_back_to_the_bracketed_tracepoint_then_the_plain_one() {
        let (_, attaches) = PROBE_TABLE
            .iter()
            .find(|(hook, _)| *hook == "listen")
            .expect("listen is in the probe table");
        let labels: Vec<String> = attaches.iter().map(|a| a.label()).collect();
        assert_eq!(
            labels,
            [
                "fentry:inet_listen",
                "tracepoint:sock:inet_sock_set_state+syscalls:sys_exit_listen",
                "tracepoint:sock:inet_sock_set_state",
            ]
        );
        assert_eq!(attaches[1].program(), attaches[2].program());
        let programs: Vec<&str> = attaches[1].programs().collect();
        assert_eq!(
            programs,
            [
                PROG_LISTEN_INET_SOCK_SET_STATE,
                PROG_LISTEN_SYS_ENTER_LISTEN,
                PROG_LISTEN_SYS_EXIT_LISTEN
            ]
        );
    }

    #[test]
    fn sock_offsets_refusal_says_whether_they_were_found() {
        let missing = sock_offsets_unavailable(&KernelOffsets::UNKNOWN, "");
        assert_eq!(missing, "struct sock offsets not found in BTF");
        let switched_off = KernelOffsets {
            skc_family: 16,
            ..KernelOffsets::UNKNOWN
        };
        assert!(
            sock_offsets_unavailable(&switched_off, " (x)")
                .starts_with("struct sock offsets switched off after a verifier refusal"),
        );
    }

    #[test]
    fn bad_ring_buffer_sizes_are_refused_before_touching_the_kernel() {
        for size in [0, 3000, 4096 * 3] {
            let opts = ProbeOptions {
                ring_buffer_bytes: size,
                monitor_tgid: 1,
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

    /// Root only: an executable unlinked before it runs (exec through its fd) and an O_TMPFILE
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
