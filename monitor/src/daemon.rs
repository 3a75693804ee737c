//! The live loop: load the probes, seed the process table, report what was already listening,
//! then hand every ring-buffer record to the [`Pipeline`] until SIGINT / SIGTERM.
//!
//! Order at start matters: the probes are attached BEFORE `/proc` is read, so a process is either
//! in the seed or announced by an event (or both), never missed in between.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use log::{info, warn};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    baseline,
    clock::Clock,
    detect::Detector,
    enrich::Enricher,
    host::{self, UserNames},
    output::{Output, OutputError},
    pipeline::Pipeline,
    policy::Policy,
    probes::{Counters, ProbeOptions, Probes},
    process_table::{self, ProcessTable},
    record::Status,
    status,
};

/// Records handled per wake-up before the loop looks at signals and timers again.
const BATCH_MAX: usize = 4096;

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
    } = opts;
    // Signals first: a SIGTERM during start-up is then handled as a clean stop.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let mut probes = Probes::load(&ProbeOptions {
        ring_buffer_bytes,
        monitor_tgid: std::process::id(),
    })
    .context("cannot load and attach the eBPF programs")?;
    // The probes log what attached; the refusals (why a preferred hook was not used) are
    // reported in the status records.
    let hooks = probes.report().clone();
    let ring = probes
        .take_ring_buf()
        .context("cannot open the ring buffer")?;
    // SAFETY: the RingBuf owns its map fd (MapData) and returns that same fd from as_raw_fd for
    // its whole life; nothing else closes or replaces it while the AsyncFd owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("cannot register the ring buffer with tokio")?;

    let mut table = ProcessTable::new(process_table::DEFAULT_CAPACITY, "/proc");
    // Before seeding: the table hands down the nearest web server from the first entry on.
    table.set_web_servers(policy.web_servers.clone());
    match table.seed() {
        Ok(n) => info!("process table seeded with {n} processes from /proc"),
        Err(e) => warn!("process table not seeded: {e}"),
    }

    let mut p = Pipeline {
        print_events,
        table,
        enricher: Enricher::new(
            host::hostname(),
            UserNames::new("/etc/passwd"),
            Clock::new().context("cannot read the system clocks")?,
        ),
        detector: Detector::new(Arc::new(policy)),
        out: Output::stdout(),
        board: status::Board {
            hooks,
            ring_buffer_bytes,
            policy_source,
            ..status::Board::default()
        },
        counters: Counters::default(),
    };
    p.refresh_counters(&probes);

    let result: anyhow::Result<()> = async {
        p.start(&baseline_scan())?;

        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + status_interval,
            status_interval,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
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
                _ = tick.tick() => {
                    p.refresh_counters(&probes);
                    p.report(Status::Running)?;
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
        drop(probes);
        p.drain(rb, usize::MAX)?;
        p.report(Status::Stopped)
    };
    match stop() {
        Ok(()) | Err(OutputError::Closed) => Ok(()),
        Err(e) => Err(e).context("cannot write the final records"),
    }
}

/// The sockets that were listening at start-up; none (with a warning) when the scan fails.
fn baseline_scan() -> Vec<baseline::ListeningSocket> {
    baseline::scan_listeners().unwrap_or_else(|e| {
        warn!("start-up scan of listening sockets failed: {e}");
        Vec::new()
    })
}
