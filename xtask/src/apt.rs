//! Debian packages: installs what is missing with apt-get, without letting the packages'
//! maintainer scripts start system-wide services (a temporary policy-rc.d that exits 101; an
//! existing one is left as it is).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::facts::POLICY_RC_D;
use crate::say;
use crate::supervise::{cmd, is_root};

const POLICY_MARK: &str = "# temporary: created by cargo xtask during apt-get install";

/// Removes our temporary policy-rc.d when dropped, also on an early return.
struct PolicyGuard(Option<PathBuf>);

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        if let Some(path) = &self.0
            && fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l == POLICY_MARK))
        {
            let _ = fs::remove_file(path);
        }
    }
}

/// Installs `packages` (none: nothing to do). Needs root.
pub fn install(packages: &[String]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !is_root() {
        bail!(
            "missing packages: {list}. Install them first (sudo apt-get install -y {list}) or run \
             this as root."
        );
    }
    let policy = Path::new(POLICY_RC_D);
    let _guard = if policy.exists() {
        say!("{POLICY_RC_D} already exists; leaving it as it is");
        PolicyGuard(None)
    } else {
        fs::write(policy, format!("#!/bin/sh\n{POLICY_MARK}\nexit 101\n"))
            .with_context(|| format!("cannot write {POLICY_RC_D}"))?;
        fs::set_permissions(policy, fs::Permissions::from_mode(0o755))?;
        say!("created temporary {POLICY_RC_D} so package scripts do not start system services");
        PolicyGuard(Some(policy.to_path_buf()))
    };
    say!("apt-get update");
    let update = cmd("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr())
        .status()?;
    let status = if update.success() {
        say!("apt-get install {list}");
        cmd("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::io::stderr())
            .status()?
    } else {
        update
    };
    if !status.success() {
        bail!(
            "apt-get failed ({status}) installing: {list}. Read the apt output above, fix it, and \
             run again."
        );
    }
    Ok(())
}
