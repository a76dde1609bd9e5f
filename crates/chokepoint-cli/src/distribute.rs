//! `run --artifact-url URL --trust KEY`: take rules from a distribution
//! server. The artifact is polled with conditional requests; a new one is
//! fetched with its detached signature (`URL.sig`), verified (trusted key,
//! BLAKE3 of the bytes, ed25519), loaded with every check of the artifact
//! loader, refused if older than the rules in force (a replayed old
//! artifact is a rollback), and only then swapped in. On any failure the
//! rules in force keep serving. The last good artifact and its signature
//! are kept in the cache file (`--artifact PATH`), so a restart while the
//! server is down enforces what was last verified.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chokepoint_rules::outfile::{self, Inputs};
use chokepoint_rules::sign::PublicKey;
use chokepoint_rules::{artifact, Ruleset};
use chokepoint_runtime::bridge::{self, FetchResult, Shared};
use chokepoint_runtime::fetch::{self, Fetched, Limits, Url, Validators};

/// The largest artifact taken from the server.
const MAX_ARTIFACT: u64 = 1 << 30;

/// One distribution source and what the last poll learnt.
pub struct Poller {
    url: Url,
    sig_url: Url,
    trusted: Vec<PublicKey>,
    cache: Option<PathBuf>,
    /// Validators of the artifact in force, for the next conditional GET.
    validators: Option<Validators>,
    /// BLAKE3 of the artifact bytes in force.
    current: Option<blake3::Hash>,
}

/// What a poll brought: nothing new, a failure to fetch, or a candidate.
enum Poll {
    NotModified,
    Error(String),
    Candidate {
        bytes: Arc<Vec<u8>>,
        /// The signature file, or why there is none.
        sig: Result<Arc<Vec<u8>>, String>,
        validators: Validators,
        hash: blake3::Hash,
    },
}

fn limits(max_body: u64) -> Limits {
    Limits {
        io_timeout: Duration::from_secs(30),
        deadline: Duration::from_secs(600),
        max_body,
    }
}

fn sig_ref(s: &Result<Arc<Vec<u8>>, String>) -> Result<&[u8], &str> {
    s.as_ref().map(|b| b.as_slice()).map_err(String::as_str)
}

/// Verify and load a downloaded artifact; refuse one older than the rules
/// in force (`min_created`).
fn accept(
    bytes: &[u8],
    sig: Result<&[u8], &str>,
    trusted: &[PublicKey],
    min_created: Option<u64>,
) -> Result<Ruleset, String> {
    let sig = sig.map_err(|e| format!("refusing an unsigned artifact: {e}"))?;
    let rs = artifact::from_signed_bytes(bytes, sig, trusted)?;
    if let Some(min) = min_created.filter(|&m| rs.meta.created_unix < m) {
        return Err(format!(
            "the artifact was compiled at {} (unix), before the rules in force ({min}): refusing a rollback",
            rs.meta.created_unix
        ));
    }
    Ok(rs)
}

impl Poller {
    /// A poller for `url`, trusting `trusted`, keeping the last good
    /// artifact at `cache`.
    pub fn new(url: &str, trusted: Vec<PublicKey>, cache: Option<PathBuf>) -> Result<Poller> {
        let url = Url::parse(url).map_err(|e| anyhow::anyhow!("--artifact-url: {e}"))?;
        anyhow::ensure!(
            !trusted.is_empty(),
            "--artifact-url needs --trust: a downloaded artifact is taken only when a trusted key signed it"
        );
        Ok(Poller {
            sig_url: url.with_suffix(".sig"),
            url,
            trusted,
            cache,
            validators: None,
            current: None,
        })
    }

    /// The rules to start with: the cached artifact if it verifies, then
    /// one poll of the server, which wins if it brings a newer artifact.
    /// Fails only when neither gives rules.
    pub fn initial(&mut self) -> Result<Ruleset> {
        let mut rules = None;
        if let Some(c) = self.cache.as_ref().filter(|c| c.exists()) {
            match std::fs::read(c).context("reading").and_then(|b| {
                artifact::load_signed(c, &self.trusted)
                    .map(|rs| (b, rs))
                    .map_err(Into::into)
            }) {
                Ok((bytes, rs)) => {
                    tracing::info!(cache = %c.display(), "cached artifact verified");
                    self.current = Some(blake3::hash(&bytes));
                    rules = Some(rs);
                }
                Err(e) => {
                    tracing::warn!(cache = %c.display(), error = %format!("{e:#}"), "cached artifact refused")
                }
            }
        }
        let min_created = rules.as_ref().map(|r: &Ruleset| r.meta.created_unix);
        let failure = match self.poll_once() {
            Poll::NotModified => None,
            Poll::Error(e) => Some(e),
            Poll::Candidate {
                bytes,
                sig,
                validators,
                hash,
            } => match accept(&bytes, sig_ref(&sig), &self.trusted, min_created) {
                Ok(rs) => {
                    self.took(
                        &bytes,
                        sig.as_ref().ok().map(|b| b.as_slice()),
                        validators,
                        hash,
                    );
                    rules = Some(rs);
                    None
                }
                Err(e) => Some(e),
            },
        };
        match (rules, failure) {
            (Some(rs), None) => Ok(rs),
            (Some(rs), Some(e)) => {
                tracing::warn!(error = %e, "the server's artifact was not taken; starting with the cached one");
                Ok(rs)
            }
            (None, Some(e)) => anyhow::bail!("no rules to start with: {e}"),
            (None, None) => anyhow::bail!(
                "no rules to start with: {} answered 304 and there is no cache",
                self.url
            ),
        }
    }

