//! `bench-driver`: the workloads `cargo xtask bench` times, compiled with optimisations so that
//! what is measured is the kernel's and the monitor's work, not the driver's. Each workload times
//! itself with `CLOCK_MONOTONIC` and prints one JSON line (`{"ops": N, "elapsed_ns": T, ...}`);
//! the latency workloads print one line per operation with the time taken just before its
//! syscall, on the same clock the benchmark stamps the monitor's alert lines with.
//!
//! Every workload is bounded and uses loopback only (or, for the listen workloads, binds without
//! sending anything).

use std::{
    collections::VecDeque,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(name = "bench-driver", about = "Workloads for `cargo xtask bench`")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Spawn `/bin/true` and wait for it, COUNT times.
    Exec {
        #[arg(long)]
        count: u32,
    },
    /// Connect to a listener on 127.0.0.1, accept that connection, close both; COUNT times.
    Connect {
        #[arg(long)]
        count: u32,
    },
    /// socket + bind (ephemeral port) + listen + close, COUNT times.
    Listen {
        #[arg(long)]
        count: u32,
        /// The address bound: 127.0.0.1 (what the policy allows) or 0.0.0.0 (each one an alert).
        #[arg(long, default_value = "127.0.0.1")]
        bind: Ipv4Addr,
    },
    /// COUNT connections accepted by one listener from CLIENTS client threads, each waiting for
    /// the server's close before its next connect.
    Inbound {
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 2)]
        clients: u32,
    },
    /// Connect + accept + close pairs paced at RATE per second for SECONDS, on THREADS threads;
    /// reports the rate reached.
    PacedConnect {
        #[arg(long)]
        rate: u32,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        threads: u32,
    },
    /// Starts COUNT `sleep` processes, prints `{"ready": COUNT}`, and kills them when stdin closes.
    Hold {
        #[arg(long)]
        count: u32,
    },
    /// Listens on 0.0.0.0 on ports `PORT_BASE`.., one every `GAP_MS`, each kept open `HOLD_MS`; prints
    /// `{"port": P, "t_ns": T}` with the time just before bind.
    ListenAlerts {
        #[arg(long)]
        count: u32,
        #[arg(long)]
        port_base: u16,
        #[arg(long, default_value_t = 20)]
        gap_ms: u64,
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
    },
    /// Runs `/bin/sh -c 'exit 0 # TAG-i'` as USER, one every `GAP_MS`; prints
    /// `{"tag": "TAG-i", "t_ns": T}` with the time just before the spawn.
    ShellAlerts {
        #[arg(long)]
        count: u32,
        #[arg(long)]
        user: String,
        #[arg(long)]
        tag: String,
        #[arg(long, default_value_t = 20)]
        gap_ms: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().workload {
        Workload::Exec { count } => timed("exec", count, || exec(count)),
        Workload::Connect { count } => timed("connect", count, || connect(count)),
        Workload::Listen { count, bind } => timed("listen", count, || listen(count, bind)),
        Workload::Inbound { count, clients } => timed("inbound", count, || inbound(count, clients)),
        Workload::PacedConnect {
            rate,
            seconds,
            threads,
        } => paced_connect(rate, seconds, threads),
        Workload::Hold { count } => hold(count),
        Workload::ListenAlerts {
            count,
            port_base,
            gap_ms,
            hold_ms,
        } => listen_alerts(count, port_base, gap_ms, hold_ms),
        Workload::ShellAlerts {
            count,
            user,
            tag,
            gap_ms,
        } => shell_alerts(count, &user, &tag, gap_ms),
    }
}

/// `CLOCK_MONOTONIC` in ns: the clock the benchmark stamps the monitor's output lines with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn print(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

/// Runs `work`, which must complete `count` operations, and prints how long it took.
fn timed(name: &str, count: u32, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    work()?;
    let elapsed = start.elapsed();
    print(&json!({
        "workload": name,
        "ops": count,
        "elapsed_ns": elapsed.as_nanos() as u64,
    }))
}

fn exec(count: u32) -> Result<()> {
    for _ in 0..count {
        let status = Command::new("/bin/true")
            .status()
            .context("cannot exec /bin/true")?;
        ensure!(status.success(), "/bin/true failed: {status}");
    }
    Ok(())
}

/// One connect + accept + close on `listener`, checking the accepted peer is our client.
fn connect_once(listener: &TcpListener, addr: SocketAddr) -> Result<()> {
    let client = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    let (server, peer) = listener.accept().context("accept failed")?;
    let local = client.local_addr()?;
    ensure!(
        peer == local,
        "accepted a connection from {peer}, not from our client at {local}"
    );
    // The server closes first, as a web server does: the TIME_WAIT state stays on its side.
    // Closed the other way round, every client port would sit in TIME_WAIT for a minute, and
    // after a few storms connect(2) spends its time searching the ephemeral range for a free
    // port instead of connecting (runs several times slower, depending on the storms before).
    drop(server);
    drop(client);
    Ok(())
}

fn loopback_listener() -> Result<(TcpListener, SocketAddr)> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn connect(count: u32) -> Result<()> {
    // One pair at a time: a connect loop racing an accept thread fills the accept queue, and the
    // kernel then drops SYNs that are retried only after a second.
    let (listener, addr) = loopback_listener()?;
    for _ in 0..count {
        connect_once(&listener, addr)?;
    }
    Ok(())
}

