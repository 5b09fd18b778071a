//! Container logs: one file per container instance, written by the process itself
//! (append mode, so the log outlives a server restart), bounded by rotation, with the
//! previous instance's log kept after a restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest size of one log file before it rotates.
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// The current instance's log.
pub fn current(dir: &Path) -> PathBuf {
    dir.join("current.log")
}

/// The rotated-out part of the current instance's log.
fn rotated(dir: &Path) -> PathBuf {
    dir.join("current.1.log")
}

/// The previous instance's log.
pub fn previous(dir: &Path) -> PathBuf {
    dir.join("previous.log")
}

/// Opens the current log for a new process (append, created if missing).
pub fn open_current(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(current(dir))
}

/// At a restart: the current log (with its rotated part) becomes the previous one.
pub fn rotate_to_previous(dir: &Path) {
    let mut text = std::fs::read(rotated(dir)).unwrap_or_default();
    text.extend(std::fs::read(current(dir)).unwrap_or_default());
    let _ = std::fs::write(previous(dir), text);
    let _ = std::fs::remove_file(rotated(dir));
    let _ = std::fs::write(current(dir), b"");
}

/// Keeps the current log bounded: past [`MAX_LOG_BYTES`] its content moves to the
/// rotated file (replacing an older one) and the file is truncated in place. The process
/// writes in append mode, so its next write lands at the new end.
pub fn rotate_if_large(dir: &Path) {
    let path = current(dir);
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    if meta.len() <= MAX_LOG_BYTES {
        return;
    }
    if std::fs::copy(&path, rotated(dir)).is_ok()
        && let Ok(file) = OpenOptions::new().write(true).open(&path)
    {
        let _ = file.set_len(0);
    }
}

/// The log of the current instance (rotated part first), or of the previous one.
pub fn read(dir: &Path, previous_instance: bool) -> std::io::Result<Vec<u8>> {
    if previous_instance {
        return std::fs::read(previous(dir));
    }
    let mut text = std::fs::read(rotated(dir)).unwrap_or_default();
    text.extend(std::fs::read(current(dir))?);
    Ok(text)
}

/// Reads what was appended to the current log since `offset`; returns the new offset.
/// A truncated (rotated) file restarts from its beginning.
pub fn read_from(dir: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = File::open(current(dir))?;
    let len = file.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let end = start + buf.len() as u64;
    Ok((buf, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_bounds_the_log_and_keeps_the_previous_instance() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = open_current(dir.path()).unwrap();
        f.write_all(b"first run\n").unwrap();
        rotate_to_previous(dir.path());
        let mut f2 = open_current(dir.path()).unwrap();
        f2.write_all(b"second run\n").unwrap();
        assert_eq!(read(dir.path(), true).unwrap(), b"first run\n");
        assert_eq!(read(dir.path(), false).unwrap(), b"second run\n");

        let big = vec![b'x'; (MAX_LOG_BYTES + 1) as usize];
        f2.write_all(&big).unwrap();
        rotate_if_large(dir.path());
        assert_eq!(std::fs::metadata(current(dir.path())).unwrap().len(), 0);
        f2.write_all(b"after\n").unwrap();
        let all = read(dir.path(), false).unwrap();
        assert!(all.ends_with(b"after\n"));
        assert_eq!(
            std::fs::metadata(current(dir.path())).unwrap().len(),
            6,
            "append mode writes at the new end"
        );
    }
}
