//! Output files: how every file chokepoint writes (artifacts, events,
//! pass/drop captures, generated captures) is opened, so that an output
//! never destroys an input, never follows a symbolic link, and never loses
//! a write error.
//!
//! The rules, in one place:
//!
//! - An output is a regular file or nothing yet. A symbolic link at the
//!   last component, a device node, a FIFO or a directory is refused: a
//!   ruleset compiled onto `/dev/sda`, or through a link an attacker
//!   planted in a shared directory, does damage no user asked for.
//! - An output that is the same file (device and inode) as one of the
//!   command's [`Inputs`] is refused before anything is opened, as are two
//!   outputs naming one file: today's `replay X --pass-out X` would empty
//!   the capture before reading it.
//! - Files are created mode 0640 (less the umask) with `O_NOFOLLOW`.
//! - Whole files ([`Replacement`]) are written to a temporary file beside
//!   the target, synced, and renamed over it only once complete; a failed
//!   write leaves the old file as it was and removes the temporary one.
//! - Logs ([`AppendLog`]) are appended to, never truncated, and can be
//!   reopened by path after a log rotation.
//! - Every error names the file ([`Named`]).
//!
//! Lives in the rules crate, the lowest one that writes files, so the
//! artifact writer and the command line share it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Ruleset;

/// Mode of every file chokepoint creates: events and artifacts say what a
/// network blocks and who asked for what, not for every local user.
pub const MODE: u32 = 0o640;

/// A file's identity: two paths name one file when these agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// The files a command reads: none of its outputs may be one of them.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    files: Vec<(PathBuf, FileId)>,
}

impl Inputs {
    /// No inputs yet.
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Add an input by path, following links (an input read through a link
    /// is the link's target). A path that names no file is skipped: it
    /// cannot be overwritten, and reading it fails elsewhere.
    pub fn add(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        if let Ok(m) = std::fs::metadata(path) {
            self.files.push((path.to_path_buf(), FileId::of(&m)));
        }
    }

    /// Add the files a ruleset was compiled from: its policy and every list
    /// file the policy names (the bundled default has none on disk).
    pub fn add_ruleset(&mut self, rs: &Ruleset) {
        if rs.meta.policy.path != crate::DEFAULT_POLICY_ORIGIN {
            self.add(&rs.meta.policy.path);
        }
        for s in &rs.meta.sources {
            self.add(&s.path);
        }
    }

    /// The input that is the same file as `m`, if any.
    fn same_as(&self, m: &std::fs::Metadata) -> Option<&Path> {
        let id = FileId::of(m);
        self.files
            .iter()
            .find(|(_, f)| *f == id)
            .map(|(p, _)| p.as_path())
    }

    /// Check every output of a command before any is opened: each may be
    /// written ([`check_target`]) and no two name the same file.
    pub fn check_outputs(&self, outputs: &[&Path]) -> io::Result<()> {
        let mut seen: Vec<(&Path, OutputKey)> = Vec::new();
        for &out in outputs {
            check_target(out, self)?;
            let key = OutputKey::of(out);
            if let Some((first, _)) = seen.iter().find(|(_, k)| *k == key) {
                return Err(refused(format!(
                    "{} and {} are the same file: give each output a file of its own",
                    first.display(),
                    out.display()
                )));
            }
            seen.push((out, key));
        }
        Ok(())
    }
}

/// What makes two output paths one file: the file itself if it exists,
/// else the resolved directory and the name (`a` and `./a`, both new).
#[derive(PartialEq, Eq)]
enum OutputKey {
    File(FileId),
    New(PathBuf),
}

impl OutputKey {
    fn of(p: &Path) -> OutputKey {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            return OutputKey::File(FileId::of(&m));
        }
        let dir = std::fs::canonicalize(parent(p)).unwrap_or_else(|_| parent(p).to_path_buf());
        OutputKey::New(dir.join(p.file_name().unwrap_or_default()))
    }
}

/// The directory a path's last component lives in (`.` for a bare name).
fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// What a non-regular file is, for the refusal.
fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// May `path` be written as an output of a command reading `inputs`? Yes
/// when nothing is there, or a regular file that is none of the inputs.
/// The link itself is examined, not its target.
pub fn check_target(path: &Path, inputs: &Inputs) -> io::Result<()> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(label(path, "examining", e)),
    };
    check_existing(path, &m, inputs)
}

fn check_existing(path: &Path, m: &std::fs::Metadata, inputs: &Inputs) -> io::Result<()> {
    if !m.file_type().is_file() {
        return Err(refused(format!(
            "{}: is {}; outputs are written to regular files only",
            path.display(),
            kind(m)
        )));
    }
    if let Some(input) = inputs.same_as(m) {
        return Err(refused(format!(
            "{} is the same file as the input {}: refusing to overwrite an input",
            path.display(),
            input.display()
        )));
    }
    Ok(())
}

/// Options shared by every open: write, mode 0640, no link followed.
fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).mode(MODE).custom_flags(libc::O_NOFOLLOW);
    o
}

