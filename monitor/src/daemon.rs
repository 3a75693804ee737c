//! The live loop: load the probes, seed the process table, report what was already listening,
//! then hand every ring-buffer record to the [`Pipeline`] until SIGINT / SIGTERM.
//!
//! Order at start matters: the probes are attached BEFORE `/proc` is read, so a process is either
//! in the seed or announced by an event (or both), never missed in between. Right after the
//! programs are attached and their maps opened, while the daemon is still one thread, it gives up
//! every capability it does not need to keep running ([`privilege`]); the output writer and the
//! list-file watcher start after that.
//!
//! Signals: SIGINT / SIGTERM stop, SIGHUP reloads the policy and the list files ([`reload`]),
//! SIGUSR1 reopens `--output FILE`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use log::{info, warn};
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
    login::Logins,
    metrics,
    output::{Format, OnClosed, Output, OutputError, Sink as _, queue},
    pipeline::{self, Pipeline},
    policy::Policy,
    privilege,
    probes::{Counters, ProbeOptions, Probes},
    process_table::{self, ProcessTable},
    record::Status,
    reload::{self, mark_web_trees, watch_ssh_servers},
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
/// How long the records queued at exit may take to reach a slow reader.
const OUTPUT_GRACE: Duration = Duration::from_secs(3);

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
    /// Stdout or `--output FILE`, opened; its writer thread starts once privileges are dropped.
    pub output: queue::Opened,
    /// `--output-queue-bytes`.
    pub output_queue_bytes: usize,
    /// `--metrics`: the listener, bound.
    pub metrics: Option<std::net::TcpListener>,
    /// What SIGHUP reads again.
    pub reload: reload::Source,
}

/// Runs the daemon on a current-thread tokio runtime until SIGINT / SIGTERM, or until the reader
/// of stdout goes away (an error, unless `--on-output-closed=continue`).
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
        output,
        output_queue_bytes,
        metrics,
        reload: reload_source,
    } = opts;
    // Signals first: a SIGTERM during start-up is then handled as a clean stop.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut sigusr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
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
    // Programs attached, maps open, outputs open: what is left to do needs far less.
    privilege::drop_privileges().context("cannot drop privileges")?;
    let queue = output
        .start()
        .context("cannot start the output writer thread")?;
    let mut scrapes = metrics
        .map(metrics::serve)
        .transpose()
        .context("cannot serve the metrics")?;

    let (table, enricher) = host_stages(&policy)?;
    watch_ssh_servers(&mut watch, &policy.logins, &table);
    let login_config = policy.logins.clone();
    let mut list_paths = lists.as_ref().map(|(l, _)| l.paths()).unwrap_or_default();

    let mut p = Pipeline {
        print_events,
        table,
        enricher,
        detector: Detector::new(Arc::new(policy.clone())),
        out: Output::with_format(queue, format.encoder()).with_budget(output_queue_bytes),
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
    let (mut _watcher, mut list_changed) = watch_files(&list_paths);
    let trouble = p.out.get_ref().trouble_handle();

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
                _ = sighup.recv() => {
                    info!("SIGHUP: reading {} and the list files again", reload::describe(&reload_source));
                    if let Some(paths) = reload::on_sighup(&mut p, &reload_source)?
                        && paths != list_paths
                    {
                        (_watcher, list_changed) = watch_files(&paths);
                        list_paths = paths;
                    }
                }
                _ = sigusr1.recv() => p.out.get_mut().reopen(),
                Some(scrape) = next_scrape(&mut scrapes) => {
                    p.refresh_counters(&probes);
                    let status = p.status_with(Status::Running, None, None);
                    let _ = scrape.send(metrics::encode_status(&status));
                }
                () = trouble.wait() => {
                    let out = p.out.get_ref();
                    if let Some(why) = out.failed() {
                        return Err(OutputError::Io(std::io::Error::other(why)).into());
                    }
                    if out.closed() && out.on_closed() == OnClosed::Exit {
                        return Err(OutputError::Closed.into());
                    }
                    info!("--on-output-closed=continue: still watching; records are dropped and counted");
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
            // Nothing can be printed any more: detach, and leave the final counts on stderr.
            p.refresh_counters(&probes);
            drop(probes);
            let stopped = p.status_with(Status::Stopped, None, None);
            pipeline::log_status(&stopped);
            anyhow::bail!(
                "the reader of {} went away (EPIPE): stopping, as --on-output-closed=exit says \
                 (--on-output-closed=continue keeps the daemon running)",
                p.out.get_ref().name()
            );
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
    let stopped = stop();
    p.out.get_mut().finish(OUTPUT_GRACE);
    match stopped {
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

/// The next scrape of `--metrics` (never, without it).
async fn next_scrape(scrapes: &mut Option<metrics::Scrapes>) -> Option<metrics::Scrape> {
    match scrapes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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
