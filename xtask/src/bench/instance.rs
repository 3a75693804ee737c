//! The configurations the benchmark compares, each a running instance (or none): the monitor in
//! its three modes and the bpftrace peer. Also what is read of a running instance from /proc: CPU
//! time, peak RSS, and its eBPF programs' run statistics.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

/// What runs while a workload is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    /// Nothing attached: the baseline every overhead is measured against.
    NoMonitor,
    /// `monitor --bench-floor`: the same hooks attached, every program returning at once.
    Floor,
    /// `monitor` with its embedded default policy, alerts only.
    Default,
    /// `monitor --events`, stdout to /dev/null.
    Events,
    /// A bpftrace script printing the same listen, connect and exec events from the same
    /// tracepoints, output to /dev/null.
    Bpftrace,
}

impl Config {
    pub const ALL: [Config; 5] = [
        Config::NoMonitor,
        Config::Floor,
        Config::Default,
        Config::Events,
        Config::Bpftrace,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Config::NoMonitor => "no monitor",
            Config::Floor => "kernel floor",
            Config::Default => "monitor (default policy)",
            Config::Events => "monitor --events > /dev/null",
            Config::Bpftrace => "bpftrace peer",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Config::NoMonitor => "none",
            Config::Floor => "floor",
            Config::Default => "default",
            Config::Events => "events",
            Config::Bpftrace => "bpftrace",
        }
    }

    pub fn is_monitor(self) -> bool {
        matches!(self, Config::Floor | Config::Default | Config::Events)
    }
}

/// The peer: the three events the monitor's detections start from, printed by bpftrace from the
/// same tracepoints (`sock:inet_sock_set_state` at `TCP_LISTEN` and `TCP_SYN_SENT`,
/// `sched:sched_process_exec`), with the fields an analyst would want (pid, parent, uid, comm,
/// addresses, ports, file).
pub const BPFTRACE_SCRIPT: &str = r#"
tracepoint:sock:inet_sock_set_state
/args->protocol == 6 && args->newstate == 10/
{
	printf("listen pid=%d uid=%d comm=%s family=%d %s %s port=%d\n", pid, uid, comm,
	       args->family, ntop(args->saddr), ntop(args->saddr_v6), args->sport);
}

tracepoint:sock:inet_sock_set_state
/args->protocol == 6 && args->newstate == 2/
{
	printf("connect pid=%d uid=%d comm=%s family=%d %s:%d -> %s:%d %s -> %s\n", pid, uid, comm,
	       args->family, ntop(args->saddr), args->sport, ntop(args->daddr), args->dport,
	       ntop(args->saddr_v6), ntop(args->daddr_v6));
}

tracepoint:sched:sched_process_exec
{
	printf("exec pid=%d ppid=%d uid=%d comm=%s file=%s\n", pid, curtask->real_parent->tgid,
	       uid, comm, str(args->filename));
}
"#;

/// Where a monitor instance's stdout goes.
pub enum Stdout {
    /// /dev/null: what the timed runs use.
    Null,
    /// A pipe read by a thread that stamps every line with `CLOCK_MONOTONIC` on arrival (the
    /// latency runs).
    Stamped,
}

/// Lines read from an instance's stdout, each with the `CLOCK_MONOTONIC` ns it arrived at.
pub type StampedLines = Arc<Mutex<Vec<(u64, String)>>>;

/// A running configuration.
pub struct Instance {
    pub config: Config,
    child: Option<Child>,
    log: PathBuf,
    pub lines: StampedLines,
    /// The `started` status record (monitor instances).
    pub started: Option<Value>,
}

pub struct Paths<'a> {
    pub monitor: &'a Path,
    pub scratch: &'a Path,
}