fn listen(count: u32, bind: Ipv4Addr) -> Result<()> {
    for _ in 0..count {
        let listener =
            TcpListener::bind((bind, 0)).with_context(|| format!("cannot listen on {bind}"))?;
        drop(listener);
    }
    Ok(())
}

fn inbound(count: u32, clients: u32) -> Result<()> {
    ensure!(clients > 0, "--clients must be at least 1");
    let (listener, addr) = loopback_listener()?;
    let per_client = count / clients;
    let extra = count % clients;
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let n = per_client + u32::from(i < extra);
            thread::spawn(move || -> Result<()> {
                let mut buf = [0u8; 1];
                for _ in 0..n {
                    let mut client = TcpStream::connect(addr)
                        .with_context(|| format!("cannot connect to {addr}"))?;
                    // The server closes right after accepting: EOF (or a reset) ends the wait.
                    let _ = client.read(&mut buf);
                }
                Ok(())
            })
        })
        .collect();
    for _ in 0..count {
        let (server, _) = listener.accept().context("accept failed")?;
        drop(server);
    }
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok(())
}

fn paced_connect(rate: u32, seconds: f64, threads: u32) -> Result<()> {
    ensure!(
        rate > 0 && threads > 0,
        "--rate and --threads must be positive"
    );
    let total = (f64::from(rate) * seconds) as u64;
    let per_thread = total / u64::from(threads);
    let interval = Duration::from_secs_f64(f64::from(threads) / f64::from(rate));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            thread::spawn(move || -> Result<u64> {
                let (listener, addr) = loopback_listener()?;
                let begin = Instant::now();
                for i in 0..per_thread {
                    let due = begin + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        thread::sleep(due - now);
                    }
                    connect_once(&listener, addr)?;
                }
                Ok(per_thread)
            })
        })
        .collect();
    let mut done = 0;
    for worker in workers {
        done += worker
            .join()
            .map_err(|_| anyhow::anyhow!("a paced thread panicked"))??;
    }
    let elapsed = start.elapsed();
    print(&json!({
        "workload": "paced-connect",
        "ops": done,
        "elapsed_ns": elapsed.as_nanos() as u64,
        "target_rate": rate,
        "rate": f64::from(u32::try_from(done).unwrap_or(u32::MAX)) / elapsed.as_secs_f64(),
    }))
}

fn hold(count: u32) -> Result<()> {
    let mut children: Vec<Child> = Vec::with_capacity(count as usize);
    let spawned = (|| -> Result<()> {
        for _ in 0..count {
            children.push(
                Command::new("/bin/sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .context("cannot start /bin/sleep")?,
            );
        }
        print(&json!({ "ready": count }))?;
        // Until our reader closes stdin (or goes away).
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        Ok(())
    })();
    for child in &mut children {
        let _ = child.kill();
    }
    for child in &mut children {
        let _ = child.wait();
    }
    spawned
}

fn listen_alerts(count: u32, port_base: u16, gap_ms: u64, hold_ms: u64) -> Result<()> {
    let gap = Duration::from_millis(gap_ms);
    let hold = Duration::from_millis(hold_ms);
    let mut open: VecDeque<(Instant, TcpListener)> = VecDeque::new();
    let mut port = port_base;
    for _ in 0..count {
        while open.front().is_some_and(|(at, _)| at.elapsed() >= hold) {
            open.pop_front();
        }
        // A port some other socket holds is skipped (its listen would fail, and be no alert).
        let (t_ns, listener) = loop {
            let t_ns = monotonic_ns();
            match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
                Ok(listener) => break (t_ns, listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    port = port.checked_add(1).context("ran out of ports")?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot listen on 0.0.0.0:{port}"));
                }
            }
        };
        print(&json!({ "port": port, "t_ns": t_ns }))?;
        port = port.checked_add(1).context("ran out of ports")?;
        open.push_back((Instant::now(), listener));
        thread::sleep(gap);
    }
    while let Some((at, listener)) = open.pop_front() {
        if let Some(left) = hold.checked_sub(at.elapsed()) {
            thread::sleep(left);
        }
        drop(listener);
    }
    Ok(())
}

fn shell_alerts(count: u32, user: &str, tag: &str, gap_ms: u64) -> Result<()> {
    let (uid, gid) = user_ids(user)?;
    for i in 0..count {
        let tag = format!("{tag}-{i}");
        let t_ns = monotonic_ns();
        let status = Command::new("/bin/sh")
            .args(["-c", &format!("exit 0 # {tag}")])
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .status()
            .context("cannot run /bin/sh")?;
        ensure!(status.success(), "/bin/sh failed: {status}");
        print(&json!({ "tag": tag, "t_ns": t_ns }))?;
        thread::sleep(Duration::from_millis(gap_ms));
    }
    Ok(())
}

/// The uid and gid of `user` from /etc/passwd.
fn user_ids(user: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == user {
            return Ok((fields[2].parse()?, fields[3].parse()?));
        }
    }
    bail!("no user {user} in /etc/passwd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_run_their_full_count() {
        exec(3).expect("3 execs of /bin/true");
        connect(20).expect("20 loopback connects, each accepted from its own client");
        listen(20, Ipv4Addr::LOCALHOST).expect("20 loopback listens");
        inbound(21, 2).expect("21 connections accepted from 2 clients");
        inbound(5, 0).expect_err("no client");
    }

    #[test]
    fn user_ids_come_from_passwd() {
        assert_eq!(user_ids("root").expect("root exists"), (0, 0));
        assert!(user_ids("no-such-user-here").is_err());
    }
}
