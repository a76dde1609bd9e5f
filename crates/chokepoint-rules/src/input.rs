//! Reading the compiler's inputs: the policy, its lists, an artifact.
//!
//! Only regular files are read. A FIFO, a device or a directory given as a
//! list path would block a reload forever (a FIFO with no writer) or feed
//! it without end (`/dev/zero`); the file's type is checked before it is
//! opened, so neither can happen.

use std::path::Path;

use crate::Error;

/// The whole of the regular file at `path`, or an error naming it.
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
    let source = |reason: String| Error::Source {
        file: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| source(e.to_string()))?;
    if !meta.is_file() {
        return Err(source(format!(
            "not a regular file (a {}); lists, policies and artifacts must be regular files",
            kind(&meta.file_type())
        )));
    }
    std::fs::read(path).map_err(|e| source(e.to_string()))
}

/// The policy text at `path`.
pub fn read_text(path: &Path) -> Result<String, Error> {
    String::from_utf8(read(path)?).map_err(|e| Error::Source {
        file: path.display().to_string(),
        reason: format!(
            "not valid UTF-8 at byte {}; a policy is UTF-8 text",
            e.utf8_error().valid_up_to()
        ),
    })
}

fn kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}
