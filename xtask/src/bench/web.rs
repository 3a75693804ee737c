//! The web workload: Debian's nginx and php-fpm serving a small PHP page on loopback, loaded by
//! `wrk`. Both run from a scratch directory with their own configuration (nothing in /etc is
//! touched), nginx as www-data like a packaged one, and stay up for the whole benchmark so that
//! every configuration sees the same, already warm, server.

use std::{
    fs,
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd;

const NGINX_CONF: &str = r"# nginx for `cargo xtask bench` (written by xtask/src/bench/web.rs)
worker_processes 2;
user www-data;
pid @DIR@/nginx.pid;
error_log @DIR@/nginx-error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path @DIR@/body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    server {
        listen 127.0.0.1:@PORT@;
        root @DIR@/www;
        location ~ \.php$ {
            fastcgi_pass unix:@DIR@/php-fpm.sock;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param QUERY_STRING $query_string;
        }
    }
}
";

const PHP_FPM_CONF: &str = r"; php-fpm for `cargo xtask bench` (written by xtask/src/bench/web.rs)
[global]
pid = @DIR@/php-fpm.pid
error_log = @DIR@/php-fpm.log
daemonize = no
[www]
user = www-data
group = www-data
listen = @DIR@/php-fpm.sock
listen.mode = 0666
pm = static
pm.max_children = 4
";

/// A page that does a little work, like a real one: PHP runs, nothing else is called.
const PAGE: &str =
    "<?php\n$s = 0;\nfor ($i = 0; $i < 1000; $i++) { $s += $i; }\necho \"ok $s\\n\";\n";

pub struct WebServer {
    nginx: Child,
    php_fpm: Child,
    pub url: String,
    dir: PathBuf,
}

/// What one `wrk` run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p99_ms: f64,
}

impl WebServer {
    pub fn start(scratch: &Path) -> Result<Self> {
        let dir = scratch.join("web");
        fs::create_dir_all(dir.join("www")).context("cannot create the web scratch directory")?;
        // nginx's workers (www-data) must reach the document root.
        cmd::run(Command::new("chmod").args(["-R", "a+rX"]).arg(scratch))?;
        fs::write(dir.join("www").join("bench.php"), PAGE)?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let fill = |template: &str| {
            template
                .replace("@DIR@", &dir.display().to_string())
                .replace("@PORT@", &port.to_string())
        };
        fs::write(dir.join("nginx.conf"), fill(NGINX_CONF))?;
        fs::write(dir.join("php-fpm.conf"), fill(PHP_FPM_CONF))?;
        let php_fpm_bin = php_fpm()?;
        let php_fpm = Command::new(&php_fpm_bin)
            .args(["-F", "-y"])
            .arg(dir.join("php-fpm.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", php_fpm_bin.display()))?;
        let nginx = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start /usr/sbin/nginx")?;
        let server = Self {
            nginx,
            php_fpm,
            url: format!("http://127.0.0.1:{port}/bench.php"),
            dir,
        };
        server.wait_ready(port)?;
        Ok(server)
    }

    fn wait_ready(&self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.dir.join("php-fpm.sock").exists()
                && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            {
                // One request end to end before anything is timed.
                if wrk(&self.url, 1, 1).is_ok() {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "nginx + php-fpm did not serve {} within 20 s; see {}",
            self.url,
            self.dir.display()
        )
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        for child in [&mut self.nginx, &mut self.php_fpm] {
            // SIGTERM first: nginx and php-fpm take their workers down with them.
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own child, not reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Debian's php-fpm binary (`/usr/sbin/php-fpm8.2` on bookworm).
fn php_fpm() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .context("no /usr/sbin/php-fpm* (the bootstrap installs php-fpm)")
}

/// Runs `wrk` against `url` for `seconds` with `connections` connections on 2 threads.
pub fn wrk(url: &str, seconds: u32, connections: u32) -> Result<WrkResult> {
    let out = cmd::output(Command::new("wrk").args([
        "-t2",
        &format!("-c{}", connections.max(2)),
        &format!("-d{seconds}s"),
        "--latency",
        url,
    ]))?;
    parse_wrk(&out).with_context(|| format!("cannot read wrk's output:\n{out}"))
}

/// Requests/s and the 99th latency percentile from wrk's `--latency` report.
pub fn parse_wrk(out: &str) -> Result<WrkResult> {
    let mut rps = None;
    let mut p99 = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        }
        if let Some(v) = line.strip_prefix("99%") {
            p99 = Some(duration_ms(v.trim())?);
        }
        if line.starts_with("Non-2xx or 3xx responses") || line.starts_with("Socket errors") {
            bail!("wrk reported failures: {line}");
        }
    }
    let requests_per_sec = rps.context("no Requests/sec line")?;
    ensure!(requests_per_sec > 0.0, "no request completed");
    Ok(WrkResult {
        requests_per_sec,
        p99_ms: p99.context("no 99% latency line (was --latency given?)")?,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn duration_ms(v: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else {
        bail!("unknown duration {v}")
    };
    Ok(number.parse::<f64>()? * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_report_is_read() {
        let out = "Running 10s test @ http://127.0.0.1:8080/bench.php
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  412.05us  14.01ms   90.12%
    Req/Sec     5.31k   301.22     5.90k    71.00%
  Latency Distribution
     50%    1.45ms
     75%    1.62ms
     90%    1.88ms
     99%    3.04ms
  105670 requests in 10.00s, 17.03MB read
Requests/sec:  10566.28
Transfer/sec:      1.70MB
";
        let r = parse_wrk(out).expect("parses");
        assert!((r.requests_per_sec - 10566.28).abs() < 1e-9);
        assert!((r.p99_ms - 3.04).abs() < 1e-9);
        assert!((duration_ms("812.00us").expect("us") - 0.812).abs() < 1e-9);
        assert!((duration_ms("2.00s").expect("s") - 2000.0).abs() < 1e-9);
        assert!(parse_wrk("Requests/sec: 10\nNon-2xx or 3xx responses: 5\n").is_err());
    }
}
