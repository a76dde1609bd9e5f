//! `chokepoint keygen`: an ed25519 key pair for signing artifacts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chokepoint_rules::sign;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the keys: PREFIX.key (the private key, PKCS#8 PEM,
    /// mode 0600) and PREFIX.pub (the public key, hex). Existing files are
    /// never overwritten.
    prefix: PathBuf,
}

/// `path` created (never replaced) with `mode` and `text` in it.
fn create(path: &Path, mode: u32, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut p = prefix.as_os_str().to_os_string();
    p.push(ext);
    p.into()
}

pub fn run(a: Args) -> Result<()> {
    let (key, public) = sign::generate();
    let (kp, pp) = (with_ext(&a.prefix, ".key"), with_ext(&a.prefix, ".pub"));
    for p in [&kp, &pp] {
        anyhow::ensure!(
            std::fs::symlink_metadata(p).is_err(),
            "{} exists: keygen never overwrites a key",
            p.display()
        );
    }
    create(&kp, 0o600, &key)?;
    create(
        &pp,
        0o644,
        &format!(
            "# chokepoint artifact signing key (ed25519)\n{}\n",
            public.to_hex()
        ),
    )?;
    println!(
        "wrote {} (private, keep it on the compiling host) and {}\npublic key {}",
        kp.display(),
        pp.display(),
        public.to_hex()
    );
    Ok(())
}