impl Instance {
    pub fn start(config: Config, paths: &Paths<'_>, stdout: &Stdout) -> Result<Self> {
        let log = paths
            .scratch
            .join(format!("{}.{}.log", config.short(), crate::bench::now_ns()));
        let lines: StampedLines = Arc::default();
        let mut command = match config {
            Config::NoMonitor => {
                return Ok(Self {
                    config,
                    child: None,
                    log,
                    lines,
                    started: None,
                });
            }
            Config::Floor | Config::Default | Config::Events => {
                let mut c = Command::new(paths.monitor);
                match config {
                    Config::Floor => {
                        c.arg("--bench-floor");
                    }
                    Config::Events => {
                        c.arg("--events");
                    }
                    _ => {}
                }
                c.env("RUST_LOG", "info");
                c
            }
            Config::Bpftrace => {
                let script = paths.scratch.join("peer.bt");
                fs::write(&script, BPFTRACE_SCRIPT)
                    .with_context(|| format!("cannot write {}", script.display()))?;
                let mut c = Command::new("bpftrace");
                c.arg("-o").arg("/dev/null").arg(&script);
                c
            }
        };
        let stderr =
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        command.stdin(Stdio::null()).stderr(stderr);
        match stdout {
            Stdout::Null => command.stdout(Stdio::null()),
            Stdout::Stamped => command.stdout(Stdio::piped()),
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", config.label()))?;
        if let Some(out) = child.stdout.take() {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let at = crate::bench::now_ns();
                    if let Ok(mut lines) = lines.lock() {
                        lines.push((at, line));
                    }
                }
            });
        }
        let mut instance = Self {
            config,
            child: Some(child),
            log,
            lines,
            started: None,
        };
        instance.wait_ready()?;
        Ok(instance)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(exit) = child.try_wait()?
            {
                bail!(
                    "{} exited during start-up ({exit}); its stderr:\n{}",
                    self.config.label(),
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let ready = match self.config {
                Config::NoMonitor => true,
                Config::Bpftrace => {
                    // Its three programs are loaded; attaching follows at once.
                    let loaded = self.pid().map_or(0, |pid| program_fds(pid).len());
                    if loaded >= 3 {
                        thread::sleep(Duration::from_secs(1));
                        true
                    } else {
                        false
                    }
                }
                _ => {
                    self.started = self.logged_status("started");
                    self.started.is_some()
                }
            };
            if ready {
                // Let the start-up work (baseline scan, catalog) finish before anything is timed.
                thread::sleep(Duration::from_millis(500));
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} not ready within a minute; its stderr:\n{}",
                self.config.label(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last status record with `"status": status` the monitor logged on stderr.
    fn logged_status(&self, status: &str) -> Option<Value> {
        let log = fs::read_to_string(&self.log).ok()?;
        log.lines()
            .rev()
            .filter_map(|l| l.split_once("status: ").map(|(_, json)| json))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .find(|v| v["status"] == status)
    }

    /// Stops the instance (SIGTERM for the monitor, SIGINT for bpftrace) and returns the
    /// monitor's final status record.
    pub fn stop(mut self) -> Result<Option<Value>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let signal = if self.config == Config::Bpftrace {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, not reaped yet, so the pid cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("cannot signal {}", self.config.label());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = child.try_wait()? {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not stop within 30 s", self.config.label());
            }
            thread::sleep(Duration::from_millis(20));
        };
        ensure!(
            exit.success() || self.config == Config::Bpftrace,
            "{} exited with {exit}; its stderr:\n{}",
            self.config.label(),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        Ok(if self.config.is_monitor() {
            Some(self.logged_status("stopped").with_context(|| {
                format!("{} logged no final status record", self.config.label())
            })?)
        } else {
            None
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Only when a step failed before `stop`: never leave an instance running.
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// User + system CPU seconds process `pid` has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start at `state`, field 3.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) as f64 / ticks.max(1) as f64)
}

/// A `/proc/<pid>/status` size field (`VmHWM`, `VmRSS`) in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One eBPF program's counters as its fdinfo shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgRuns {
    pub runs: u64,
    pub run_time_ns: u64,
}

/// The eBPF programs process `pid` holds, by program id.
pub fn program_fds(pid: u32) -> BTreeMap<u32, ProgRuns> {
    let mut found = BTreeMap::new();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for fd in fds.flatten() {
        let is_prog = fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some((id, runs)) = parse_prog_fdinfo(&info) {
            found.insert(id, runs);
        }
    }
    found
}

/// `prog_id`, `run_cnt` and `run_time_ns` of a BPF program's fdinfo.
pub fn parse_prog_fdinfo(info: &str) -> Option<(u32, ProgRuns)> {
    let field = |key: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    let id = u32::try_from(field("prog_id:")?).ok()?;
    Some((
        id,
        ProgRuns {
            runs: field("run_cnt:").unwrap_or(0),
            run_time_ns: field("run_time_ns:").unwrap_or(0),
        },
    ))
}

/// Program names by id: the monitor's from its `started` status record (full names), anyone
/// else's from `bpftool prog show` (the kernel keeps 15 characters), numbered when repeated.
pub fn program_names(instance: &Instance, ids: &[u32]) -> BTreeMap<u32, String> {
    let mut names = BTreeMap::new();
    if let Some(programs) = instance
        .started
        .as_ref()
        .and_then(|s| s["programs"].as_object())
    {
        for (name, runs) in programs {
            if let Some(id) = runs["id"].as_u64().and_then(|id| u32::try_from(id).ok()) {
                names.insert(id, name.clone());
            }
        }
    }
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for id in ids {
        if names.contains_key(id) {
            continue;
        }
        let name = Command::new("bpftool")
            .args(["prog", "show", "id", &id.to_string(), "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["name"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("prog {id}"));
        let n = seen.entry(name.clone()).or_default();
        *n += 1;
        let name = if *n > 1 { format!("{name} #{n}") } else { name };
        names.insert(*id, name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_of_a_program_is_parsed() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2057\nprog_type:\t5\n\
                    prog_jited:\t1\nprog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t824\n\
                    run_time_ns:\t1234\nrun_cnt:\t10\nrecursion_misses:\t0\nverified_insns:\t33\n";
        assert_eq!(
            parse_prog_fdinfo(info),
            Some((
                824,
                ProgRuns {
                    runs: 10,
                    run_time_ns: 1234
                }
            ))
        );
        assert_eq!(parse_prog_fdinfo("pos:\t0\n"), None);
    }

    #[test]
    fn our_own_cpu_time_and_rss_are_readable() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some_and(|s| s >= 0.0));
        assert!(status_kib(me, "VmHWM").is_some_and(|kib| kib > 0));
    }
}
