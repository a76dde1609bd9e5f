//! The artifact format (see [`chokepoint_ruleset::artifact`]) plus the
//! file side: reading one with a file-naming error, and writing one so a
//! node never sees half a file.

pub use chokepoint_ruleset::artifact::*;

use crate::Ruleset;

/// Read and validate an artifact file.
pub fn load(path: &std::path::Path) -> Result<Ruleset, crate::Error> {
    let bytes = crate::input::read(path)?;
    from_bytes(&bytes).map_err(|e| crate::Error::Artifact {
        file: path.display().to_string(),
        source: e,
    })
}

/// Write an artifact atomically: to a temporary file beside it, then
/// rename, so a node reloading on file change never reads half a file.
/// Refused where the target is the policy or one of its lists, or no
/// regular file (see [`crate::outfile`]).
pub fn save(rs: &Ruleset, path: &std::path::Path) -> Result<u64, crate::Error> {
    let bytes = to_bytes(rs);
    let mut inputs = crate::outfile::Inputs::new();
    inputs.add_ruleset(rs);
    crate::outfile::replace_with(path, &inputs, &bytes).map_err(crate::Error::Output)?;
    Ok(bytes.len() as u64)
}

/// Where an artifact's detached signature lives: `PATH.sig`.
pub fn sig_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".sig");
    p.into()
}

/// Check `artifact` (a whole file's bytes) against its signature file by
/// one of `trusted`, then load it with every check of [`from_bytes`]. The
/// signature is checked first, so an unsigned or tampered file is never
/// parsed at all.
pub fn from_signed_bytes(
    artifact: &[u8],
    sig: &[u8],
    trusted: &[crate::sign::PublicKey],
) -> Result<Ruleset, String> {
    crate::sign::verify(artifact, sig, trusted).map_err(|e| e.to_string())?;
    from_bytes(artifact).map_err(|e| e.to_string())
}

/// [`load`] for a signed artifact: `path` and `path.sig`, the signature by
/// one of `trusted` (see [`crate::sign`]).
pub fn load_signed(
    path: &std::path::Path,
    trusted: &[crate::sign::PublicKey],
) -> Result<Ruleset, crate::Error> {
    let bytes = crate::input::read(path)?;
    let sig_file = sig_path(path);
    if !sig_file.exists() {
        return Err(crate::Error::Source {
            file: path.display().to_string(),
            reason: format!(
                "unsigned: no signature {} (sign with `chokepoint compile --sign KEY`)",
                sig_file.display()
            ),
        });
    }
    let sig = crate::input::read(&sig_file)?;
    from_signed_bytes(&bytes, &sig, trusted).map_err(|reason| crate::Error::Source {
        file: path.display().to_string(),
        reason,
    })
}

/// [`save`], signed with `key`: `path.sig` is written first, then the
/// artifact, each whole (temporary file and rename), so a node that reloads
/// when the artifact changes finds its signature already there.
pub fn save_signed(
    rs: &Ruleset,
    path: &std::path::Path,
    key: &crate::sign::SigningKey,
) -> Result<u64, crate::Error> {
    let bytes = to_bytes(rs);
    let mut inputs = crate::outfile::Inputs::new();
    inputs.add_ruleset(rs);
    let sig = sig_path(path);
    inputs
        .check_outputs(&[path, &sig])
        .map_err(crate::Error::Output)?;
    crate::outfile::replace_with(&sig, &inputs, key.sign(&bytes).as_bytes())
        .map_err(crate::Error::Output)?;
    crate::outfile::replace_with(path, &inputs, &bytes).map_err(crate::Error::Output)?;
    Ok(bytes.len() as u64)
}
