//! The `[enrichment]` section of the policy: which offline lists describe remote addresses, and
//! the networks the admins log in from. The lists themselves are loaded and reloaded by
//! [`crate::iplist::IpLists`]; every record with a remote address carries what they say
//! ([`super::Enricher`]).
//!
//! ```toml
//! [enrichment]
//! tor_exits = "/var/lib/monitor/tor-exits.txt"      # torbulkexitlist or exit-addresses
//! reputation = "/var/lib/monitor/reputation.csv"    # ip_or_cidr,classification[,name[,tags]]
//! trusted_networks = ["198.51.100.0/24"]            # logins from here never alert
//! [[enrichment.lists]]
//! name = "vpn"
//! path = "/var/lib/monitor/vpn.netset"
//! ```

use std::{os::unix::fs::OpenOptionsExt as _, path::PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    iplist::{IpListsConfig, NamedList},
    netrange::Cidr,
    trust::Trust,
    validate::{self, PolicyError, Source, unspanned},
};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub tor_exits: Option<PathBuf>,
    pub reputation: Option<PathBuf>,
    pub trusted_networks: Vec<Cidr>,
    pub lists: Vec<NamedList>,
}

impl Config {
    /// What [`crate::iplist::IpLists::load`] reads, believing the files `trust` accepts.
    pub fn lists_config(&self, trust: Trust) -> IpListsConfig {
        IpListsConfig {
            tor_exits: self.tor_exits.clone(),
            reputation: self.reputation.clone(),
            lists: self.lists.clone(),
            trusted: self.trusted_networks.clone(),
            trust,
        }
    }

    /// No list and no trusted network: records carry an empty enrichment.
    pub fn is_empty(&self) -> bool {
        self.tor_exits.is_none()
            && self.reputation.is_none()
            && self.lists.is_empty()
            && self.trusted_networks.is_empty()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    tor_exits: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reputation: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_networks: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lists: Option<Vec<Spanned<ListInput>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<Spanned<String>>,
}

const KEY: &str = "enrichment";

impl Config {
    /// Validates the section. A list file must exist and be readable now: the daemon never
    /// starts with a list it cannot read (it is read in full when the daemon starts).
    pub fn validate(
        input: ConfigInput,
        base: Option<&Self>,
        src: &Source<'_>,
    ) -> Result<Self, PolicyError> {
        let base = base.cloned().unwrap_or_default();
        let tor_exits = match &input.tor_exits {
            Some(p) => Some(readable(p, &format!("{KEY}.tor_exits"), src)?),
            None => base.tor_exits,
        };
        let reputation = match &input.reputation {
            Some(p) => Some(readable(p, &format!("{KEY}.reputation"), src)?),
            None => base.reputation,
        };
        let trusted_networks = match &input.trusted_networks {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, c)| validate::cidr(c, &format!("{KEY}.trusted_networks[{i}]"), src))
                .collect::<Result<Vec<_>, _>>()?,
            None => base.trusted_networks,
        };
        let lists = match &input.lists {
            Some(list) => {
                let mut out: Vec<NamedList> = Vec::new();
                for (i, entry) in list.iter().enumerate() {
                    let key = format!("{KEY}.lists[{i}]");
                    let raw = entry.get_ref();
                    let (Some(name), Some(path)) = (&raw.name, &raw.path) else {
                        return Err(src.error(
                            Some(&entry.span()),
                            &key,
                            "a list needs both `name` and `path`",
                        ));
                    };
                    let n = name.get_ref().trim();
                    if n.is_empty() {
                        return Err(src.error(
                            Some(&name.span()),
                            &format!("{key}.name"),
                            "a list name cannot be empty",
                        ));
                    }
                    if out.iter().any(|l| l.name == n) {
                        return Err(src.error(
                            Some(&name.span()),
                            &format!("{key}.name"),
                            format!("list `{n}` is named twice"),
                        ));
                    }
                    out.push(NamedList {
                        name: n.to_owned(),
                        path: readable(path, &format!("{key}.path"), src)?,
                    });
                }
                out
            }
            None => base.lists,
        };
        Ok(Self {
            tor_exits,
            reputation,
            trusted_networks,
            lists,
        })
    }

    pub fn to_input(&self) -> ConfigInput {
        let path = |p: &PathBuf| unspanned(p.display().to_string());
        ConfigInput {
            tor_exits: self.tor_exits.as_ref().map(path),
            reputation: self.reputation.as_ref().map(path),
            trusted_networks: Some(
                self.trusted_networks
                    .iter()
                    .map(|c| unspanned(c.to_string()))
                    .collect(),
            ),
            lists: Some(
                self.lists
                    .iter()
                    .map(|l| {
                        unspanned(ListInput {
                            name: Some(unspanned(l.name.clone())),
                            path: Some(path(&l.path)),
                        })
                    })
                    .collect(),
            ),
        }
    }
}

