//! The live loop: load the probes, seed the process table, report what was already listening,
//! then hand every ring-buffer record to the [`Pipeline`] until SIGINT / SIGTERM.
//!
//! Order at start matters: the probes are attached BEFORE `/proc` is read, so a process is either
//! in the seed or announced by an event (or both), never missed in between.

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use log::{info, warn};
use monitor_common::EXE_SSH_SERVER;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    baseline,
    clock::{self, Clock},
    detect::Detector,
    enrich::Enricher,
    host::{self, UserNames},
    identity::Catalog,
    iplist::{IpLists, ReloadReport},
    login::{self, Logins},
    output::{Format, Output, OutputError},
    pipeline::Pipeline,
    policy::Policy,
    probes::{Counters, ProbeOptions, Probes, Watch},
    process_table::{self, ProcessTable},
    record::Status,
    status,
};

/// Records handled per wake-up before the loop looks at signals and timers again.
const BATCH_MAX: usize = 4096;
/// How often the ring buffer is read for records submitted without a wake-up (fork, exit, execs
/// and `--events` records no rule can alert on).
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// How often the kernel's parked listen records are checked for ones no listen(2) will send.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// How long after a change notice a list file is re-read (a downloader may write it in steps).
const RELOAD_SETTLE: Duration = Duration::from_millis(200);
/// The list files are also re-checked this often, in case a change notice was lost.
const RELOAD_POLL: Duration = Duration::from_secs(10);

/// Everything the daemon needs, resolved and validated by the caller (policy included) before
/// any eBPF is loaded.
pub struct Options {
    /// Print every event (`--events`), not only alerts and status records.
    pub print_events: bool,
    pub ring_buffer_bytes: u32,
    pub status_interval: Duration,
    pub policy: Policy,
    /// `"embedded default"` or the policy file's path, for the status record.
    pub policy_source: String,
    /// The policy's list files, loaded (and checked) before anything else.
    pub lists: Option<(IpLists, ReloadReport)>,
    /// `--community-id-seed`.
    pub community_id_seed: u16,
    /// `--bench-floor`: attach every hook with programs that return at once and do nothing else
    /// (the benchmark's kernel floor).
    pub bench_floor: bool,
    /// The format records are printed in (`--format`).
    pub format: Format,
}

/// Runs the daemon on a current-thread tokio runtime until SIGINT / SIGTERM (or until stdout is
/// closed by its reader).
pub fn run(opts: Options) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(run_async(opts))
}

