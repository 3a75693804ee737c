//! Which configuration files the daemon believes: the policy and the list files decide what
//! raises an alert and what never does (`trusted_networks`, exceptions, allowed ports), so a file
//! someone other than root can write is a way to blind the monitor. Such files are refused unless
//! `--insecure-config` (docs/security.md).
//!
//! The check is made on the opened file's own metadata (`fstat`), so the file judged is the file
//! read, whatever a rename does in between.

use std::{fs::Metadata, os::unix::fs::MetadataExt as _};

/// How much the daemon trusts its configuration files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Any readable file (`monitor check-policy`, `monitor replay`, `--insecure-config`).
    #[default]
    Any,
    /// Only files owned by root (or by the user the daemon runs as) that neither their group nor
    /// others may write: the daemon's default.
    OwnerOnly,
}

/// Why a file is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "owned by uid {uid}, not root: its owner could change what the monitor reports (make it root's, or start with --insecure-config)"
    )]
    Owner { uid: u32 },
    #[error(
        "writable by its group or by others (mode {mode:04o}): they could change what the monitor reports (chmod go-w, or start with --insecure-config)"
    )]
    Writable { mode: u32 },
}

impl Trust {
    /// Judges an opened file's metadata.
    pub fn check(self, meta: &Metadata) -> Result<(), Untrusted> {
        match self {
            Self::Any => Ok(()),
            // SAFETY: geteuid has no preconditions and cannot fail.
            Self::OwnerOnly => judge(meta.uid(), meta.mode(), unsafe { libc::geteuid() }),
        }
    }
}

fn judge(uid: u32, mode: u32, euid: u32) -> Result<(), Untrusted> {
    if uid != 0 && uid != euid {
        return Err(Untrusted::Owner { uid });
    }
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_or_our_own_files_that_nobody_else_writes() {
        assert_eq!(judge(0, 0o100_644, 0), Ok(()));
        assert_eq!(judge(0, 0o100_600, 0), Ok(()));
        assert_eq!(judge(0, 0o100_444, 1000), Ok(()), "root's file");
        assert_eq!(judge(1000, 0o100_640, 1000), Ok(()), "our own user's file");
        assert_eq!(
            judge(1000, 0o100_644, 0),
            Err(Untrusted::Owner { uid: 1000 })
        );
        assert_eq!(
            judge(0, 0o100_664, 0),
            Err(Untrusted::Writable { mode: 0o664 })
        );
        assert_eq!(
            judge(0, 0o100_646, 0),
            Err(Untrusted::Writable { mode: 0o646 })
        );
        let msg = Untrusted::Writable { mode: 0o666 }.to_string();
        assert!(
            msg.contains("0666") && msg.contains("--insecure-config"),
            "{msg}"
        );
    }

    #[test]
    fn any_trusts_everything() {
        let meta = std::fs::metadata("/").unwrap();
        assert_eq!(Trust::Any.check(&meta), Ok(()));
    }
}
