//! Staging directories of uploads: `<staging>/modelreg-upload-<pid>-<random>/`.
//!
//! An upload's directory is removed by a drop guard whatever ends the request
//! (success, refusal, a client that went away). Only a process that dies
//! mid-upload leaves one behind; the next server to start over the same
//! staging directory removes those whose process is gone.

use std::path::Path;

/// The prefix of every upload's staging directory.
pub(crate) const PREFIX: &str = "modelreg-upload-";

/// Removes the upload directories in `dir` whose server process no longer
/// runs on this machine; returns how many it removed. Where `/proc` cannot
/// say whether a process runs (macOS), nothing is removed: another live
/// server's upload must never look abandoned.
pub(crate) fn sweep_abandoned(dir: &Path) -> usize {
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if process_gone(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether the process `pid` is known to have ended on this machine: never
/// this process, and never where `/proc` cannot say (macOS), so that another
/// live server's files are never taken for abandoned.
pub(crate) fn process_gone(pid: u32) -> bool {
    pid != std::process::id()
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!("{PREFIX}4294967294-ab12"));
        let mine = dir
            .path()
            .join(format!("{PREFIX}{}-cd34", std::process::id()));
        let other = dir.path().join("something-else");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/f.bin"), b"x").unwrap();
        }
        assert_eq!(sweep_abandoned(dir.path()), 1);
        assert!(!dead.exists());
        assert!(mine.exists() && other.exists());
        assert_eq!(sweep_abandoned(&dir.path().join("missing")), 0);
    }
}