async fn run_async(opts: Options) -> anyhow::Result<()> {
    let Options {
        print_events,
        ring_buffer_bytes,
        status_interval,
        policy,
        policy_source,
        lists,
        community_id_seed,
        bench_floor,
        format,
    } = opts;
    // Signals first: a SIGTERM during start-up is then handled as a clean stop.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    if bench_floor {
        return run_floor(ring_buffer_bytes, &mut sigint, &mut sigterm).await;
    }

    let mut probes = Probes::load(&ProbeOptions {
        ring_buffer_bytes,
        monitor_tgid: std::process::id(),
        floor: false,
    })
    .context("cannot load and attach the eBPF programs")?;
    release_free_memory();
    // The probes log what attached; the refusals (why a preferred hook was not used) are
    // reported in the status records.
    let hooks = probes.report().clone();
    let ring = probes
        .take_ring_buf()
        .context("cannot open the ring buffer")?;
    let mut watch = probes
        .take_watch()
        .context("cannot open the kernel's filter maps")?;
    watch
        .send_all_accepts(print_events)
        .context("cannot set the accept filter")?;
    // SAFETY: the RingBuf owns its map fd (MapData) and returns that same fd from as_raw_fd for
    // its whole life; nothing else closes or replaces it while the AsyncFd owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("cannot register the ring buffer with tokio")?;

    let (table, enricher) = host_stages(&policy)?;
    watch_ssh_servers(&mut watch, &policy.logins, &table);
    let login_config = policy.logins.clone();
    let list_paths = lists.as_ref().map(|(l, _)| l.paths()).unwrap_or_default();

    let mut p = Pipeline {
        print_events,
        table,
        enricher,
        detector: Detector::new(Arc::new(policy.clone())),
        out: Output::stdout(format),
        board: status::Board {
            hooks,
            ring_buffer_bytes,
            policy_source,
            ..status::Board::default()
        },
        counters: Counters::default(),
        logins: Logins::new(),
        login_config,
        watch: Some(watch),
        lists: None,
        newest_lineage_ns: 0,
    };
    p.enricher.set_community_id_seed(community_id_seed);
    mark_web_trees(&mut p, &policy.web_server_users);
    if let Some((lists, report)) = lists {
        p.serve_lists(lists, &report);
    }
    // Everything reached userspace until here; from now on only what can raise an alert does
    // (unless --events), and only that wakes the daemon.
    if let Some(watch) = p.watch.as_mut() {
        let listen = &policy.rules.unexpected_listen;
        watch
            .skip_loopback_listens(listen.settings.enabled && listen.allow_loopback)
            .and_then(|()| watch.send_all(print_events))
            .context("cannot set what the kernel sends")?;
    }
    p.refresh_counters(&probes);
    p.refresh_program_runs(&probes);
    let (_watcher, mut list_changed) = watch_files(&list_paths);

    let result: anyhow::Result<()> = async {
        p.start(&baseline_scan())?;
        release_free_memory();

        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + status_interval,
            status_interval,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll_lists = tokio::time::interval(RELOAD_POLL);
        poll_lists.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reload_at: Option<tokio::time::Instant> = None;
        // Records that cannot raise an alert are submitted without waking us: read them this
        // often (or at the next record that does wake us).
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Listen records whose listen(2) never returns (io_uring) are sent from here.
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A login waiting for its session's first program is reported when its wait ends,
            // even if no further event comes.
            let login_at = p.logins.next_deadline().map(|deadline| {
                let now = clock::boottime_ns().unwrap_or(deadline);
                tokio::time::Instant::now() + Duration::from_nanos(deadline.saturating_sub(now))
            });
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    p.refresh_counters(&probes);
                    let more = p.drain(guard.get_inner_mut(), BATCH_MAX)?;
                    // Leaving readiness set when the batch limit was hit brings us straight back
                    // after select! has had a chance to see signals and the timer.
                    if !more {
                        guard.clear_ready();
                    }
                }
                _ = flush.tick() => {
                    p.drain(ring.get_mut(), BATCH_MAX)?;
                }
                _ = sweep.tick() => {
                    p.drain(ring.get_mut(), BATCH_MAX)?;
                    p.sweep_listens()?;
                }
                _ = tick.tick() => {
                    p.refresh_counters(&probes);
                    p.refresh_program_runs(&probes);
                    p.report(Status::Running)?;
                }
                () = sleep_until(login_at), if login_at.is_some() => {
                    let now = clock::boottime_ns().context("reading CLOCK_BOOTTIME")?;
                    p.logins_due(now)?;
                    p.out.flush()?;
                }
                Some(()) = list_changed.recv() => {
                    reload_at = Some(tokio::time::Instant::now() + RELOAD_SETTLE);
                }
                () = sleep_until(reload_at), if reload_at.is_some() => {
                    reload_at = None;
                    p.reload_lists()?;
                }
                _ = poll_lists.tick() => {
                    p.reload_lists()?;
                    if p.table.refresh_catalog() {
                        info!(
                            "identity: the host's programs changed, {} catalogued again",
                            p.table.identity_stats().catalogued
                        );
                    }
                }
                _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if matches!(e.downcast_ref::<OutputError>(), Some(OutputError::Closed)) {
            info!("stdout closed by its reader: stopping");
            return Ok(());
        }
        return Err(e);
    }

    // Stop: print what is queued (bounded, the programs are still producing), take the final
    // counts, detach by dropping the probes, then print everything left (finite now) and the
    // final status.
    let rb = ring.get_mut();
    let stop = || -> Result<(), OutputError> {
        p.drain(rb, BATCH_MAX * 4)?;
        p.refresh_counters(&probes);
        p.refresh_program_runs(&probes);
        drop(probes);
        p.drain(rb, usize::MAX)?;
        p.report(Status::Stopped)
    };
    match stop() {
        Ok(()) | Err(OutputError::Closed) => Ok(()),
        Err(e) => Err(e).context("cannot write the final records"),
    }
}

/// The process table over the host's `/proc` (the policy's programs catalogued by file and
/// content, then seeded) and the enricher over the host's name, users and clocks: the stages a
/// record is built by, shared with `monitor audit` so that a listener it reports reads exactly
/// like one of the daemon's start-up baseline.
pub fn host_stages(policy: &Policy) -> anyhow::Result<(ProcessTable, Enricher)> {
    let mut table = ProcessTable::new(process_table::DEFAULT_CAPACITY, "/proc");
    // Before seeding: the table hands down the nearest web server from the first entry on.
    let programs = policy.programs();
    let catalog = Catalog::resolve(&programs.lists());
    info!(
        "identity: {} of the host's shells, web servers and egress tools catalogued by file and content",
        catalog.stats().catalogued
    );
    table.set_programs(programs, catalog);
    match table.seed() {
        Ok(n) => info!("process table seeded with {n} processes from /proc"),
        Err(e) => warn!("process table not seeded: {e}"),
    }
    let mut enricher = Enricher::new(
        host::hostname(),
        UserNames::new("/etc/passwd"),
        Clock::new().context("cannot read the system clocks")?,
    );
    enricher.set_web_server_users(policy.web_server_users.clone());
    Ok((table, enricher))
}

