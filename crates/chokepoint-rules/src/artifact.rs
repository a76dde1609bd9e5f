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