/// An absolute path to a regular file we can open.
fn readable(p: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<PathBuf, PolicyError> {
    let text = p.get_ref();
    let bad = |message: String| src.error(Some(&p.span()), key, message);
    if !text.starts_with('/') {
        return Err(bad(format!("`{text}` is not an absolute path")));
    }
    let path = PathBuf::from(text);
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path);
    match opened.and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(bad(format!("{text}: not a regular file"))),
        Err(e) => Err(bad(format!("{text}: cannot read IP list: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use crate::{policy::Policy, testing::TempDir};

    fn err(text: &str) -> String {
        match Policy::from_toml_str(text, "policy.toml") {
            Ok(p) => panic!("expected an error for:\n{text}\ngot {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn list_files_must_be_readable_absolute_paths() {
        let e = err("[enrichment]\ntor_exits = \"/nonexistent/tor.txt\"\n");
        assert!(
            e.starts_with("policy.toml:2:13: enrichment.tor_exits: /nonexistent/tor.txt: cannot read IP list: "),
            "{e}"
        );
        let e = err("[enrichment]\nreputation = \"rep.csv\"\n");
        assert!(
            e.starts_with(
                "policy.toml:2:14: enrichment.reputation: `rep.csv` is not an absolute path"
            ),
            "{e}"
        );
        let e = err("[enrichment]\ntor_exits = \"/tmp\"\n");
        assert!(e.contains("not a regular file"), "{e}");
        let e = err("[enrichment]\ntrusted_networks = [\"10.0.0.1/8\"]\n");
        assert!(
            e.starts_with("policy.toml:2:21: enrichment.trusted_networks[0]: bad CIDR"),
            "{e}"
        );
        let e = err("[enrichment]\nfeeds = []\n");
        assert!(e.contains("unknown field `feeds`"), "{e}");
    }

    /// Seen while writing the policy fuzz target, which reaches this check: a list path was
    /// opened before its type was looked at, and opening a FIFO for reading blocks until a
    /// writer comes, so a policy naming one hung the daemon's start (and `check-policy`). A FIFO
    /// is refused without being opened.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = TempDir::new();
        let fifo = dir.path().join("tor.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let text = format!("[enrichment]\ntor_exits = \"{}\"\n", fifo.display());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(err(&text)));
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the policy check returns instead of blocking on the FIFO");
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn named_lists_need_a_unique_name_and_a_path() {
        let dir = TempDir::new();
        let file = dir.path().join("vpn.netset");
        std::fs::write(&file, "192.0.2.0/24\n").unwrap();
        let path = file.display();
        let e = err("[[enrichment.lists]]\nname = \"vpn\"\n");
        assert!(
            e.starts_with("policy.toml:")
                && e.contains("enrichment.lists[0]: a list needs both `name` and `path`"),
            "{e}"
        );
        let e = err(&format!(
            "[[enrichment.lists]]\nname = \"vpn\"\npath = \"{path}\"\n[[enrichment.lists]]\nname = \"vpn\"\npath = \"{path}\"\n"
        ));
        assert!(
            e.starts_with("policy.toml:5:8: enrichment.lists[1].name: list `vpn` is named twice"),
            "{e}"
        );
        let p = Policy::from_toml_str(
            &format!(
                "[enrichment]\ntor_exits = \"{path}\"\ntrusted_networks = [\"198.51.100.0/24\"]\n[[enrichment.lists]]\nname = \"vpn\"\npath = \"{path}\"\n"
            ),
            "policy.toml",
        )
        .expect("valid");
        assert_eq!(p.enrichment.tor_exits.as_deref(), Some(file.as_path()));
        assert_eq!(p.enrichment.lists[0].name, "vpn");
        // The effective policy names the same files.
        let back =
            Policy::from_toml_str(&p.to_effective_toml(), "effective.toml").expect("round trip");
        assert_eq!(back, p);
        assert!(Policy::embedded_default().enrichment.is_empty());
    }
}
