//! `cargo xtask bench`: what the monitor costs, against the kernel floor and a bpftrace peer, on
//! the same machine in one run (docs/benchmarks.md).
//!
//! Five configurations ([`Config`]) are interleaved over several rounds (A B C D E, A B C D E,
//! ...): in each round each configuration is started, every workload runs once under it, and it
//! is stopped. The workloads are timed by a compiled driver (`bench-driver`, crate
//! `monitor-bench`) so that the driver's own cost is small and the same for all; the web workload
//! is Debian's nginx + php-fpm under `wrk`. Timed rounds run with `kernel.bpf_stats_enabled=0`
//! (counting costs two clock reads per program run); one more round with it on gives each
//! program's run count and time per workload. Then: ring-buffer drops at rising event rates,
//! alert latency (from the workload's syscall to the alert line on stdout, against an `ss -tlnp`
//! loop polled every second), peak RSS with thousands of live processes, and the enrichment and
//! identity micro-benchmarks. Nothing is asserted on time: the figures go to docs/benchmarks.md
//! (`--smoke`, tiny sizes, runs in `cargo xtask test` so that the harness cannot rot).

#![expect(
    clippy::cast_precision_loss,
    reason = "benchmark figures (counts, nanoseconds, CPU ticks far below 2^52) become f64 for statistics"
)]

mod instance;
mod report;
mod web;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Args;
use serde_json::Value;

pub use self::instance::Config;
use self::{
    instance::{Instance, Paths, ProgRuns, Stdout},
    web::WebServer,
};
use crate::{apt, bootstrap, bootstrap::Needs, cmd};

#[derive(Args, Clone, Debug)]
pub struct Options {
    /// Rounds: every configuration runs every workload once per round.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Spawn-and-wait execs of /bin/true.
    #[arg(long, default_value_t = 5_000)]
    pub execs: u32,
    /// Loopback connect + accept + close pairs.
    #[arg(long, default_value_t = 50_000)]
    pub connects: u32,
    /// bind + listen + close on ephemeral ports of 127.0.0.1.
    #[arg(long, default_value_t = 10_000)]
    pub listens: u32,
    /// Connections accepted by one listener from two client threads.
    #[arg(long, default_value_t = 50_000)]
    pub inbound: u32,
    /// Back-to-back runs of each storm per configuration and round (more while they have
    /// taken under 0.3 s together); the round's figure is the fastest.
    #[arg(long, default_value_t = 3)]
    pub repeats: u32,
    /// Seconds of `wrk` against nginx + php-fpm.
    #[arg(long, default_value_t = 10)]
    pub web_seconds: u32,
    /// Live processes while peak RSS is read.
    #[arg(long, default_value_t = 10_000)]
    pub processes: u32,
    /// Alerts timed per latency measurement.
    #[arg(long, default_value_t = 200)]
    pub latency: u32,
    /// Seconds per step of the drop search.
    #[arg(long, default_value_t = 3.0)]
    pub rate_seconds: f64,
    /// Prefixes in the enrichment lookup benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub prefixes: u32,
    /// Tiny sizes and one round, written to target/bench-smoke/ (what `cargo xtask test` runs).
    #[arg(long)]
    pub smoke: bool,
    /// Where the report goes (default: docs/benchmarks.md; with --smoke, target/bench-smoke/).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

impl Options {
    /// The smoke sizes: every measurement runs, each for a moment.
    pub fn smoke() -> Self {
        Self {
            rounds: 1,
            execs: 20,
            connects: 200,
            listens: 100,
            inbound: 200,
            repeats: 1,
            web_seconds: 1,
            processes: 50,
            latency: 3,
            rate_seconds: 0.5,
            prefixes: 4_000,
            smoke: true,
            output: None,
        }
    }
}

/// The workloads, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Exec,
    Connect,
    Listen,
    Inbound,
    Web,
}