/// `e` with the file and what was being done to it.
fn label(path: &Path, doing: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Open `path` for appending (created if absent), after the checks of
/// [`check_target`]; the opened file is checked again, so a file swapped
/// in between is refused too.
pub fn append(path: &Path, inputs: &Inputs) -> io::Result<File> {
    // Checked before opening: opening a FIFO blocks, a device may act.
    check_target(path, inputs)?;
    let f = options()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| label(path, "opening", e))?;
    let m = f.metadata().map_err(|e| label(path, "examining", e))?;
    check_existing(path, &m, inputs)?;
    Ok(f)
}

/// A writer that names its file in every error, so an error that surfaces
/// far from where the file was opened still says which file.
pub struct Named<W> {
    w: W,
    path: PathBuf,
}

impl<W: Write> Named<W> {
    /// `w`, writing to `path`.
    pub fn new(w: W, path: impl Into<PathBuf>) -> Named<W> {
        Named {
            w,
            path: path.into(),
        }
    }
}

impl<W: Write> Write for Named<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w
            .write(buf)
            .map_err(|e| label(&self.path, "writing", e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush().map_err(|e| label(&self.path, "writing", e))
    }
}

/// Temporary names in one process: the pid keeps processes apart, this
/// keeps two replacements of one process apart.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A whole file written beside its target and renamed over it by
/// [`commit`](Replacement::commit). Dropped without a commit (an error, a
/// panic), it removes the temporary file and leaves the target untouched.
pub struct Replacement {
    target: PathBuf,
    temp: PathBuf,
    inputs: Inputs,
    out: Option<Named<BufWriter<File>>>,
}

impl Replacement {
    /// Check `target` (see [`check_target`]) and create the temporary file
    /// `.NAME.tmp.PID.N` in its directory: exclusively, so no file or link
    /// already there is ever opened.
    pub fn create(target: &Path, inputs: &Inputs) -> io::Result<Replacement> {
        check_target(target, inputs)?;
        let name = target
            .file_name()
            .ok_or_else(|| refused(format!("{}: names no file", target.display())))?;
        let dir = parent(target);
        loop {
            let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
            let temp = dir.join(tmp_name);
            match options().create_new(true).open(&temp) {
                Ok(f) => {
                    return Ok(Replacement {
                        target: target.to_path_buf(),
                        temp,
                        inputs: inputs.clone(),
                        out: Some(Named::new(BufWriter::new(f), target)),
                    })
                }
                // A leftover of a crashed run with our pid: take the next.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1 << 20 => continue,
                Err(e) => return Err(label(&temp, "creating", e)),
            }
        }
    }