/// The benchmark's kernel floor: the same object and hooks with every program returning at once
/// (the `FLOOR` global), so what a workload pays here is the cost of the hooks themselves. Prints
/// a `started` and a `stopped` status record (`"mode": "bench-floor"`) and nothing else.
async fn run_floor(
    ring_buffer_bytes: u32,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let probes = Probes::load(&ProbeOptions {
        ring_buffer_bytes,
        monitor_tgid: std::process::id(),
        floor: true,
    })
    .context("cannot load and attach the eBPF programs")?;
    let status = |status: &str| {
        let line = serde_json::json!({
            "type": "status",
            "status": status,
            "mode": "bench-floor",
            "version": env!("CARGO_PKG_VERSION"),
            "hooks": probes.report(),
            "programs": probes.program_runs(),
        });
        info!("status: {line}");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush())
    };
    status("started").context("cannot write to stdout")?;
    info!("bench floor: every hook attached, every program returns at once");
    tokio::select! {
        _ = sigint.recv() => info!("SIGINT: stopping"),
        _ = sigterm.recv() => info!("SIGTERM: stopping"),
    }
    status("stopped").context("cannot write to stdout")?;
    Ok(())
}

/// Hands the heap memory freed by the start-up work (two parses of the kernel's BTF, the
/// eBPF object's relocation, the `/proc` scans) back to the kernel: glibc keeps freed memory for
/// reuse, and the daemon's steady state needs a fraction of it.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps; no pointer we
    // hold is affected.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sleeps until `at` (forever without one; the `select!` branch is disabled then).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tells the kernel side which processes are under a web server now (the kernel hands the mark
/// down at fork from here on), and which uids are web servers' users, so that their UDP
/// destinations reach userspace and nobody else's do.
fn mark_web_trees<W: std::io::Write>(p: &mut Pipeline<W>, users: &[String]) {
    let mut marked = 0;
    for pid in p.table.pids() {
        if p.table.under_web_server(pid) {
            p.mark_web_tree(pid);
            marked += 1;
        }
    }
    let by_uid = std::fs::read_to_string("/etc/passwd")
        .map(|text| host::parse_passwd(&text))
        .unwrap_or_default();
    let uids: Vec<u32> = by_uid
        .iter()
        .filter(|(_, name)| users.contains(name))
        .map(|(uid, _)| *uid)
        .collect();
    if let Some(watch) = p.watch.as_mut()
        && let Err(e) = watch.set_web_uids(&uids)
    {
        warn!("cannot tell the kernel the web servers' users: {e}");
    }
    info!(
        "{marked} processes under a web server and {} web server users watched for UDP egress",
        uids.len()
    );
}

/// Tells the kernel side which executables are SSH servers: the policy's paths as they are on
/// disk now, and whatever running processes execute under those paths (a binary replaced by an
/// upgrade keeps running from its old inode). New ones are added at their exec.
fn watch_ssh_servers(watch: &mut Watch, config: &login::Config, table: &ProcessTable) {
    let mut inodes = BTreeSet::new();
    for pattern in &config.ssh_servers {
        match glob::glob(pattern.as_str()) {
            Ok(paths) => {
                for path in paths.flatten() {
                    if let Ok(m) = std::fs::metadata(&path) {
                        inodes.insert(m.ino());
                    }
                }
            }
            Err(e) => warn!("{}: {e}", pattern.as_str()),
        }
    }
    for pid in table.pids() {
        let exe = table.get(pid).and_then(|e| e.exe.as_deref());
        if config.is_ssh_server(exe)
            && let Some(ino) = table.procfs().exe_inode(pid)
        {
            inodes.insert(ino);
        }
    }
    for ino in inodes {
        if let Err(e) = watch.watch_exe(ino, EXE_SSH_SERVER) {
            warn!("cannot watch an SSH server executable (inode {ino}): {e}");
        }
    }
}

/// Change notices for the list files: their directories are watched (a downloader replaces a
/// file by renaming a new one over it). Without inotify the periodic re-check still works.
fn watch_files(
    paths: &[PathBuf],
) -> (
    Option<notify::RecommendedWatcher>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use notify::Watcher as _;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if paths.is_empty() {
        return (None, rx);
    }
    let wanted: BTreeSet<PathBuf> = paths.iter().cloned().collect();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|p| wanted.contains(p))
        {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            warn!(
                "cannot watch the list files for changes ({e}): they are re-checked every {RELOAD_POLL:?}"
            );
            return (None, rx);
        }
    };
    let dirs: BTreeSet<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            warn!(
                "cannot watch {} for list changes ({e}): re-checked every {RELOAD_POLL:?}",
                dir.display()
            );
        }
    }
    (Some(watcher), rx)
}

/// The sockets that were listening at start-up; none (with a warning) when the scan fails.
fn baseline_scan() -> Vec<baseline::ListeningSocket> {
    baseline::scan_listeners().unwrap_or_else(|e| {
        warn!("start-up scan of listening sockets failed: {e}");
        Vec::new()
    })
}
