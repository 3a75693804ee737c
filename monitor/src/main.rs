//! `monitor`: command line. Everything that can be wrong with the invocation (flags, policy file)
//! is checked here, with exit code 2, before any eBPF is loaded: the daemon never starts
//! half-configured.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use monitor::{
    audit, daemon,
    iplist::{IpLists, ReloadReport},
    metrics,
    output::{Format, FormatName, OnClosed, Output, Queue, Target},
    policy::Policy,
    reload, replay,
    trust::Trust,
};

/// Exit code for a bad invocation or a bad policy file (clap uses the same for bad flags).
const EXIT_USAGE: u8 = 2;

/// eBPF host-security monitor: watches listen, connect and exec system-wide and prints one record
/// per line on stdout (alerts, status records, and with `--events` every event), as JSON lines
/// or, on a terminal, as text (`--format`). Logs go to stderr (`RUST_LOG`). Needs root
/// (`CAP_BPF` and `CAP_PERFMON`).
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Print every kernel event (listen, connect, exec, exit) as an `"event"` record, not only
    /// alerts and status records.
    #[arg(long)]
    events: bool,

    /// Policy file (TOML). Without it the embedded default policy is used. Checked before
    /// anything is loaded; see `monitor check-policy`. SIGHUP reads it (and the list files)
    /// again; a bad new file is refused and the running policy stays.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,

    /// Accept a policy and list files that are not owned by root or that their group or others
    /// may write (refused by default: whoever can write them can blind the monitor).
    #[arg(long)]
    insecure_config: bool,

    /// Write the records to FILE (appended to, created with mode 0640) instead of stdout.
    /// SIGUSR1 reopens it by name, for log rotation.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// What to do when the reader of stdout goes away (EPIPE): `exit` (log why, exit code 1) or
    /// `continue` (keep watching; records are dropped and counted).
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = OnClosed::Exit)]
    on_output_closed: OnClosed,

    /// Bytes of records that may wait for a slow reader of the output. Once half is used, events
    /// are dropped; alerts at seven eighths, status records at the whole. Drops are counted by
    /// kind in the status records.
    #[arg(long, value_name = "N", default_value_t = 8 << 20,
          value_parser = clap::value_parser!(u64).range(65_536..=1 << 34))]
    output_queue_bytes: u64,

    /// Serve the status counters for Prometheus at `http://ADDR/metrics`. ADDR is PORT or :PORT
    /// (loopback only) or IP:PORT. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_addr)]
    metrics: Option<SocketAddr>,

    /// Output format (docs/formats.md). Default: `text` when stdout is a terminal (coloured
    /// unless `NO_COLOR` is set), `native` otherwise.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatName>,

    /// Size of the kernel ring buffer carrying events, in bytes: a power of two, at least the page
    /// size. Larger buffers absorb longer bursts before events are dropped (drops are counted in
    /// the status records).
    #[arg(long, value_name = "N", default_value_t = monitor_common::DEFAULT_RING_BUFFER_BYTES,
          value_parser = parse_ring_buffer_bytes)]
    ring_buffer_bytes: u32,

    /// Seconds between `"status":"running"` records (event counts, drops, process-table size).
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    status_interval: u64,

    /// Seed of the Community ID (v1) on connect, accept and login records and their alerts:
    /// the one the network's Zeek or Suricata sensors use (they default to 0), so that a
    /// record's `community_id` finds the same flow in their logs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    community_id_seed: u16,

    /// Benchmark only: attach every hook with programs that return at once, print a `started`
    /// and a `stopped` status record and nothing else (the kernel floor `cargo xtask bench`
    /// compares the monitor with).
    #[arg(long, hide = true)]
    bench_floor: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy file and print the effective policy (defaults filled in) as TOML.
    /// Exit code 2 when the file is invalid.
    CheckPolicy {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the embedded default policy, comments included: a starting point for a policy file
    /// (`monitor default-policy > /etc/monitor/policy.toml`).
    DefaultPolicy,
    /// Judge every socket listening now, in every network namespace, with the daemon's
    /// `unexpected_listen` rule and print the alerts, without loading any eBPF (for cron, Ansible,
    /// CI). Exit code 0: no alert; 1: alerts printed; 2: bad policy or list file; 3: the audit
    /// could not be done. Run it as root to see every socket's owner.
    Audit {
        /// Policy file (TOML); the embedded default when omitted.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Output format, as for the daemon.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FormatName>,
    },
    /// Run recorded `--events` output (JSON lines) through the detections and print the alerts,
    /// without loading any eBPF.
    Replay {
        /// A file of event records as printed by `monitor --events`.
        #[arg(value_name = "FILE")]
        events: PathBuf,
        /// Policy file (TOML); the embedded default when omitted.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Output format, as for the daemon.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FormatName>,
    },
}