    /// One conditional GET of the artifact and, when it changed, of its
    /// signature.
    fn poll_once(&mut self) -> Poll {
        let body = match fetch::get(&self.url, self.validators.as_ref(), &limits(MAX_ARTIFACT)) {
            Ok(Fetched::NotModified) => return Poll::NotModified,
            Ok(Fetched::Body { bytes, validators }) => (bytes, validators),
            Err(e) => return Poll::Error(e.to_string()),
        };
        let (bytes, validators) = body;
        let hash = blake3::hash(&bytes);
        if Some(hash) == self.current {
            // The server does not do conditional requests, or the file was
            // touched: the same bytes are not a new artifact.
            self.validators = Some(validators);
            return Poll::NotModified;
        }
        let sig = match fetch::get(
            &self.sig_url,
            None,
            &limits(chokepoint_rules::sign::MAX_SIG_BYTES as u64),
        ) {
            Ok(Fetched::Body { bytes, .. }) => Ok(Arc::new(bytes)),
            Ok(Fetched::NotModified) => {
                Err(format!("{}: 304 to an unconditional request", self.sig_url))
            }
            Err(e) if matches!(e.status(), Some(403 | 404 | 410)) => Err(e.to_string()),
            Err(e) => return Poll::Error(e.to_string()),
        };
        Poll::Candidate {
            bytes: Arc::new(bytes),
            sig,
            validators,
            hash,
        }
    }

    /// A candidate took over: remember it and keep it in the cache.
    fn took(
        &mut self,
        bytes: &[u8],
        sig: Option<&[u8]>,
        validators: Validators,
        hash: blake3::Hash,
    ) {
        self.validators = Some(validators);
        self.current = Some(hash);
        if let (Some(c), Some(sig)) = (&self.cache, sig) {
            // Signature first, as `compile --sign` writes them.
            let saved = outfile::replace_with(&artifact::sig_path(c), &Inputs::new(), sig)
                .and_then(|()| outfile::replace_with(c, &Inputs::new(), bytes));
            if let Err(e) = saved {
                tracing::error!(cache = %c.display(), error = %e, "could not keep the new artifact in the cache; a restart would start from the old one");
            }
        }
    }

    /// Poll the server and swap in a new artifact that verifies; counted in
    /// `chokepoint_artifact_fetches_total` (and, for a candidate, the reload
    /// counters).
    pub fn poll(&mut self, shared: &Arc<Shared>, reload_limit: Duration) {
        match self.poll_once() {
            Poll::NotModified => shared.count_fetch(FetchResult::NotModified),
            Poll::Error(e) => {
                shared.count_fetch(FetchResult::Error);
                tracing::warn!(error = %e, "artifact poll failed; the rules in force keep serving");
            }
            Poll::Candidate {
                bytes,
                sig,
                validators,
                hash,
            } => {
                let min_created = Some(shared.rules.load().meta.created_unix);
                let trusted = self.trusted.clone();
                let (b, s) = (bytes.clone(), sig.clone());
                let ok = bridge::reload_within(shared, reload_limit, move || {
                    accept(&b, sig_ref(&s), &trusted, min_created)
                });
                if ok {
                    shared.count_fetch(FetchResult::Updated);
                    tracing::info!(url = %self.url, blake3 = %hash.to_hex(), "new artifact verified and in force");
                    self.took(
                        &bytes,
                        sig.as_ref().ok().map(|b| b.as_slice()),
                        validators,
                        hash,
                    );
                } else {
                    shared.count_fetch(FetchResult::Refused);
                }
            }
        }
    }
}

/// Poll every `interval` (or at once on SIGHUP) from a thread of its own
/// until the bridge stops.
pub fn spawn(
    mut p: Poller,
    shared: Arc<Shared>,
    hup: Arc<AtomicBool>,
    interval: Duration,
    reload_limit: Duration,
) {
    std::thread::spawn(move || {
        let mut last = Instant::now();
        while !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if hup.swap(false, Ordering::Relaxed) || last.elapsed() >= interval {
                p.poll(&shared, reload_limit);
                last = Instant::now();
            }
        }
    });
}
