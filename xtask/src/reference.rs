//! Corelight's Community ID reference implementation (the `communityid` package of the Python
//! Package Index), which `monitor/tests/community_id_reference.rs` runs on recorded tuples to
//! check the ids the daemon prints. It lives in a virtual environment under the target directory, so the machine's Python
//! stays untouched, and is pinned so that every machine compares with the same code.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use crate::{cmd, step::Step};

/// The pinned release of the reference.
pub const COMMUNITYID_VERSION: &str = "1.5.0";
/// Debian's Python (python3-venv, in the apt list, gives it `venv` and `ensurepip`), not
/// whichever `python3` a user's PATH finds first.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// What the test reads to find the reference's interpreter; `cargo xtask test` sets it.
pub const ENV: &str = "COMMUNITY_ID_REFERENCE";

/// The virtual environment's directory.
fn venv() -> PathBuf {
    cmd::target_dir().join("community-id-reference")
}

/// The interpreter that has the reference installed.
pub fn python() -> PathBuf {
    venv().join("bin").join("python")
}

/// `Some(version)` when the venv's interpreter runs and imports the pinned release.
fn installed(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, communityid; print(m.version('communityid'))",
        ])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && version == COMMUNITYID_VERSION).then_some(version)
}

/// Creates the venv (when it has none) and installs the pinned release into it with pip.
pub fn ensure() -> Result<Step> {
    let python = python();
    if installed(&python).is_some() {
        return Ok(Step::Present(format!("communityid {COMMUNITYID_VERSION}")));
    }
    if !Path::new(SYSTEM_PYTHON).exists() {
        return Ok(Step::Missing(format!(
            "{SYSTEM_PYTHON} for the Community ID reference (as root: \
             `apt-get install --no-install-recommends python3-venv`)"
        )));
    }
    let dir = venv();
    if !python.exists() {
        let created = cmd::output(Command::new(SYSTEM_PYTHON).arg("-m").arg("venv").arg(&dir));
        if let Err(e) = created {
            return Ok(Step::Missing(format!(
                "a Python venv at {} for the Community ID reference ({e:#}; as root: \
                 `apt-get install --no-install-recommends python3-venv`)",
                dir.display()
            )));
        }
    }
    cmd::run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        &format!("communityid=={COMMUNITYID_VERSION}"),
    ]))?;
    match installed(&python) {
        Some(version) => Ok(Step::Done(format!(
            "installed communityid {version} (Community ID reference) into {}",
            dir.display()
        ))),
        None => anyhow::bail!(
            "pip installed communityid=={COMMUNITYID_VERSION} into {} but it does not import",
            dir.display()
        ),
    }
}