fn parse_ring_buffer_bytes(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|e| format!("`{s}` is not a byte count that fits in 32 bits: {e}"))?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u32::try_from(page).unwrap_or(4096);
    if !n.is_power_of_two() || n < page {
        return Err(format!(
            "{n} is not a power of two of at least the page size ({page}); e.g. {}",
            monitor_common::DEFAULT_RING_BUFFER_BYTES
        ));
    }
    Ok(n)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckPolicy { file }) => match Policy::from_file(&file) {
            Ok(p) => match load_lists(&p, Trust::Any) {
                Ok(lists) => {
                    if let Some((_, report)) = &lists {
                        for f in &report.files {
                            eprintln!("monitor: {f}");
                            for bad in f.bad_lines.shown() {
                                eprintln!("monitor: {}; line skipped", bad.at(&f.path));
                            }
                        }
                    }
                    print!("{}", p.to_effective_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("monitor: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            },
            Err(e) => {
                eprintln!("monitor: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Some(Command::DefaultPolicy) => {
            print!("{}", monitor::policy::DEFAULT_POLICY_TOML);
            ExitCode::SUCCESS
        }
        Some(Command::Audit { policy, format }) => {
            run_audit(policy.as_deref(), Format::for_stdout(format))
        }
        Some(Command::Replay {
            events,
            policy,
            format,
        }) => match replay::run(&events, policy.as_deref(), Format::for_stdout(format)) {
            Ok(()) => ExitCode::SUCCESS,
            // Bad input (unreadable or malformed events file, bad policy) is a usage error, like
            // a bad policy for the daemon; anything else (stdout) is a runtime failure.
            Err(e) if e.downcast_ref::<replay::ReplayError>().is_some() => {
                // ReplayError's message already names the file, line and cause.
                eprintln!("monitor: {e}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(e) => report(Err(e)),
        },
        None => {
            let trust = if cli.insecure_config {
                Trust::Any
            } else {
                Trust::OwnerOnly
            };
            let (policy, policy_source) = match &cli.policy {
                None => (Policy::embedded_default(), "embedded default".to_string()),
                Some(path) => match Policy::from_trusted_file(path, trust) {
                    Ok(p) => (p, path.display().to_string()),
                    Err(e) => {
                        eprintln!("monitor: {e}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                },
            };
            let lists = match load_lists(&policy, trust) {
                Ok(lists) => lists,
                Err(e) => {
                    eprintln!("monitor: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            if let Err(e) = in_host_pid_namespace() {
                eprintln!("monitor: {e}");
                return ExitCode::FAILURE;
            }
            let (target, format) = match &cli.output {
                Some(file) => (
                    Target::File(file.clone()),
                    Format::choose(cli.format, false, false),
                ),
                None => (Target::Stdout, Format::for_stdout(cli.format)),
            };
            let output = match Queue::open(target.clone(), cli.on_output_closed) {
                Ok(output) => output,
                Err(e) => {
                    eprintln!("monitor: --output {}: cannot open it: {e}", target.name());
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let metrics = match cli.metrics.map(metrics::bind).transpose() {
                Ok(listener) => listener,
                Err(e) => {
                    let addr = cli.metrics.map(|a| a.to_string()).unwrap_or_default();
                    eprintln!("monitor: --metrics {addr}: cannot listen there: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            report(daemon::run(daemon::Options {
                print_events: cli.events,
                ring_buffer_bytes: cli.ring_buffer_bytes,
                status_interval: Duration::from_secs(cli.status_interval),
                policy,
                policy_source,
                lists,
                community_id_seed: cli.community_id_seed,
                bench_floor: cli.bench_floor,
                format,
                output,
                output_queue_bytes: usize::try_from(cli.output_queue_bytes).unwrap_or(usize::MAX),
                metrics,
                reload: reload::Source {
                    policy: cli.policy.clone(),
                    trust,
                },
            }))
        }
    }
}

/// `monitor audit`: the policy and its lists are checked first (exit code 2), like the daemon's.
fn run_audit(policy: Option<&Path>, format: Format) -> ExitCode {
    let policy = match policy {
        None => Policy::embedded_default(),
        Some(path) => match Policy::from_file(path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("monitor: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let lists = match load_lists(&policy, Trust::Any) {
        Ok(lists) => lists,
        Err(e) => {
            eprintln!("monitor: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Unlike the daemon, the audit has no kernel pids to get wrong: from another PID namespace it
    // still judges what it can see, which is less than the host.
    if in_host_pid_namespace().is_err() {
        log::warn!(
            "runs in a PID namespace other than the host's: only the sockets of this namespace's processes are audited (for a container: --pid=host)"
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        log::warn!(
            "not root: sockets of other users' processes cannot be joined to their owner and are reported with pid 0"
        );
    }
    let mut out = Output::stdout(format);
    match audit::run(&policy, lists.as_ref().map(|(l, _)| l), &mut out) {
        Ok(summary) => {
            log::info!(
                "audit: {} listening sockets in {} network namespaces, {} alerts",
                summary.listeners,
                summary.namespaces,
                summary.alerts
            );
            ExitCode::from(summary.exit_code())
        }
        Err(e) => {
            eprintln!("monitor: audit: {e}");
            ExitCode::from(audit::EXIT_FAILED)
        }
    }
}

/// Reads the policy's list files in full (`None` without any): a file that cannot be read stops
/// the daemon here, before any eBPF is loaded, naming the file and the policy key.
fn load_lists(policy: &Policy, trust: Trust) -> Result<Option<(IpLists, ReloadReport)>, String> {
    let config = &policy.enrichment;
    if config.is_empty() {
        return Ok(None);
    }
    IpLists::load(&config.lists_config(trust))
        .map(Some)
        .map_err(|e| format!("enrichment: {e}"))
}

/// `PROC_PID_INIT_INO` (`include/linux/proc_ns.h)`: the inode of the initial PID namespace, the
/// same on every kernel.
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// The kernel side names processes by their pid in the initial (host) PID namespace, and the
/// process table, the lineage and the start-up scan read the host's `/proc`. From inside another
/// PID namespace (a container without the host's) all of that would be wrong, and the filter
/// that keeps the monitor from watching itself would hide an unrelated host process that happens
/// to have our namespaced pid. Refuse rather than report lies.
fn in_host_pid_namespace() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(m) => check_pid_namespace(m.ino()),
        Err(e) => {
            log::warn!("cannot tell which PID namespace this is (/proc/self/ns/pid: {e})");
            Ok(())
        }
    }
}

fn check_pid_namespace(ino: u64) -> Result<(), String> {
    if ino == INIT_PID_NS_INO {
        return Ok(());
    }
    Err(format!(
        "runs in a PID namespace other than the host's (pid:[{ino}]); \
         eBPF reports host pids, so the monitor must run in the host PID namespace \
         (for a container: --pid=host)"
    ))
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_initial_pid_namespace_is_accepted() {
        assert_eq!(check_pid_namespace(4_026_531_836), Ok(()));
        let err = check_pid_namespace(4_026_532_290).unwrap_err();
        assert!(
            err.contains("pid:[4026532290]") && err.contains("--pid=host"),
            "{err}"
        );
    }
}