    /// Flush, sync, and rename over the target, which must still be absent
    /// or a regular file that is no input.
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("committed once");
        let file = out
            .w
            .into_inner()
            .map_err(|e| label(&self.target, "writing", e.into_error()))?;
        file.sync_all()
            .map_err(|e| label(&self.target, "writing", e))?;
        drop(file);
        check_target(&self.target, &self.inputs)?;
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| label(&self.target, "replacing", e))?;
        // The rename is durable once the directory is: best effort, as
        // some file systems refuse to sync a directory.
        if let Ok(d) = File::open(parent(&self.target)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Write for Replacement {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Write `bytes` as the whole of `target` (see [`Replacement`]).
pub fn replace_with(target: &Path, inputs: &Inputs, bytes: &[u8]) -> io::Result<()> {
    let mut r = Replacement::create(target, inputs)?;
    r.write_all(bytes)?;
    r.commit()
}

/// The first write error of an [`AppendLog`], kept for the end of the
/// command: a live bridge goes on forwarding when its log disk fills up,
/// but must not then exit as if nothing was lost.
#[derive(Clone, Default)]
pub struct FirstError(Arc<Mutex<Option<io::Error>>>);

impl FirstError {
    /// The first error, if one happened (once).
    pub fn take(&self) -> Option<io::Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Keep `e` unless an earlier error is kept; give back its copy.
    fn keep(&self, e: io::Error) -> io::Error {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let copy = io::Error::new(e.kind(), e.to_string());
        if slot.is_none() {
            *slot = Some(e);
        }
        copy
    }
}

/// An append-only log (the events file), reopened by path when asked (a
/// signal handler sets [`reopen_flag`](AppendLog::reopen_flag)), so that
/// logrotate can move it away. Every error names the file and the first
/// is also kept ([`first_error`](AppendLog::first_error)).
pub struct AppendLog {
    path: PathBuf,
    inputs: Inputs,
    out: BufWriter<File>,
    reopen: Arc<AtomicBool>,
    first: FirstError,
}

impl AppendLog {
    /// Open `path` for appending (see [`append`]).
    pub fn open(path: &Path, inputs: &Inputs) -> io::Result<AppendLog> {
        Ok(AppendLog {
            path: path.to_path_buf(),
            inputs: inputs.clone(),
            out: BufWriter::new(append(path, inputs)?),
            reopen: Arc::default(),
            first: FirstError::default(),
        })
    }

    /// Set it to reopen the file by path before the next write.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    /// Where the first write error is kept.
    pub fn first_error(&self) -> FirstError {
        self.first.clone()
    }

    /// Reopen if asked. What the old file still buffers goes to it first.
    /// A reopen that fails is tried again at the next write: the path may
    /// be fixed meanwhile. Errors name the file.
    fn maybe_reopen(&mut self) -> io::Result<()> {
        if !self.reopen.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let flushed = self
            .out
            .flush()
            .map_err(|e| label(&self.path, "writing", e));
        match append(&self.path, &self.inputs) {
            Ok(f) => self.out = BufWriter::new(f),
            Err(e) => {
                self.reopen.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        flushed
    }
}

impl Write for AppendLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.maybe_reopen().and_then(|()| {
            self.out
                .write(buf)
                .map_err(|e| label(&self.path, "writing", e))
        });
        r.map_err(|e| self.first.keep(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.maybe_reopen().and_then(|()| {
            self.out
                .flush()
                .map_err(|e| label(&self.path, "writing", e))
        });
        r.map_err(|e| self.first.keep(e))
    }
}

impl Drop for AppendLog {
    /// A flush that fails here cannot be returned: it is kept instead.
    fn drop(&mut self) {
        if let Err(e) = self.out.flush() {
            self.first.keep(label(&self.path, "writing", e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("chokepoint-outfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A writer whose disk is always full.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn named_errors_say_which_file() {
        let mut w = Named::new(BufWriter::new(Full), "/var/log/events.json");
        writeln!(w, "one line").unwrap(); // buffered
        let e = w.flush().unwrap_err();
        assert!(e.to_string().contains("/var/log/events.json"), "{e}");
        assert_eq!(e.raw_os_error(), None);
        assert_eq!(e.kind(), io::Error::from_raw_os_error(libc::ENOSPC).kind());
    }

    #[test]
    fn an_input_is_never_an_output() {
        let d = dir("input");
        let input = d.join("policy.yaml");
        std::fs::write(&input, "keep me").unwrap();
        let link = d.join("hard");
        std::fs::hard_link(&input, &link).unwrap();
        let mut inputs = Inputs::new();
        inputs.add(&input);
        for out in [&input, &link] {
            let e = Replacement::create(out, &inputs).err().unwrap();
            assert!(e.to_string().contains("policy.yaml"), "{e}");
            assert!(append(out, &inputs).is_err());
        }
        assert_eq!(std::fs::read(&input).unwrap(), b"keep me");
        let e = Inputs::new()
            .check_outputs(&[&d.join("a"), &d.join("./a")])
            .unwrap_err();
        assert!(e.to_string().contains("same file"), "{e}");
    }

    #[test]
    fn links_and_devices_are_refused() {
        let d = dir("links");
        let victim = d.join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let link = d.join("out");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let none = Inputs::new();
        assert!(Replacement::create(&link, &none).is_err());
        assert!(append(&link, &none).is_err());
        for p in [Path::new("/dev/null"), Path::new("/dev/full"), &d] {
            let e = check_target(p, &none).unwrap_err();
            assert!(e.to_string().contains("regular files only"), "{e}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    }

    #[test]
    fn a_replacement_lands_whole_or_not_at_all() {
        let d = dir("replace");
        let target = d.join("rules.chk");
        std::fs::write(&target, "old").unwrap();
        {
            let mut r = Replacement::create(&target, &Inputs::new()).unwrap();
            r.write_all(b"half").unwrap();
            // dropped: an error happened elsewhere
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "temp removed");
        replace_with(&target, &Inputs::new(), b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let mode = target.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
    }

    #[test]
    fn a_log_appends_and_reopens_after_rotation() {
        let d = dir("log");
        let path = d.join("events.json");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut log = AppendLog::open(&path, &Inputs::new()).unwrap();
        writeln!(log, "first").unwrap();
        log.flush().unwrap();
        std::fs::rename(&path, d.join("events.json.1")).unwrap();
        log.reopen_flag().store(true, Ordering::Relaxed);
        writeln!(log, "second").unwrap();
        let first = log.first_error();
        drop(log);
        assert!(first.take().is_none());
        let rotated = std::fs::read_to_string(d.join("events.json.1")).unwrap();
        assert_eq!(rotated, "earlier\nfirst\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
    }

    #[test]
    fn a_log_keeps_its_first_error() {
        let d = dir("logerr");
        let path = d.join("events.json");
        let mut log = AppendLog::open(&path, &Inputs::new()).unwrap();
        // Rotated to a place that is no file: the reopen fails.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        log.reopen_flag().store(true, Ordering::Relaxed);
        assert!(writeln!(log, "lost").is_err());
        let e = log.first_error().take().unwrap();
        assert!(e.to_string().contains("events.json"), "{e}");
    }
}
