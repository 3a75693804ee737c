//! The SSH harness itself (tests/src/sshd.rs), without the daemon: the real Debian sshd in a
//! scratch configuration, and every kind of client session the login detection will be tested
//! with, each checked for behaving as OpenSSH should.
//!
//! Needs root (sshd, network namespaces, `useradd`), and the packages openssh-server,
//! openssh-client and sshpass (`cargo xtask bootstrap` installs them). Creates the local user
//! `monitortest` when missing and leaves it, password locked.
//!
//! Run: `cargo test -p monitor-tests --test sshd_harness -- --test-threads=1 --nocapture`

use std::{fs, thread, time::Duration};

use monitor_tests::{
    privileged,
    sshd::{Auth, Client, Key, NetNs, Proc, Scratch, Sshd, TestUser, descendants},
};

#[test]
fn sshd_harness_sessions_work() {
    if !privileged("sshd_harness_sessions_work") {
        return;
    }
    let scratch = Scratch::new("sshd-harness");
    let user = TestUser::ensure();
    let trusted = NetNs::create();
    let untrusted = NetNs::create();
    assert_ne!(trusted.ns_v4, untrusted.ns_v4);
    assert_ne!(trusted.ns_v6, untrusted.ns_v6);

    let sshd = Sshd::start(scratch.dir(), &[&trusted, &untrusted]);
    let user_key = Key::generate(scratch.dir(), "user_key");
    let root_key = Key::generate(scratch.dir(), "root_key");
    let wrong_key = Key::generate(scratch.dir(), "wrong_key");
    sshd.authorize(&user.name, &user_key);
    sshd.authorize("root", &root_key);
    let log = || format!("sshd log:\n{}", sshd.log());
    let uid_of = |u: u32| format!("uid={u}(");
    let as_user = Client::new(&trusted, &sshd, &user.name, Auth::Key(user_key.clone()));

    // A command, from each namespace, over IPv4 and IPv6.
    for (ns, v6) in [(&trusted, false), (&trusted, true), (&untrusted, false)] {
        let mut c = Client::new(ns, &sshd, &user.name, Auth::Key(user_key.clone()));
        if v6 {
            c = c.over_v6();
        }
        let out = c.run("id; echo SSH_CONNECTION=$SSH_CONNECTION");
        out.assert_ok("ssh host id", &log());
        assert!(out.stdout.contains(&uid_of(user.uid)), "{out:#?}");
        let source = if v6 {
            ns.ns_v6.to_string()
        } else {
            ns.ns_v4.to_string()
        };
        assert!(
            out.stdout.contains(&format!("SSH_CONNECTION={source} ")),
            "the session must see the namespace's own source address: {out:#?}"
        );
    }
    assert!(
        sshd.log().contains(&format!(
            "Accepted publickey for {} from {}",
            user.name, untrusted.ns_v4
        )),
        "{}",
        log()
    );

    // A login shell on a pty, and a command on a pty.
    let out = as_user.pty("id\nexit\n");
    out.assert_ok("ssh -tt host (login shell)", &log());
    assert!(out.stdout.contains(&uid_of(user.uid)), "{out:#?}");
    let out = as_user.pty_run("echo hi; tty");
    out.assert_ok("ssh -tt host 'echo hi'", &log());
    assert!(out.stdout.contains("hi"), "{out:#?}");
    assert!(
        out.stdout.contains("/dev/pts/"),
        "the command must run on a pty: {out:#?}"
    );

    // sftp: a batch `ls` of a directory the test user can read.
    scratch.write("sftp-marker", "x\n");
    let out = as_user.sftp(scratch.dir(), &format!("ls {}\n", scratch.dir().display()));
    out.assert_ok("sftp -b", &log());
    assert!(out.stdout.contains("sftp-marker"), "{out:#?}");

    // -N: a session with no command at all still has the unprivileged user child.
    let session = as_user.open_no_command(&sshd);
    let child = session
        .user_child
        .expect("a non-root session has a user child");
    let child = Proc::read(child).expect("user child alive");
    assert_eq!(child.uid, user.uid, "{child:?}");
    assert!(child.cmdline.starts_with("sshd: "), "{child:?}");
    let monitor = Proc::read(session.monitor).expect("monitor alive");
    assert_eq!(monitor.uid, 0, "{monitor:?}");
    assert_eq!(monitor.ppid, sshd.pid(), "{monitor:?}");
    assert!(monitor.cmdline.contains("[priv]"), "{monitor:?}");
    session.close();
    wait_no_sessions(&sshd);

    // A key that is not authorized is refused.
    let out = Client::new(&trusted, &sshd, &user.name, Auth::Key(wrong_key.clone())).run("id");
    assert!(
        !out.success() && !out.timed_out,
        "wrong key must fail: {out:#?}"
    );
    assert_eq!(out.status.code(), Some(255), "{out:#?}");
    assert!(out.stderr.contains("Permission denied"), "{out:#?}");
    assert!(!out.stdout.contains("uid="), "{out:#?}");

    // root by key: a command, a pty, sftp.
    let as_root = Client::new(&trusted, &sshd, "root", Auth::Key(root_key.clone()));
    let out = as_root.run("id");
    out.assert_ok("ssh root@host id", &log());
    assert!(out.stdout.contains("uid=0(root)"), "{out:#?}");
    let out = as_root.pty("id\nexit\n");
    out.assert_ok("ssh -tt root@host", &log());
    assert!(out.stdout.contains("uid=0(root)"), "{out:#?}");
    let out = as_root.sftp(scratch.dir(), &format!("ls {}\n", scratch.dir().display()));
    out.assert_ok("sftp root@host", &log());
    assert!(out.stdout.contains("sftp-marker"), "{out:#?}");
    // root -N: OpenSSH 9.2 turns privilege separation off for root, so the monitor itself is the
    // session and there is no user child.
    let session = as_root.open_no_command(&sshd);
    assert_eq!(session.user_child, None);
    let monitor = Proc::read(session.monitor).expect("root session alive");
    assert_eq!((monitor.uid, monitor.ppid), (0, sshd.pid()), "{monitor:?}");
    assert!(monitor.cmdline.starts_with("sshd: root"), "{monitor:?}");
    session.close();
    wait_no_sessions(&sshd);
    // root with the user's key is refused (only root's own key is in authorized_keys/root).
    let out = Client::new(&trusted, &sshd, "root", Auth::Key(user_key.clone())).run("id");
    assert!(
        !out.success() && out.stderr.contains("Permission denied"),
        "{out:#?}"
    );

    // Password and keyboard-interactive, through PAM (pam_unix), with a password that exists only
    // for the duration of this block.
    {
        let password = user.with_password();
        for auth in [
            Auth::Password(password.secret.clone()),
            Auth::KbdInteractive(password.secret.clone()),
        ] {
            let c = Client::new(&trusted, &sshd, &user.name, auth.clone());
            let out = c.run("id");
            out.assert_ok(&format!("ssh with {auth:?}"), &log());
            assert!(out.stdout.contains(&uid_of(user.uid)), "{out:#?}");
        }
        let method = |auth: &Auth| match auth {
            Auth::Password(_) => "password",
            _ => "keyboard-interactive/pam",
        };
        for auth in [
            Auth::Password(format!("{}-wrong", password.secret)),
            Auth::KbdInteractive(format!("{}-wrong", password.secret)),
        ] {
            let c = Client::new(&trusted, &sshd, &user.name, auth.clone());
            let out = c.run("id");
            assert!(
                !out.success() && !out.timed_out,
                "wrong password must fail: {out:#?}"
            );
            assert!(!out.stdout.contains("uid="), "{out:#?}");
            assert!(
                sshd.log()
                    .contains(&format!("Failed {} for {}", method(&auth), user.name)),
                "{}",
                log()
            );
        }
        let accepted = sshd.log();
        assert!(
            accepted.contains(&format!("Accepted password for {}", user.name)),
            "{}",
            log()
        );
        assert!(
            accepted.contains(&format!(
                "Accepted keyboard-interactive/pam for {}",
                user.name
            )),
            "{}",
            log()
        );
    }
    // The password is gone again: the same method now fails.
    let shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
    let hash = shadow
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{}:", user.name))?
                .split(':')
                .next()
        })
        .expect("shadow entry");
    assert!(
        hash.starts_with('!') || hash == "*",
        "password not restored: {hash:?}"
    );

    wait_no_sessions(&sshd);
}

/// Waits until the listener has no descendants left (every session ended with its client).
fn wait_no_sessions(sshd: &Sshd) {
    for _ in 0..250 {
        if descendants(sshd.pid()).is_empty() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "sessions left behind: {:#?}\n{}",
        sshd.descendants(),
        sshd.log()
    );
}