impl Workload {
    pub const ALL: [Workload; 5] = [
        Workload::Exec,
        Workload::Connect,
        Workload::Listen,
        Workload::Inbound,
        Workload::Web,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Exec => "exec storm",
            Workload::Connect => "connect storm",
            Workload::Listen => "listen storm",
            Workload::Inbound => "inbound storm",
            Workload::Web => "web (nginx + php-fpm under wrk)",
        }
    }

    /// Operations per run (requests for the web workload are counted after the fact).
    pub fn count(self, o: &Options) -> u32 {
        match self {
            Workload::Exec => o.execs,
            Workload::Connect => o.connects,
            Workload::Listen => o.listens,
            Workload::Inbound => o.inbound,
            Workload::Web => o.web_seconds,
        }
    }

    pub fn describe(self, o: &Options) -> String {
        match self {
            Workload::Exec => format!("spawn-and-wait `/bin/true`, {} times", o.execs),
            Workload::Connect => format!(
                "loopback connect + accept + close, {} pairs, one at a time",
                o.connects
            ),
            Workload::Listen => format!(
                "socket + bind 127.0.0.1:0 + listen + close, {} times",
                o.listens
            ),
            Workload::Inbound => format!(
                "{} connections accepted by one listener from 2 client threads",
                o.inbound
            ),
            Workload::Web => format!(
                "`wrk -t2 -c16 -d{}s --latency` against a PHP page (nginx, 2 workers; php-fpm, 4 static children)",
                o.web_seconds
            ),
        }
    }
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds for the storms; requests per second for the web workload.
    pub value: f64,
    /// The web workload's 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// CPU seconds the instance (daemon or bpftrace) used during the run.
    pub cpu_s: Option<f64>,
    /// The storm's back-to-back runs behind `value` (1 for the web workload).
    pub runs: u32,
}

/// What a monitor instance counted over one round.
#[derive(Clone, Debug)]
pub struct RoundEnd {
    pub config: Config,
    pub records: u64,
    pub drops: u64,
    pub cpu_s: f64,
}

/// One program's cost over one workload run (the profile round).
#[derive(Clone, Debug)]
pub struct KernelRow {
    pub program: String,
    pub runs: ProgRuns,
}

/// One step of the drop search.
#[derive(Clone, Copy, Debug)]
pub struct RateStep {
    pub target_pairs: u32,
    pub pairs_per_s: f64,
    pub records_per_s: f64,
    pub drops: u64,
}

/// Alert latency of one kind of alert under one configuration.
#[derive(Clone, Debug)]
pub struct LatencyRow {
    pub config: String,
    pub alert: String,
    pub sent: usize,
    /// Latencies in ms of the alerts seen.
    pub ms: Vec<f64>,
}

#[derive(Clone, Debug)]
pub struct RssRow {
    pub config: Config,
    pub processes: u32,
    pub peak_kib: Option<u64>,
    pub rss_kib: Option<u64>,
    pub table_size: Option<u64>,
}

/// Per workload and configuration: the operations of the profile run and each program's cost.
pub type KernelCosts = BTreeMap<(Workload, Config), (u64, Vec<KernelRow>)>;

/// Everything one `cargo xtask bench` measured.
pub struct Results {
    pub options: Options,
    pub samples: BTreeMap<(Workload, Config), Vec<Sample>>,
    pub rounds: Vec<RoundEnd>,
    pub kernel: KernelCosts,
    pub rates: Vec<RateStep>,
    pub latency: Vec<LatencyRow>,
    pub rss: Vec<RssRow>,
    pub enrichment: String,
    pub identity: String,
    pub started: String,
    pub took: Duration,
    pub load_before: String,
    pub load_after: String,
}

