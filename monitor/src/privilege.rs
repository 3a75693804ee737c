//! Least privilege: once the eBPF programs are attached, their maps opened and the outputs
//! opened, the daemon keeps only the capabilities it needs to keep running ([`KEPT`]) in every
//! set (bounding, permitted, effective; inheritable and ambient emptied) and sets
//! `no_new_privs`. docs/security.md says why each one stays and why the others can go.
//!
//! Capabilities belong to a thread, not to the process: the drop must happen while the daemon
//! is a single thread, so that every thread started afterwards (the output writer, the list-file
//! watcher) inherits the reduced sets. [`drop_privileges`] refuses to run otherwise.
//!
//! The `caps` crate makes the `capget`/`capset`/`prctl` calls (it knows the kernel's capability
//! numbers and the v3 capability ABI); `no_new_privs` is one `prctl` through libc.

use caps::{CapSet, Capability, CapsHashSet};
use log::{info, warn};

/// What the running daemon still needs (docs/security.md):
/// - `CAP_SYS_PTRACE`: `/proc/<pid>/exe`, `/proc/<pid>/fd/*` and `/proc/<pid>/ns/*` of processes
///   of other users, of non-dumpable ones (sshd's session processes) and of those holding
///   capabilities we do not (every root daemon, once ours are dropped) pass a ptrace access
///   check (`proc_fd_access_allowed`, `ptrace_may_access` in `PTRACE_MODE_READ_FSCREDS`);
/// - `CAP_DAC_READ_SEARCH`: listing another user's `/proc/<pid>/fd` (mode 0500) and reading the
///   executable a process runs when its owner made it unreadable to others (a copied shell
///   `chmod 700` by www-data is still known by its content).
pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "the daemon has {0} threads: capabilities are dropped per thread, so this must happen before any other thread starts"
    )]
    Threads(usize),
    #[error("cannot change the capability sets: {0}")]
    Caps(#[from] caps::errors::CapsError),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
}

/// The capabilities the daemon holds after [`drop_privileges`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remaining {
    pub permitted: Vec<String>,
    pub bounding: Vec<String>,
}

/// Drops every capability but [`KEPT`] from every set of this (the only) thread and sets
/// `no_new_privs`. Capabilities of [`KEPT`] the daemon did not have are not gained (it then works
/// with less, e.g. processes of other users without their executable).
pub fn drop_privileges() -> Result<Remaining, PrivilegeError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(PrivilegeError::Threads(threads));
    }
    let keep: CapsHashSet = KEPT.into_iter().collect();
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with the rest.
    // Without CAP_SETPCAP (a supervisor already gave us a small bounding set) it stays as given.
    let can_setpcap = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)?;
    let bounding = caps::read(None, CapSet::Bounding)?;
    if can_setpcap {
        for cap in bounding.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)?;
        }
    } else if !bounding.is_subset(&keep) {
        warn!("no CAP_SETPCAP: the capability bounding set stays as the daemon was started with");
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = permitted.intersection(&keep).copied().collect();
    for cap in keep.difference(&kept) {
        warn!("{cap} was not granted: /proc of other users' processes may be unreadable");
    }
    // Effective before permitted: the effective set must stay a subset of the permitted one.
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    set_no_new_privs()?;
    let remaining = Remaining {
        permitted: names(&caps::read(None, CapSet::Permitted)?),
        bounding: names(&caps::read(None, CapSet::Bounding)?),
    };
    info!(
        "privileges dropped: capabilities {:?} kept (bounding set {:?}), no_new_privs set",
        remaining.permitted, remaining.bounding
    );
    Ok(remaining)
}

fn set_no_new_privs() -> Result<(), PrivilegeError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn names(set: &CapsHashSet) -> Vec<String> {
    let mut names: Vec<String> = set.iter().map(ToString::to_string).collect();
    names.sort();
    names
}

/// This process's threads (`/proc/self/task`); 0 when it cannot be read.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_capabilities_are_the_documented_ones() {
        let doc = include_str!("../../docs/security.md");
        for cap in KEPT {
            assert!(
                doc.contains(&cap.to_string()),
                "{cap} not in docs/security.md"
            );
        }
    }

    #[test]
    fn refuses_to_drop_with_other_threads_running() {
        // A second thread for sure (libtest may run this on its main thread): the test process
        // must keep its capabilities.
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || parked.recv());
        let result = drop_privileges();
        drop(stop);
        let _ = other.join();
        match result {
            Err(PrivilegeError::Threads(n)) => assert!(n >= 2),
            other => panic!("{other:?}"),
        }
    }
}
