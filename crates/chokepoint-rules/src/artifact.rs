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

/// Write an artifact atomically: to a temporary file beside it, then rename,
/// so a node reloading on file change never reads half a file.
pub fn save(rs: &Ruleset, path: &std::path::Path) -> Result<u64, crate::Error> {
    let bytes = to_bytes(rs);
    let io = |e: std::io::Error| crate::Error::Source {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(bytes.len() as u64)
}