/// `CLOCK_MONOTONIC` ns, the clock the driver stamps its syscalls with.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `cargo xtask bench`: bootstrap, build, take the machine-wide lock, measure, write the report.
pub fn run(options: &Options) -> Result<()> {
    bootstrap::run(&Needs {
        packages: apt::BENCH_PACKAGES,
        community_id_reference: false,
        root_required: true,
        tracefs: true,
        cargo_deb: false,
        cargo_fuzz: false,
    })?;
    if !cmd::is_root() {
        bail!(
            "the benchmark loads eBPF programs and reads other processes' /proc: run `sudo -E cargo xtask bench`"
        );
    }
    let _lock = cmd::KernelLock::acquire("the benchmark")?;
    if options.smoke {
        // The smoke sizes whatever else was given, but where the report goes.
        return run_locked(&Options {
            output: options.output.clone(),
            ..Options::smoke()
        });
    }
    run_locked(options)
}

/// The benchmark itself, for a caller that holds [`cmd::KernelLock`] (`cargo xtask test`'s smoke
/// stage) and has bootstrapped.
pub fn run_locked(options: &Options) -> Result<()> {
    let profile = if options.smoke { "dev" } else { "release" };
    cmd::run(cmd::cargo().args([
        "build",
        "--profile",
        profile,
        "--package",
        "monitor",
        "--package",
        "monitor-bench",
    ]))?;
    let bin = cmd::target_dir().join(if options.smoke { "debug" } else { "release" });
    let monitor = bin.join("monitor");
    let driver = bin.join("bench-driver");
    let scratch = std::env::temp_dir().join(format!("monitor-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let stats = BpfStats::off()?;
    let results = measure(options, &monitor, &driver, &scratch);
    drop(stats);
    let results = results?;
    let _ = fs::remove_dir_all(&scratch);

    let doc = match (&options.output, options.smoke) {
        (Some(path), _) => path.clone(),
        (None, true) => cmd::target_dir().join("bench-smoke").join("benchmarks.md"),
        (None, false) => cmd::workspace_root().join("docs").join("benchmarks.md"),
    };
    if let Some(dir) = doc.parent() {
        fs::create_dir_all(dir)?;
    }
    let svg_path = doc.with_file_name("benchmarks-overhead.svg");
    fs::write(&svg_path, report::svg(&results))
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    let markdown = report::markdown(&results, &svg_path)?;
    report::write_generated(&doc, &markdown)?;
    if options.smoke {
        report::check_complete(&markdown, &svg_path)?;
    }
    eprintln!("{markdown}");
    eprintln!(
        "xtask bench: results written to {} and {}",
        doc.display(),
        svg_path.display()
    );
    Ok(())
}

/// Sets `kernel.bpf_stats_enabled` and puts the value it found back when dropped.
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn off() -> Result<Self> {
        let before = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("cannot read {BPF_STATS}"))?
            .trim()
            .to_owned();
        set_bpf_stats(false)?;
        Ok(Self { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, &self.before);
    }
}

fn set_bpf_stats(on: bool) -> Result<()> {
    fs::write(BPF_STATS, if on { "1" } else { "0" })
        .with_context(|| format!("cannot write {BPF_STATS}"))
}

/// Runs the driver and returns its last JSON line.
fn drive(driver: &Path, args: &[String]) -> Result<Value> {
    let out = cmd::output(Command::new(driver).args(args))?;
    let last = out.lines().last().context("the driver printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("driver output is not JSON: {last}"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A storm is run at least until this much has been timed (a 10,000-listen storm takes 30 ms).
const MIN_TIMED_S: f64 = 0.3;
/// ... but never more often than this.
const MAX_REPEATS: u32 = 20;

/// One run of `workload`; `instance` (if any) is what the CPU time is read of.
fn run_workload(
    workload: Workload,
    o: &Options,
    driver: &Path,
    web: &WebServer,
    instance: &Instance,
) -> Result<Sample> {
    let pid = instance.pid();
    let cpu_before = pid.and_then(instance::cpu_seconds);
    let mut repeats = 1;
    let (value, p99_ms) = if workload == Workload::Web {
        // A second of load first (connections made, php-fpm's workers and opcache warm): what is
        // timed is the steady state.
        web::wrk(&web.url, 1, 16)?;
        let r = web::wrk(&web.url, o.web_seconds, 16)?;
        (r.requests_per_sec, Some(r.p99_ms))
    } else {
        let count = workload.count(o).to_string();
        let name = match workload {
            Workload::Exec => "exec",
            Workload::Connect => "connect",
            Workload::Listen => "listen",
            _ => "inbound",
        };
        // The fastest of a few back-to-back runs: what the machine does besides (the VM's host
        // included) only ever adds time, so the minimum is the steadiest estimate of the cost.
        let (mut fastest, mut total, mut runs) = (f64::INFINITY, 0.0, 0u32);
        while runs < o.repeats.max(1) || (!o.smoke && total < MIN_TIMED_S && runs < MAX_REPEATS) {
            let v = drive(driver, &args(&[name, "--count", &count]))?;
            let s = v["elapsed_ns"].as_u64().context("no elapsed_ns")? as f64 / 1e9;
            fastest = fastest.min(s);
            total += s;
            runs += 1;
        }
        repeats = runs;
        (fastest, None)
    };
    let cpu_s = match (cpu_before, pid.and_then(instance::cpu_seconds)) {
        (Some(a), Some(b)) => Some((b - a) / f64::from(repeats)),
        _ => None,
    };
    // Whatever the daemon still has queued is handled before the next run starts.
    thread::sleep(Duration::from_millis(200));
    Ok(Sample {
        value,
        p99_ms,
        cpu_s,
        runs: repeats,
    })
}

fn measure(o: &Options, monitor: &Path, driver: &Path, scratch: &Path) -> Result<Results> {
    let began = Instant::now();
    let started = cmd::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map_or_else(|_| "unknown date".into(), |d| d.trim().to_owned());
    let load_before = loadavg();
    let paths = Paths { monitor, scratch };
    eprintln!("xtask bench: starting nginx + php-fpm");
    let web = WebServer::start(scratch)?;

    let mut samples: BTreeMap<(Workload, Config), Vec<Sample>> = BTreeMap::new();
    let mut rounds = Vec::new();
    for round in 1..=o.rounds {
        // Each round starts one configuration further (A B C D E, B C D E A, …): whatever drifts
        // within a round (a server warming up, the page cache) falls on every configuration
        // alike, and each is paired with the same round's "no monitor" run.
        let mut order = Config::ALL;
        order.rotate_left((round as usize - 1) % Config::ALL.len());
        for config in order {
            eprintln!(
                "xtask bench: round {round}/{}: {}",
                o.rounds,
                config.label()
            );
            let instance = Instance::start(config, &paths, &Stdout::Null)?;
            let cpu_start = instance.pid().and_then(instance::cpu_seconds);
            for workload in Workload::ALL {
                let sample = run_workload(workload, o, driver, &web, &instance)?;
                samples.entry((workload, config)).or_default().push(sample);
            }
            let cpu_end = instance.pid().and_then(instance::cpu_seconds);
            if let Some(status) = instance.stop()? {
                rounds.push(RoundEnd {
                    config,
                    records: total(&status["events"]).unwrap_or(0),
                    drops: status["drops"].as_u64().unwrap_or(0),
                    cpu_s: cpu_end.unwrap_or(0.0) - cpu_start.unwrap_or(0.0),
                });
            }
        }
    }

    // Read here: the peak-RSS step below leaves thousands of processes exiting.
    let load_after = loadavg();
    eprintln!("xtask bench: profile round (kernel.bpf_stats_enabled=1)");
    let kernel = profile_round(o, &paths, driver, &web)?;
    eprintln!("xtask bench: drop search");
    let rates = drop_search(o, &paths, driver)?;
    eprintln!("xtask bench: alert latency");
    let latency = latency(o, &paths, driver)?;
    eprintln!("xtask bench: peak RSS with {} live processes", o.processes);
    let rss = rss(o, &paths, driver)?;
    drop(web);

    eprintln!("xtask bench: enrichment and identity micro-benchmarks");
    let profile = if o.smoke { "dev" } else { "release" };
    let enrichment = cmd::output(cmd::cargo().args([
        "run",
        "--profile",
        profile,
        "--quiet",
        "--package",
        "monitor",
        "--example",
        "iplist_bench",
        "--",
        &o.prefixes.to_string(),
    ]))?;
    let identity = cmd::output(cmd::cargo().args([
        "run",
        "--profile",
        profile,
        "--quiet",
        "--package",
        "monitor",
        "--example",
        "identity_bench",
    ]))?;
    Ok(Results {
        options: o.clone(),
        samples,
        rounds,
        kernel,
        rates,
        latency,
        rss,
        enrichment,
        identity,
        started,
        took: began.elapsed(),
        load_before,
        load_after,
    })
}

/// Each configuration with eBPF programs once more, with the kernel counting every program's runs
/// and run time, read from the instance's program descriptors before and after each workload.
fn profile_round(
    o: &Options,
    paths: &Paths<'_>,
    driver: &Path,
    web: &WebServer,
) -> Result<KernelCosts> {
    set_bpf_stats(true)?;
    let result = (|| {
        let mut kernel = BTreeMap::new();
        for config in [
            Config::Floor,
            Config::Default,
            Config::Events,
            Config::Bpftrace,
        ] {
            let instance = Instance::start(config, paths, &Stdout::Null)?;
            let pid = instance.pid().context("no pid")?;
            for workload in Workload::ALL {
                let before = instance::program_fds(pid);
                let sample = run_workload(workload, o, driver, web, &instance)?;
                let after = instance::program_fds(pid);
                let ids: Vec<u32> = after.keys().copied().collect();
                let names = instance::program_names(&instance, &ids);
                let mut rows: Vec<KernelRow> = after
                    .iter()
                    .map(|(id, a)| {
                        let b = before.get(id).copied().unwrap_or_default();
                        KernelRow {
                            program: names.get(id).cloned().unwrap_or_else(|| id.to_string()),
                            runs: ProgRuns {
                                runs: a.runs - b.runs,
                                run_time_ns: a.run_time_ns - b.run_time_ns,
                            },
                        }
                    })
                    .filter(|r| r.runs.runs > 0)
                    .collect();
                rows.sort_by(|a, b| a.program.cmp(&b.program));
                let ops = match workload {
                    Workload::Web => (sample.value * f64::from(o.web_seconds)) as u64,
                    // Every run of the storm is in the counters.
                    _ => u64::from(workload.count(o)) * u64::from(sample.runs),
                };
                kernel.insert((workload, config), (ops, rows));
            }
            instance.stop()?;
        }
        Ok(kernel)
    })();
    set_bpf_stats(false)?;
    result
}

/// `monitor --events` (every connect and accept goes to userspace) under paced connect storms of
/// doubling rates, until the ring buffer drops or the driver cannot reach the rate.
fn drop_search(o: &Options, paths: &Paths<'_>, driver: &Path) -> Result<Vec<RateStep>> {
    let mut steps = Vec::new();
    let rates: &[u32] = if o.smoke {
        &[2_000]
    } else {
        &[10_000, 20_000, 40_000, 80_000, 160_000]
    };
    for &rate in rates {
        let instance = Instance::start(Config::Events, paths, &Stdout::Null)?;
        let v = drive(
            driver,
            &args(&[
                "paced-connect",
                "--rate",
                &rate.to_string(),
                "--seconds",
                &o.rate_seconds.to_string(),
                "--threads",
                "4",
            ]),
        )?;
        let status = instance.stop()?.context("no final status")?;
        let elapsed = v["elapsed_ns"].as_u64().unwrap_or(1) as f64 / 1e9;
        let records = status["events"]["connect"].as_u64().unwrap_or(0)
            + status["events"]["accept"].as_u64().unwrap_or(0);
        let step = RateStep {
            target_pairs: rate,
            pairs_per_s: v["rate"].as_f64().unwrap_or(0.0),
            records_per_s: records as f64 / elapsed,
            drops: status["drops"].as_u64().unwrap_or(0),
        };
        steps.push(step);
        if step.drops > 0 || step.pairs_per_s < 0.9 * f64::from(rate) {
            break;
        }
    }
    Ok(steps)
}

/// The time from the workload's syscall to the alert line, for listens on unexpected ports and
/// shells run as www-data, in both monitor modes; and the `ss -tlnp` loop's detection time.
fn latency(o: &Options, paths: &Paths<'_>, driver: &Path) -> Result<Vec<LatencyRow>> {
    let mut rows = Vec::new();
    let count = o.latency.to_string();
    for (i, config) in [Config::Default, Config::Events].into_iter().enumerate() {
        let instance = Instance::start(config, paths, &Stdout::Stamped)?;
        // Below the ephemeral range (32768–60999), where the storms' connections leave ports behind.
        let port_base = 21_000 + 2_000 * i as u32;
        let listens = drive_lines(
            driver,
            &args(&[
                "listen-alerts",
                "--count",
                &count,
                "--port-base",
                &port_base.to_string(),
                "--gap-ms",
                "10",
            ]),
        )?;
        let tag = format!("bench-{}-{}", config.short(), std::process::id());
        let shells = drive_lines(
            driver,
            &args(&[
                "shell-alerts",
                "--count",
                &count,
                "--user",
                "www-data",
                "--tag",
                &tag,
                "--gap-ms",
                "10",
            ]),
        )?;
        thread::sleep(Duration::from_secs(1));
        let lines = instance.lines.lock().map(|l| l.clone()).unwrap_or_default();
        instance.stop()?;
        let alerts: Vec<(u64, Value)> = lines
            .iter()
            .filter(|(_, l)| l.contains("\"type\":\"alert\""))
            .filter_map(|(at, l)| serde_json::from_str(l).ok().map(|v| (*at, v)))
            .collect();
        let mut listen_ms = Vec::new();
        for sent in &listens {
            let (Some(port), Some(t)) = (sent["port"].as_u64(), sent["t_ns"].as_u64()) else {
                continue;
            };
            if let Some((at, _)) = alerts.iter().find(|(_, a)| {
                a["rule"] == "unexpected_listen" && a["socket"]["local"]["port"] == port
            }) {
                listen_ms.push(at.saturating_sub(t) as f64 / 1e6);
            }
        }
        let mut shell_ms = Vec::new();
        for sent in &shells {
            let (Some(tag), Some(t)) = (sent["tag"].as_str(), sent["t_ns"].as_u64()) else {
                continue;
            };
            let command = format!("exit 0 # {tag}");
            if let Some((at, _)) = alerts.iter().find(|(_, a)| {
                a["rule"] == "webserver_shell"
                    && a["process"]["argv"]
                        .as_array()
                        .is_some_and(|argv| argv.iter().any(|x| x.as_str() == Some(&command)))
            }) {
                shell_ms.push(at.saturating_sub(t) as f64 / 1e6);
            }
        }
        rows.push(LatencyRow {
            config: config.label().into(),
            alert: "`unexpected_listen` (listen on 0.0.0.0)".into(),
            sent: listens.len(),
            ms: listen_ms,
        });
        rows.push(LatencyRow {
            config: config.label().into(),
            alert: "`webserver_shell` (`sh -c` as www-data)".into(),
            sent: shells.len(),
            ms: shell_ms,
        });
    }
    rows.push(ss_loop(o, driver)?);
    Ok(rows)
}

/// Runs the driver and returns every JSON line it printed.
fn drive_lines(driver: &Path, args: &[String]) -> Result<Vec<Value>> {
    let out = cmd::output(Command::new(driver).args(args))?;
    out.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("driver line is not JSON: {l}")))
        .collect()
}

/// The cron-style peer: `ss -Htlnp` every second; each listen is kept open 1.5 s so that a poll
/// sees it.
fn ss_loop(o: &Options, driver: &Path) -> Result<LatencyRow> {
    let count = o.latency.clamp(3, 40);
    let port_base: u16 = 25_000;
    let seen: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let seen = seen.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let tick = Instant::now();
                if let Ok(out) = Command::new("ss").arg("-Htlnp").output() {
                    let at = now_ns();
                    let text = String::from_utf8_lossy(&out.stdout);
                    if let Ok(mut seen) = seen.lock() {
                        for port in ss_ports(&text) {
                            seen.entry(port).or_insert(at);
                        }
                    }
                }
                thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
            }
        })
    };
    let sent = drive_lines(
        driver,
        &args(&[
            "listen-alerts",
            "--count",
            &count.to_string(),
            "--port-base",
            &port_base.to_string(),
            "--gap-ms",
            "137",
            "--hold-ms",
            "1500",
        ]),
    );
    thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let sent = sent?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let ms = sent
        .iter()
        .filter_map(|s| {
            let port = u16::try_from(s["port"].as_u64()?).ok()?;
            let t = s["t_ns"].as_u64()?;
            seen.get(&port).map(|at| at.saturating_sub(t) as f64 / 1e6)
        })
        .collect();
    Ok(LatencyRow {
        config: "`ss -tlnp` polled every second".into(),
        alert: "a new listening port".into(),
        sent: sent.len(),
        ms,
    })
}

