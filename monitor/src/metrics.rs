//! `--metrics ADDR`: the status record's counters in the Prometheus (`OpenMetrics`) text format at
//! `http://ADDR/metrics`, for people who scrape Falco and Tetragon that way. Off unless asked for;
//! an address without a host (`9464`, `:9464`) binds loopback only.
//!
//! Nothing is counted twice: each scrape asks the daemon's loop for a status record as of now
//! ([`Scrapes`]) and encodes it with `prometheus-client` (the Prometheus project's own Rust
//! client), served by `hyper` (HTTP/1.1) on the daemon's runtime. The hot path pays nothing.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::{mpsc, oneshot};

use crate::record::StatusRecord;

/// `--metrics` values: `PORT`, `:PORT` (loopback), `HOST:PORT`, `[V6]:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("`{s}` is not PORT, :PORT, IP:PORT or [IPv6]:PORT (e.g. 127.0.0.1:9464)")
    })
}

/// A scrape's request to the daemon's loop: answer with the metrics text.
pub type Scrape = oneshot::Sender<String>;

/// The daemon's end: scrapes waiting for an answer.
pub type Scrapes = mpsc::Receiver<Scrape>;

/// Binds `addr` now (before the daemon gives up its privileges: a port below 1024 needs
/// `CAP_NET_BIND_SERVICE`); serving starts with [`serve`].
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    if !addr.ip().is_loopback() {
        warn!("--metrics {addr}: the metrics are reachable from other hosts");
    }
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `/metrics` on `listener` from the current tokio runtime; returns the receiver of the
/// scrapes, which the daemon's loop answers with [`encode_status`].
pub fn serve(listener: std::net::TcpListener) -> std::io::Result<Scrapes> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (tx, rx) = mpsc::channel::<Scrape>(8);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| respond(req, tx.clone()));
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    debug!("metrics: connection ended: {e}");
                }
            });
        }
    });
    Ok(rx)
}

async fn respond(
    req: Request<Incoming>,
    scrapes: mpsc::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, "see /metrics\n".into()));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, String::new()));
    }
    let (tx, rx) = oneshot::channel();
    if scrapes.send(tx).await.is_err() {
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into()));
    }
    match rx.await {
        Ok(text) => {
            let mut response = reply(StatusCode::OK, text);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Ok(response)
        }
        Err(_) => Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into())),
    }
}

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn counters<'a>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let family = Family::<Labels, Counter<u64>>::default();
    for (key, value) in values {
        family
            .get_or_create(&vec![(label.to_owned(), key.to_owned())])
            .inc_by(value);
    }
    registry.register(name, help, family);
}

/// The status record's counters as `OpenMetrics` text (counters get their `_total` suffix).
pub fn encode_status(s: &StatusRecord) -> String {
    let mut r = Registry::with_prefix("monitor");
    let e = &s.events;
    counters(
        &mut r,
        "events",
        "Kernel events handled, by kind",
        "kind",
        [
            ("listen", e.listen),
            ("connect", e.connect),
            ("accept", e.accept),
            ("exec", e.exec),
            ("fork", e.fork),
            ("exit", e.exit),
            ("cred", e.cred),
            ("setsid", e.setsid),
            ("pam", e.pam),
            ("login", e.login),
        ],
    );
    counter(
        &mut r,
        "kernel_drops",
        "Events lost because the kernel ring buffer was full",
        s.drops,
    );
    counters(
        &mut r,
        "errors",
        "Failures inside the eBPF programs by area, and records userspace could not decode",
        "area",
        s.errors.iter().map(|(k, v)| (*k, *v)),
    );
    counters(
        &mut r,
        "output_dropped",
        "Records dropped because the output queue was full or its reader gone, by kind",
        "kind",
        s.output.dropped.by_kind(),
    );
    gauge(
        &mut r,
        "output_queued_bytes",
        "Bytes of records waiting for the output's reader",
        s.output.queued_bytes as u64,
    );
    counters(
        &mut r,
        "alerts",
        "Alerts printed, by rule",
        "rule",
        s.alerts_by_rule.iter().map(|(k, v)| (*k, *v)),
    );
    counter(
        &mut r,
        "dedup_suppressed",
        "Repeats of an alert held back by dedup",
        s.dedup.suppressed_total,
    );
    gauge(
        &mut r,
        "dedup_suppressed_pending",
        "Repeats held back and not yet reported on an alert",
        s.dedup.suppressed_pending,
    );
    gauge(
        &mut r,
        "process_table_size",
        "Processes in the process table",
        s.process_table.size as u64,
    );
    counter(
        &mut r,
        "process_table_evicted",
        "Processes evicted from the full process table",
        s.process_table.evicted,
    );
    gauge(
        &mut r,
        "ssh_sessions",
        "SSH sessions being followed",
        s.ssh_sessions as u64,
    );
    gauge(
        &mut r,
        "resident_memory_bytes",
        "The daemon's resident memory",
        s.rss_bytes,
    );
    counters(
        &mut r,
        "reloads",
        "Reloads: SIGHUP taken (policy) and refused (policy_refused), list files re-read (lists)",
        "kind",
        [
            ("policy", s.policy_reloads),
            ("policy_refused", s.policy_reloads_refused),
            ("lists", s.list_reloads),
        ],
    );
    gauge(
        &mut r,
        "watched_prefixes",
        "Prefixes the kernel watches for inbound connections",
        s.watched_prefixes as u64,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &r);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_host_are_loopback() {
        assert_eq!(
            parse_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_addr(":9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(
            parse_addr("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        assert!(parse_addr("localhost:x").unwrap_err().contains("PORT"));
    }

    #[test]
    fn the_status_counters_are_exposed() {
        let mut s = crate::testing::status_record();
        s.events.connect = 7;
        s.drops = 3;
        s.output.dropped.connect = 5;
        s.alerts_by_rule.insert("webserver_shell", 2);
        s.policy_reloads = 1;
        s.rss_bytes = 4096;
        let text = encode_status(&s);
        for line in [
            "monitor_events_total{kind=\"connect\"} 7",
            "monitor_kernel_drops_total 3",
            "monitor_output_dropped_total{kind=\"connect\"} 5",
            "monitor_alerts_total{rule=\"webserver_shell\"} 2",
            "monitor_reloads_total{kind=\"policy\"} 1",
            "monitor_resident_memory_bytes 4096",
            "monitor_process_table_size 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
