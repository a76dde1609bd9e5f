//! What a lab created, kept in its state directory so that `down` removes
//! exactly that and nothing else.
//!
//! The directory (`/run/chokepoint/lab/NAME` unless `CHOKEPOINT_LAB_DIR`
//! says otherwise) is made with `create_dir`, which fails if it exists:
//! two `up`s of one lab cannot both proceed. `lab.json` is rewritten after
//! every step of `up`, so a lab that failed half-way can still be taken
//! down.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::procs::Proc;

/// The environment variable that moves every lab's state directory.
pub const DIR_ENV: &str = "CHOKEPOINT_LAB_DIR";
/// Where labs keep their state by default.
pub const DEFAULT_DIR: &str = "/run/chokepoint/lab";

/// The directory holding every lab's state directory.
pub fn root() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// One lab's state directory.
pub fn dir_of(name: &str) -> PathBuf {
    root().join(name)
}

/// Everything a lab made and runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// Unix time it was made.
    pub created: u64,
    /// Seconds its processes live.
    pub lifetime: u64,
    /// Namespaces it created, in order.
    pub namespaces: Vec<String>,
    /// Processes it started.
    pub procs: Vec<Proc>,
    /// The policy the engine enforces (a copy the engine watches: `apply`
    /// replaces it).
    pub policy: PathBuf,
    /// Where the policy came from.
    pub policy_source: String,
    /// The scenario the lab was made for, if any.
    pub scenario: Option<String>,
    /// Names the lab's resolver answers with a host address of their own
    /// (a scenario's stand-ins for real addresses).
    pub hosts: BTreeMap<String, Ipv4Addr>,
    /// The events file.
    pub events: PathBuf,
    /// The lab CA's certificate (PEM), to trust in clients.
    pub ca: PathBuf,
}

impl LabState {
    /// The state directory.
    pub fn dir(&self) -> PathBuf {
        dir_of(&self.name)
    }

    /// Write `lab.json` (temp file, then rename).
    pub fn save(&self) -> Result<()> {
        let dir = self.dir();
        let tmp = dir.join("lab.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("lab.json"))
            .with_context(|| format!("writing {}/lab.json", dir.display()))
    }

    /// Read the state of the lab called `name`.
    pub fn load(name: &str) -> Result<LabState> {
        let path = dir_of(name).join("lab.json");
        let text = std::fs::read(&path)
            .with_context(|| format!("no lab called {name:?} is up (no {})", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// The process doing `what`, if the lab started one.
    pub fn proc(&self, what: &str) -> Option<&Proc> {
        self.procs.iter().find(|p| p.what == what)
    }
}

/// Make the state directory of a new lab; fails if the lab exists.
pub fn create_dir(name: &str) -> Result<PathBuf> {
    let root = root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let dir = dir_of(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "a lab called {name:?} is up already ({}); `chokepoint lab down --name {name}` first, \
             or choose another --name",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
    }
}

/// The names of the labs with a state directory.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("lab.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Remove a lab's state directory.
pub fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}
