//! Sizes of directory trees, for tests that measure what a store keeps on
//! disk. Its own module, so that a test binary that does not include the
//! whole of `tests/common` can include this file by path.

// Each test crate that includes this uses one of the two.
#![allow(dead_code)]

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of every file below `dir`, by their lengths (0 if it does not exist).
pub fn disk_usage(dir: &Path) -> u64 {
    usage(dir, Metadata::len)
}

/// Bytes allocated on disk to every file below `dir` (its 512-byte blocks: a
/// file shared by hard links counts once per link, holes not at all).
pub fn allocated(dir: &Path) -> u64 {
    usage(dir, |m| m.blocks() * 512)
}

fn usage(dir: &Path, size: fn(&Metadata) -> u64) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                total += size(&meta);
            }
        }
    }
    total
}
