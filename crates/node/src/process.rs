//! Container processes: spawned directly (never through a shell) in their own process
//! group, signalled as a group, and recorded in pid files so that a restarted server can
//! find and stop what a killed one left behind.

use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process};

/// Sends `signal` to the process group led by `pid`. A group that is already gone is fine.
pub fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = kill_process_group(pid, signal);
    }
}

/// SIGTERM.
pub const TERM: Signal = Signal::TERM;
/// SIGKILL.
pub const KILL: Signal = Signal::KILL;

/// The start time of a process in clock ticks since boot (`/proc/PID/stat` field 22), which
/// tells a live process from a recycled pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A pid file: `PID START_TIME`.
pub fn write_pid_file(path: &Path, pid: u32) -> std::io::Result<()> {
    let start = start_time(pid).unwrap_or(0);
    std::fs::write(path, format!("{pid} {start}\n"))
}

/// Kills (SIGKILL, whole group) every process recorded in a `*.pid` file under `dir` that
/// is still the same process, and removes the files. Returns how many were killed.
pub fn kill_recorded(dir: &Path) -> usize {
    let mut killed = 0;
    for file in pid_files(dir) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut parts = text.split_whitespace();
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let recorded_start = parts.next().and_then(|s| s.parse::<u64>().ok());
        if let (Some(pid), Some(recorded)) = (pid, recorded_start)
            && start_time(pid) == Some(recorded)
        {
            signal_group(pid, KILL);
            killed += 1;
        }
        let _ = std::fs::remove_file(&file);
    }
    killed
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    Pid::from_raw(pid as i32).is_some_and(|p| test_kill_process(p).is_ok())
}

fn pid_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(pid_files(&path));
        } else if path.extension().is_some_and(|e| e == "pid") {
            out.push(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn recorded_groups_are_killed_and_recycled_pids_spared() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        write_pid_file(&dir.path().join("c.pid"), pid).unwrap();
        // A pid file whose start time does not match is a recycled pid: left alone.
        std::fs::write(
            dir.path().join("stale.pid"),
            format!("{} 1\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(kill_recorded(dir.path()), 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