/// The local ports of `ss -Htln` lines (`LISTEN 0 128 0.0.0.0:22 0.0.0.0:* ...`).
fn ss_ports(text: &str) -> BTreeSet<u16> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit_once(':'))
        .filter_map(|(_, port)| port.parse().ok())
        .collect()
}

/// Peak RSS of each monitor mode (and of bpftrace) while `o.processes` processes are alive.
fn rss(o: &Options, paths: &Paths<'_>, driver: &Path) -> Result<Vec<RssRow>> {
    let mut rows = Vec::new();
    for config in [Config::Default, Config::Events, Config::Bpftrace] {
        let instance = Instance::start(config, paths, &Stdout::Null)?;
        let pid = instance.pid().context("no pid")?;
        let mut hold = Command::new(driver)
            .args(["hold", "--count", &o.processes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the driver")?;
        let mut ready = String::new();
        BufReader::new(hold.stdout.take().context("no driver stdout")?)
            .read_line(&mut ready)
            .context("the driver did not report its processes")?;
        ensure!(ready.contains("ready"), "the driver said {ready:?}");
        // The daemon has the last exec records to handle.
        thread::sleep(Duration::from_secs(3));
        let peak_kib = instance::status_kib(pid, "VmHWM");
        let rss_kib = instance::status_kib(pid, "VmRSS");
        let status = instance.stop()?;
        if let Some(mut stdin) = hold.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = hold.wait();
        rows.push(RssRow {
            config,
            processes: o.processes,
            peak_kib,
            rss_kib,
            table_size: status.and_then(|s| s["process_table"]["size"].as_u64()),
        });
    }
    Ok(rows)
}

/// Sums a counter that a status record may give as a number or as an object of per-kind numbers.
pub fn total(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::Object(map) => map.values().map(total).sum(),
        Value::Array(items) => items.iter().map(total).sum(),
        _ => None,
    }
}

/// The 1-minute load average.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn counters_are_summed_whatever_their_shape() {
        assert_eq!(total(&json!(7)), Some(7));
        assert_eq!(
            total(&json!({"listen": 2, "connect": 3, "exec": 0})),
            Some(5)
        );
        assert_eq!(total(&json!([1, 2, 3])), Some(6));
        assert_eq!(total(&json!("7")), None);
    }

    #[test]
    fn ss_output_gives_the_local_ports() {
        let out = "LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=1,fd=3))\n\
                   LISTEN 0      511        127.0.0.1:45001     0.0.0.0:*\n\
                   LISTEN 0      128             [::]:22           [::]:*\n";
        assert_eq!(ss_ports(out), BTreeSet::from([22, 45001]));
    }
}
