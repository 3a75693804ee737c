//! The real Debian OpenSSH server and clients for the privileged end-to-end tests.
//!
//! - [`NetNs`]: a network namespace joined to this host by a veth pair with its own IPv4 /30 and
//!   IPv6 /64, so that a client has a source address of its own (a "trusted" and an "untrusted"
//!   source are two namespaces).
//! - [`Sshd`]: `/usr/sbin/sshd -D -e -f <scratch config>` on a free port of 127.0.0.1 and of the
//!   host side of the given namespaces, with its own host key, authorized keys and pid file.
//! - [`Client`]: `ssh` / `sftp` run inside a namespace (through `ip netns exec`) with a key, a
//!   password or keyboard-interactive, every run bounded by a timeout.
//! - [`TestUser`]: the local user `monitortest`, created with `useradd -m -s /bin/bash` when missing
//!   (it is left in place afterwards, password locked); [`TestUser::with_password`] gives it a
//!   random password for as long as the returned guard lives.
//!
//! Nothing outside the scratch directory is changed except that user, `/run/sshd` (sshd's privsep
//! chroot, created empty when missing as the packaged service would) and the namespaces and veth
//! links, which are deleted on drop. `/etc/ssh` and `/root/.ssh` are never read or written: the
//! server gets `-f <scratch>/sshd_config`, the clients `-F /dev/null` (which also keeps `ssh` from
//! creating `~/.ssh`) and `UserKnownHostsFile=/dev/null`. Traffic goes only to 127.0.0.1 and to the
//! host side of namespaces created here.

use std::{
    ffi::OsStr,
    fs::{self, File},
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::{
        fs::PermissionsExt,
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// The local user the tests log in as.
pub const TEST_USER: &str = "monitortest";
/// sshd must be started by absolute path: it re-executes itself (`sshd -R`) for every connection.
pub const SSHD: &str = "/usr/sbin/sshd";
/// Debian's default `Subsystem sftp`.
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// How long one client run may take before it is killed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Scratch directory.
// ---------------------------------------------------------------------------------------------

/// A scratch directory (mode 0755, so that the test user can read its authorized keys) removed on
/// drop. It holds a machine-wide lock for its lifetime: the sshd scenarios share the test user and
/// its password, and two runs of the suite at once would fight over them.
pub struct Scratch {
    dir: PathBuf,
    _lock: File,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let lock_path = std::env::temp_dir().join("monitor-e2e-sshd.lock");
        let lock =
            File::create(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
        // Blocks until another run's scenario is over; released when the file is closed.
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(
            r,
            0,
            "flock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
        let dir = std::env::temp_dir().join(format!("monitor-e2e-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch dir");
        Scratch { dir, _lock: lock }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `rel` with mode 0644.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        write_file(&self.path(rel), contents, 0o644)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces.
// ---------------------------------------------------------------------------------------------

/// Number of /30 subnets in 10.77.0.0/16: the slots a namespace can take.
const SLOTS: u32 = 1 << 14;

/// A network namespace `mon-<pid>-<slot>` joined to this host's namespace by the veth pair
/// `mvh<slot>` (host side) / `mvn<slot>` (inside). Slot `n` owns 10.77.0.0/16's n-th /30 (host
/// side `.1`, namespace side `.2` of it) and `fd77:0:0:<n>::/64` (`::1` host side, `::2` inside;
/// `nodad`, so the addresses are usable at once). Creating the host-side link is the claim on a
/// slot: a slot whose link or addresses exist already is skipped. Everything is deleted on drop.
pub struct NetNs {
    pub name: String,
    /// The host-side veth (in this host's namespace).
    pub host_link: String,
    pub host_v4: Ipv4Addr,
    pub ns_v4: Ipv4Addr,
    pub host_v6: Ipv6Addr,
    pub ns_v6: Ipv6Addr,
}

impl NetNs {
    /// Creates a namespace in the first free slot, starting from one derived from our pid (so
    /// that two test processes rarely even try the same slot).
    pub fn create() -> Self {
        let start = std::process::id().wrapping_mul(37) % SLOTS;
        for i in 0..64 {
            let slot = (start + i * 7) % SLOTS;
            if let Some(ns) = Self::try_slot(slot) {
                return ns;
            }
        }
        panic!("no free 10.77.0.0/16 slot for a test network namespace");
    }

    fn try_slot(slot: u32) -> Option<Self> {
        let base = u32::from(Ipv4Addr::new(10, 77, 0, 0)) + slot * 4;
        let host_v4 = Ipv4Addr::from(base + 1);
        let ns_v4 = Ipv4Addr::from(base + 2);
        let prefix = |last: u16| Ipv6Addr::new(0xfd77, 0, 0, slot as u16, 0, 0, 0, last);
        let (host_v6, ns_v6) = (prefix(1), prefix(2));
        let in_use = output_ok(Command::new("ip").args(["-o", "addr", "show"]));
        if [host_v4.to_string(), host_v6.to_string()]
            .iter()
            .any(|a| in_use.contains(&format!(" {a}/")))
        {
            return None;
        }
        let host_link = format!("mvh{slot}");
        let ns_link = format!("mvn{slot}");
        let claimed = Command::new("ip")
            .args([
                "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !claimed {
            return None;
        }
        let name = format!("mon-{}-{slot}", std::process::id());
        // A namespace left behind by an aborted run with the same pid would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        // From here on, Drop cleans up whatever step fails.
        let ns = NetNs {
            name,
            host_link,
            host_v4,
            ns_v4,
            host_v6,
            ns_v6,
        };
        let n = ns.name.as_str();
        run_ok(Command::new("ip").args(["netns", "add", n]));
        run_ok(Command::new("ip").args(["link", "set", &ns_link, "netns", n]));
        let h = ns.host_link.as_str();
        run_ok(Command::new("ip").args(["addr", "add", &format!("{host_v4}/30"), "dev", h]));
        run_ok(Command::new("ip").args([
            "addr",
            "add",
            &format!("{host_v6}/64"),
            "dev",
            h,
            "nodad",
        ]));
        run_ok(Command::new("ip").args(["link", "set", h, "up"]));
        let inside = |args: &[&str]| run_ok(Command::new("ip").arg("-n").arg(n).args(args));
        inside(&["addr", "add", &format!("{ns_v4}/30"), "dev", &ns_link]);
        inside(&[
            "addr",
            "add",
            &format!("{ns_v6}/64"),
            "dev",
            &ns_link,
            "nodad",
        ]);
        inside(&["link", "set", &ns_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `ip netns exec <name> <program>`: `ip` execs the program, so the child's pid is the
    /// program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// The host-side address a client in this namespace connects to.
    pub fn host_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.host_v6.into()
        } else {
            self.host_v4.into()
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting either end of a veth pair deletes both; the namespace goes with `netns del`.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// The test user.
// ---------------------------------------------------------------------------------------------

/// The local user [`TEST_USER`].
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    /// Looks the user up, creating it first (`useradd -m -s /bin/bash monitortest`, password
    /// locked) when it does not exist. The user stays afterwards: it is harmless without a
    /// password, and creating it again each run would churn uids.
    pub fn ensure() -> Self {
        if let Some(u) = Self::lookup(TEST_USER) {
            return u;
        }
        run_ok(Command::new("useradd").args(["-m", "-s", "/bin/bash", TEST_USER]));
        Self::lookup(TEST_USER).expect("useradd created no passwd entry")
    }

    fn lookup(name: &str) -> Option<Self> {
        let out = Command::new("getent")
            .args(["passwd", name])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let f: Vec<&str> = line.trim_end().split(':').collect();
        Some(TestUser {
            name: f[0].into(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].into(),
        })
    }

    /// Gives the user a fresh random password until the guard is dropped, which restores the
    /// previous `/etc/shadow` hash (normally `!`, locked).
    pub fn with_password(&self) -> Password {
        let shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
        let previous = shadow
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{}:", self.name))?
                    .split(':')
                    .next()
            })
            .unwrap_or_else(|| panic!("{} has no /etc/shadow entry", self.name))
            .to_string();
        let mut bytes = [0u8; 12];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("read /dev/urandom");
        let secret: String = bytes.iter().fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        });
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        writeln!(
            chpasswd.stdin.take().expect("stdin"),
            "{}:{secret}",
            self.name
        )
        .expect("write to chpasswd");
        assert!(
            chpasswd.wait().expect("wait chpasswd").success(),
            "chpasswd failed"
        );
        Password {
            user: self.name.clone(),
            secret,
            previous,
        }
    }
}

/// A password set by [`TestUser::with_password`]; the previous hash comes back on drop.
pub struct Password {
    user: String,
    pub secret: String,
    previous: String,
}

impl Drop for Password {
    fn drop(&mut self) {
        let _ = Command::new("usermod")
            .args(["-p", &self.previous, &self.user])
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// Keys.
// ---------------------------------------------------------------------------------------------

/// An ed25519 key pair in the scratch directory (private key mode 0600, owned by root, as `ssh`
/// requires).
#[derive(Debug, Clone)]
pub struct Key {
    pub private: PathBuf,
    /// The `.pub` line (`ssh-ed25519 AAAA... comment`).
    pub public: String,
}

impl Key {
    pub fn generate(dir: &Path, name: &str) -> Self {
        let private = dir.join(name);
        let _ = fs::remove_file(&private);
        let _ = fs::remove_file(private.with_extension("pub"));
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("monitor-e2e-{name}"))
                .arg("-f")
                .arg(&private),
        );
        let public = fs::read_to_string(dir.join(format!("{name}.pub"))).expect("read public key");
        Key {
            private,
            public: public.trim_end().to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------------------------

/// A running `sshd -D -e -f <scratch>/sshd_config` in its own process group. Its log (`-e`: the
/// listener's and every connection's messages, `LogLevel VERBOSE`) goes to `<scratch>/sshd.log`.
///
/// Dropping it kills the listener's group and every descendant of the listener: each connection's
/// process calls `setsid()`, so the sessions are in process groups of their own.
pub struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    pub config: PathBuf,
    /// Addresses it listens on (127.0.0.1 and the host side of each namespace, v4 and v6).
    pub listen: Vec<IpAddr>,
}

impl Sshd {
    /// Writes the config, a host key and an empty authorized-keys directory into `dir`, and starts
    /// sshd listening on a free port of 127.0.0.1 and of both host-side addresses of every
    /// namespace in `namespaces`; returns once every address is in LISTEN state.
    ///
    /// Authentication: publickey (keys from [`Sshd::authorize`]), password and
    /// keyboard-interactive (Debian ships `KbdInteractiveAuthentication no`; it is on here so that
    /// both PAM paths can be tested), `UsePAM yes` as on Debian, root by key only.
    pub fn start(dir: &Path, namespaces: &[&NetNs]) -> Self {
        let port = free_port();
        let mut listen: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into()];
        for ns in namespaces {
            listen.push(ns.host_v4.into());
            listen.push(ns.host_v6.into());
        }
        let host_key = dir.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            run_ok(
                Command::new("ssh-keygen")
                    .args([
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "monitor-e2e-host",
                        "-f",
                    ])
                    .arg(&host_key),
            );
        }
        let keys = dir.join("authorized_keys");
        fs::create_dir_all(&keys).expect("mkdir authorized_keys");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o755)).expect("chmod");
        let listen_lines: String = listen.iter().fold(String::new(), |mut lines, a| {
            use std::fmt::Write as _;
            let _ = writeln!(lines, "ListenAddress {a}");
            lines
        });
        let d = dir.display();
        let config = format!(
            "# Written by monitor-tests (tests/src/sshd.rs); removed with its scratch directory.\n\
             Port {port}\n\
             AddressFamily any\n\
             {listen_lines}\
             HostKey {d}/ssh_host_ed25519_key\n\
             PidFile {d}/sshd.pid\n\
             # Read from the scratch dir, never ~/.ssh. The dir lives under /tmp (mode 1777), which\n\
             # StrictModes would reject as a parent of the key file.\n\
             AuthorizedKeysFile {d}/authorized_keys/%u\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication yes\n\
             KbdInteractiveAuthentication yes\n\
             UsePAM yes\n\
             PermitRootLogin prohibit-password\n\
             PrintMotd no\n\
             X11Forwarding no\n\
             UseDNS no\n\
             LoginGraceTime 30\n\
             LogLevel VERBOSE\n\
             Subsystem sftp {SFTP_SERVER}\n"
        );
        let config_path = write_file(&dir.join("sshd_config"), &config, 0o644);
        // sshd's privsep chroot (the packaged service's tmpfiles.d / init script make it).
        if !Path::new("/run/sshd").exists() {
            fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config_path)
            .output()
            .expect("run sshd -t");
        assert!(
            check.status.success(),
            "sshd -t rejected {}:\n{config}\n{}",
            config_path.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("sshd.log");
        let log_file = File::create(&log).expect("sshd log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start sshd");
        let mut sshd = Sshd {
            child,
            dir: dir.to_owned(),
            port,
            log,
            config: config_path,
            listen,
        };
        // Polled in /proc/net/tcp{,6} rather than by connecting: a probe connection would be a
        // session attempt of its own in the daemon's events and in traces.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited with {status}:\n{}", sshd.log());
            }
            let listening = listening_sockets();
            if sshd.listen.iter().all(|a| listening.contains(&(*a, port))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sshd does not listen on {:?} port {port}:\n{}",
                sshd.listen,
                sshd.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        sshd
    }

    /// The listener's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything sshd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Appends `key` to `<scratch>/authorized_keys/<user>` (mode 0644: sshd reads it with the
    /// user's effective uid).
    pub fn authorize(&self, user: &str, key: &Key) {
        let path = self.dir.join("authorized_keys").join(user);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&key.public);
        text.push('\n');
        write_file(&path, &text, 0o644);
    }

    /// Live descendants of the listener (connection monitors, their children, ...), parents first.
    pub fn descendants(&self) -> Vec<Proc> {
        descendants(self.pid())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions first (they are outside the listener's group), twice in case one forked meanwhile.
        for _ in 0..2 {
            for p in descendants(self.pid()) {
                unsafe { libc::kill(p.pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        let pgid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 now (sshd binds it on every listen address; the namespaces' host-side
/// addresses are new, so nothing else can hold it there).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// (address, port) of every TCP socket in LISTEN state in this network namespace.
fn listening_sockets() -> Vec<(IpAddr, u16)> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // `sl local_address rem_address st ...`; st 0A is LISTEN.
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            let Some((addr, port)) = f[1].split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            if let Some(ip) = parse_proc_addr(addr, v6) {
                out.push((ip, port));
            }
        }
    }
    out
}

/// /proc/net/tcp addresses are the in-memory bytes printed as 32-bit host-order words.
fn parse_proc_addr(hex: &str, v6: bool) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if v6 {
        let b: [u8; 16] = bytes.try_into().ok()?;
        Some(Ipv6Addr::from(b).into())
    } else {
        let b: [u8; 4] = bytes.try_into().ok()?;
        Some(Ipv4Addr::from(b).into())
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.
// ---------------------------------------------------------------------------------------------

/// One process as /proc shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// `/proc/<pid>/cmdline` with NULs as spaces: sshd's process titles (`sshd: monitortest [priv]`).
    pub cmdline: String,
}

impl Proc {
    pub fn read(pid: u32) -> Option<Self> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`: comm may contain spaces and parentheses.
        let ppid = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " ")
            .trim_end()
            .to_string();
        Some(Proc {
            pid,
            ppid,
            uid,
            cmdline,
        })
    }
}

/// Every live process, unordered.
pub fn processes() -> Vec<Proc> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(Proc::read)
        .collect()
}

/// Live descendants of `root` (not `root` itself), parents before their children.
pub fn descendants(root: u32) -> Vec<Proc> {
    let all = processes();
    let mut out: Vec<Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            frontier.push(p.pid);
            out.push(p.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------------

/// How a client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `-i <key> -o IdentitiesOnly=yes -o BatchMode=yes`, publickey only.
    Key(Key),
    /// The `password` method, typed by `sshpass -e`.
    Password(String),
    /// The `keyboard-interactive` method (PAM's prompt answered by `sshpass -e`).
    KbdInteractive(String),
}

/// What one client run ended with.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The run was killed after [`CLIENT_TIMEOUT`].
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Panics with the whole output (and `context`, e.g. the sshd log) unless the run succeeded.
    pub fn assert_ok(&self, what: &str, context: &str) -> &Self {
        assert!(self.success(), "{what} failed: {self:#?}\n{context}");
        self
    }
}

/// `ssh`/`sftp` from inside `ns` to `user@<host side of ns>:<sshd port>`.
#[derive(Clone)]
pub struct Client<'a> {
    pub ns: &'a NetNs,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    /// Connect to the namespace's host-side IPv6 address instead of its IPv4 one.
    pub v6: bool,
}

impl<'a> Client<'a> {
    pub fn new(ns: &'a NetNs, sshd: &Sshd, user: &str, auth: Auth) -> Self {
        Client {
            ns,
            port: sshd.port(),
            user: user.into(),
            auth,
            v6: false,
        }
    }

    /// The same client over IPv6.
    #[must_use]
    pub fn over_v6(mut self) -> Self {
        self.v6 = true;
        self
    }

    /// `ssh host <command>`: a session without a pty.
    pub fn run(&self, command: &str) -> Output {
        let mut cmd = self.ssh();
        cmd.arg(self.destination(false)).arg(command);
        Self::finish(cmd, None)
    }

    /// `ssh -tt host` with `stdin` typed into the remote login shell (e.g. `"id\nexit\n"`).
    pub fn pty(&self, stdin: &str) -> Output {
        let mut cmd = self.ssh();
        cmd.arg("-tt").arg(self.destination(false));
        Self::finish(cmd, Some(stdin))
    }

    /// `ssh -tt host <command>`: a command on a pty.
    pub fn pty_run(&self, command: &str) -> Output {
        let mut cmd = self.ssh();
        cmd.arg("-tt").arg(self.destination(false)).arg(command);
        Self::finish(cmd, Some(""))
    }

    /// `sftp -b <dir>/sftp.batch host` with `batch` (e.g. `"ls /tmp\n"`) as the batch file.
    pub fn sftp(&self, dir: &Path, batch: &str) -> Output {
        let batch_file = write_file(&dir.join("sftp.batch"), batch, 0o644);
        let mut cmd = self.wrapped("sftp");
        cmd.args(self.options())
            .arg("-P")
            .arg(self.port.to_string());
        cmd.arg("-b").arg(&batch_file).arg(self.destination(true));
        Self::finish(cmd, None)
    }

    /// `ssh -N host`, returned once the session is established (see [`OpenSession`]).
    pub fn open_no_command(&self, sshd: &Sshd) -> OpenSession {
        let mut cmd = self.ssh();
        cmd.arg("-N").arg(self.destination(false));
        let before: Vec<u32> = sshd.descendants().iter().map(|p| p.pid).collect();
        let run = Running::spawn(cmd, None);
        let user = lookup_uid(&self.user);
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            if run.exited() {
                let out = run.reap(false);
                panic!(
                    "ssh -N exited before its session was up: {out:#?}\n{}",
                    sshd.log()
                );
            }
            if let Some(s) = find_session(sshd, &before, user) {
                return OpenSession {
                    run: Some(run),
                    monitor: s.0,
                    user_child: s.1,
                };
            }
            if Instant::now() > deadline {
                let out = run.kill();
                panic!(
                    "ssh -N: no session after {CLIENT_TIMEOUT:?}: {out:#?}\n{}",
                    sshd.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn destination(&self, bracket_v6: bool) -> String {
        match self.ns.host_addr(self.v6) {
            IpAddr::V6(a) if bracket_v6 => format!("{}@[{a}]", self.user),
            a => format!("{}@{a}", self.user),
        }
    }

    fn ssh(&self) -> Command {
        let mut cmd = self.wrapped("ssh");
        cmd.args(self.options())
            .arg("-p")
            .arg(self.port.to_string());
        cmd
    }

    /// `ip netns exec <ns> [sshpass -e] <program>`.
    fn wrapped(&self, program: &str) -> Command {
        match &self.auth {
            Auth::Key(_) => self.ns.command(program),
            Auth::Password(secret) | Auth::KbdInteractive(secret) => {
                let mut cmd = self.ns.command("sshpass");
                // `-e`: the password comes from $SSHPASS, never from the command line.
                cmd.arg("-e").arg(program).env("SSHPASS", secret);
                cmd
            }
        }
    }

    fn options(&self) -> Vec<String> {
        let mut o: Vec<String> = [
            // No ~/.ssh/config, and no ~/.ssh created (ssh makes it only without -F).
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        ]
        .map(String::from)
        .to_vec();
        let method = match &self.auth {
            Auth::Key(key) => {
                o.extend(["-i".into(), key.private.display().to_string()]);
                o.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
                o.extend(["-o".into(), "BatchMode=yes".into()]);
                "publickey"
            }
            Auth::Password(_) => "password",
            Auth::KbdInteractive(_) => "keyboard-interactive",
        };
        o.extend(["-o".into(), format!("PreferredAuthentications={method}")]);
        if !matches!(self.auth, Auth::Key(_)) {
            o.extend(["-o".into(), "PubkeyAuthentication=no".into()]);
            // One try: a wrong password then fails instead of waiting at a second prompt.
            o.extend(["-o".into(), "NumberOfPasswordPrompts=1".into()]);
        }
        o
    }

    fn finish(cmd: Command, stdin: Option<&str>) -> Output {
        Running::spawn(cmd, stdin).wait(CLIENT_TIMEOUT)
    }
}

/// The connection monitor and the user child of a session that appeared after `before` was taken:
/// for a non-root user, the first new descendant of the listener whose real uid is the user's;
/// for root (9.2 turns privsep off for root, so there is no user child), a new monitor whose title
/// no longer carries `[priv]`/`[net]`/`[preauth]`, i.e. `sshd: root@notty` or similar.
fn find_session(sshd: &Sshd, before: &[u32], uid: u32) -> Option<(u32, Option<u32>)> {
    let procs = sshd.descendants();
    let new = |p: &&Proc| !before.contains(&p.pid);
    if uid != 0 {
        let user_child = procs.iter().filter(new).find(|p| p.uid == uid)?;
        return Some((user_child.ppid, Some(user_child.pid)));
    }
    let monitor = procs.iter().filter(new).find(|p| {
        p.ppid == sshd.pid()
            && p.cmdline.starts_with("sshd: root")
            && !["[priv]", "[net]", "[preauth]"]
                .iter()
                .any(|t| p.cmdline.contains(t))
    })?;
    Some((monitor.pid, None))
}

/// A `ssh -N` session that is up; dropping it (or [`OpenSession::close`]) kills the client.
pub struct OpenSession {
    run: Option<Running>,
    /// The connection's monitor, titled `sshd: <user> [priv]` (for root: the session itself).
    pub monitor: u32,
    /// The unprivileged user child (`None` for root).
    pub user_child: Option<u32>,
}

impl OpenSession {
    /// Kills the client and returns what it printed.
    pub fn close(mut self) -> Output {
        self.run.take().expect("running").kill()
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run.kill();
        }
    }
}

/// A client in its own process group (sshpass forks ssh), its output collected by threads.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(mut cmd: Command, stdin: Option<&str>) -> Self {
        cmd.process_group(0)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        if let Some(text) = stdin {
            // Written whole and closed: ssh -tt forwards it to the remote pty, then sends EOF.
            let mut pipe = child.stdin.take().expect("stdin");
            let text = text.to_owned();
            thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for (mut pipe, buf) in [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                stdout.clone(),
            ),
            (
                Box::new(child.stderr.take().expect("stderr")),
                stderr.clone(),
            ),
        ] {
            readers.push(thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }));
        }
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Has the client (our child) exited? Leaves it a zombie (`WNOWAIT`): its pid is also its
    /// process group's id, which must not be reused while [`Running::reap`] kills the group.
    fn exited(&self) -> bool {
        let pid = self.child.id() as libc::pid_t;
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &raw mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        r == 0 && unsafe { info.si_pid() } == pid
    }

    fn wait(self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited() {
                return self.reap(false);
            }
            if Instant::now() > deadline {
                return self.reap(true);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the client if it still runs and returns what it printed.
    fn kill(self) -> Output {
        self.reap(false)
    }

    /// Kills whatever is left of the client's group (ssh under sshpass may outlive sshpass and
    /// hold the pipes), reaps the client and collects its output.
    fn reap(mut self, timed_out: bool) -> Output {
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL));
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text =
            |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
        Output {
            status,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
            timed_out,
        }
    }
}

fn lookup_uid(user: &str) -> u32 {
    TestUser::lookup(user)
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
}

// ---------------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------------

fn write_file(path: &Path, contents: &str, mode: u32) -> PathBuf {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    path.to_owned()
}

fn run_ok(cmd: &mut Command) {
    output_ok(cmd);
}

fn output_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses() {
        // 127.0.0.1 as /proc/net/tcp prints it on a little-endian host.
        let lo = if cfg!(target_endian = "little") {
            "0100007F"
        } else {
            "7F000001"
        };
        assert_eq!(parse_proc_addr(lo, false), Some(Ipv4Addr::LOCALHOST.into()));
        let v6 = if cfg!(target_endian = "little") {
            "0000000000000000FFFF00000100007F"
        } else {
            "00000000000000000000FFFF7F000001"
        };
        assert_eq!(
            parse_proc_addr(v6, true),
            Some("::ffff:127.0.0.1".parse::<IpAddr>().unwrap())
        );
    }
}
