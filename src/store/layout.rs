//! The key layout the persistent stores share.
//!
//! The local-filesystem stores and the object stores name their files and objects
//! the same way, relative to their root, so there is one definition of it:
//!
//! ```text
//! <metadata root>/logs/v1/<log>/records/<seq, 20 digits>.rec
//! <metadata root>/logs/v1/<log>/checkpoints/<seq, 20 digits>.ckpt
//! <metadata root>/leases/v1/<lease>
//! <artifact root>/blobs/v1/blake3/<hex[0..2]>/<hex[2..4]>/<hex>   object stores; local before 0.3
//! <artifact root>/blobs/v2/blake3/<hex[0..2]>/<hex>            local stores (256 shards made once)
//! <artifact root>/recipes/v1/blake3/<hex[0..2]>/<hex[2..4]>/<hex>   a packed file
//! <artifact root>/packs/v1/blake3/<pack hex>.pack                   chunks, back to back
//! <artifact root>/packs/v1/blake3/<pack hex>.idx                    the pack's chunks
//! ```
//!
//! A file is a whole blob or a recipe over packs (see `store::pack`), never
//! both on purpose; readers look for the blob first.
//!
//! Blobs have two layouts. Object stores keep `blobs/v1` (a key is a name, not
//! a directory: two levels of sharding cost nothing there). The local store
//! writes `blobs/v2`: one level of 256 shard directories, all made (and made
//! durable) once, before its first blob, so storing a blob never creates a
//! directory and makes its name durable with one fsync, of its shard. With two
//! levels nearly every new blob of a registry under ~65,000 blobs made one or two
//! directories and fsynced their parents. The local store reads `v2`, then
//! `v1`, so registries written before keep working unchanged (docs/design.md,
//! "Local filesystem layout"). Packs are not sharded:
//! at 32 MiB each, 100 GiB of distinct chunks is about 3,200 packs.
//!
//! Sequence numbers are zero-padded to the width of `u64::MAX`, so names sort
//! lexically in numeric order (which lets an object store list from an offset); no
//! reader relies on a listing coming back sorted.

use super::MetadataItem;
use crate::digest::Digest;

/// Logs, relative to a metadata root.
pub(crate) const LOGS_DIR: &str = "logs/v1";
/// Leases, relative to a metadata root.
pub(crate) const LEASES_DIR: &str = "leases/v1";
/// Blobs, relative to an artifact root: the object stores' layout, and the
/// local store's before 0.3 (still read there).
pub(crate) const BLOBS_DIR: &str = "blobs/v1/blake3";
/// Blobs of the local store, relative to its root: one level of
/// [`SHARDS`] directories.
pub(crate) const LOCAL_BLOBS_DIR: &str = "blobs/v2/blake3";
/// How many shard directories [`LOCAL_BLOBS_DIR`] has: one per first byte.
pub(crate) const SHARDS: usize = 256;
/// Recipes of packed files, relative to an artifact root.
pub(crate) const RECIPES_DIR: &str = "recipes/v1/blake3";
/// Packs and their indexes, relative to an artifact root.
pub(crate) const PACKS_DIR: &str = "packs/v1/blake3";
/// File name suffix of a pack.
pub(crate) const PACK_EXT: &str = ".pack";
/// File name suffix of a pack's index.
pub(crate) const PACK_INDEX_EXT: &str = ".idx";
/// Record files of a log, relative to the log's directory.
pub(crate) const RECORDS: &str = "records";
/// Checkpoint files of a log, relative to the log's directory.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// The directory of a log's checkpoint parts (format 5 checkpoints' segments).
pub(crate) const PARTS: &str = "parts";
/// File name suffix of a record.
pub(crate) const RECORD_EXT: &str = ".rec";
/// File name suffix of a checkpoint.
pub(crate) const CHECKPOINT_EXT: &str = ".ckpt";
/// Digits of a sequence number in a file name: enough for `u64::MAX`.
pub(crate) const SEQ_DIGITS: usize = 20;
/// How many of a log's newest checkpoints are always kept after a new one is
/// written. More than one, so that a reader that has just listed the newest can
/// still open it.
pub(crate) const KEEP_CHECKPOINTS: usize = 2;
/// Into how many windows of equal length (in records) a log's history is cut
/// for the older checkpoints kept (see [`prunable_checkpoints`]).
pub(crate) const CHECKPOINT_WINDOWS: u64 = 256;
/// How often `latest_checkpoint` lists again when the checkpoints it listed were
/// pruned before it could read them.
pub(crate) const CHECKPOINT_READ_ATTEMPTS: usize = 8;

/// `000…0seq<ext>`.
pub(crate) fn seq_file_name(seq: u64, ext: &str) -> String {
    let mut name = String::with_capacity(SEQ_DIGITS + ext.len());
    name.push_str(seq_digits(&mut [0; SEQ_DIGITS], seq));
    name.push_str(ext);
    name
}

/// `seq` zero-padded to [`SEQ_DIGITS`], written into `buf` (no allocation:
/// the local store's probe builds a record's path on every warm query).
pub(crate) fn seq_digits(buf: &mut [u8; SEQ_DIGITS], mut seq: u64) -> &str {
    for b in buf.iter_mut().rev() {
        *b = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
    // ASCII digits only.
    std::str::from_utf8(buf).unwrap_or_default()
}

/// The sequence number in a file name made by [`seq_file_name`], if it is one.
pub(crate) fn parse_seq_file_name(name: &str, ext: &str) -> Option<u64> {
    let digits = name.strip_suffix(ext)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `logs/v1/<log>/records/<seq>.rec` or `logs/v1/<log>/checkpoints/<seq>.ckpt`,
/// relative to a metadata root.
pub(crate) fn metadata_key(log: &str, item: MetadataItem) -> String {
    let (dir, seq, ext) = match item {
        MetadataItem::Record(seq) => (RECORDS, seq, RECORD_EXT),
        MetadataItem::Checkpoint(seq) => (CHECKPOINTS, seq, CHECKPOINT_EXT),
    };
    format!("{LOGS_DIR}/{log}/{dir}/{}", seq_file_name(seq, ext))
}

/// `blobs/v1/blake3/ab/cd/abcd…`, relative to an artifact root.
pub(crate) fn blob_key(digest: &Digest) -> String {
    let hex = digest.to_hex();
    format!("{BLOBS_DIR}/{}/{}/{hex}", &hex[0..2], &hex[2..4])
}

/// `blobs/v2/blake3/ab/abcd…`, relative to a local artifact root.
pub(crate) fn local_blob_key(digest: &Digest) -> String {
    let hex = digest.to_hex();
    format!("{LOCAL_BLOBS_DIR}/{}/{hex}", &hex[0..2])
}

/// The names of the [`SHARDS`] shard directories: `00` to `ff`.
pub(crate) fn shard_names() -> impl Iterator<Item = String> {
    (0..SHARDS).map(|i| format!("{i:02x}"))
}

/// The digest of the blob stored under `<shard>/<name>` in [`LOCAL_BLOBS_DIR`],
/// if these names are exactly what [`local_blob_key`] makes for it.
pub(crate) fn parse_local_blob_name(shard: &str, name: &str) -> Option<Digest> {
    let digest = Digest::from_hex(name).ok()?;
    (digest.to_hex() == name && name[0..2] == *shard).then_some(digest)
}

/// `recipes/v1/blake3/ab/cd/abcd…`, relative to an artifact root: the recipe
/// of a packed file, sharded as blobs are.
pub(crate) fn recipe_key(digest: &Digest) -> String {
    let hex = digest.to_hex();
    format!("{RECIPES_DIR}/{}/{}/{hex}", &hex[0..2], &hex[2..4])
}

/// `packs/v1/blake3/<hex>.pack`, relative to an artifact root.
pub(crate) fn pack_key(pack: &Digest) -> String {
    format!("{PACKS_DIR}/{}{PACK_EXT}", pack.to_hex())
}

/// `packs/v1/blake3/<hex>.idx`, relative to an artifact root.
pub(crate) fn pack_index_key(pack: &Digest) -> String {
    format!("{PACKS_DIR}/{}{PACK_INDEX_EXT}", pack.to_hex())
}

/// The pack whose index has the file name `name` (`<hex>.idx`), if it is one.
pub(crate) fn parse_pack_index_name(name: &str) -> Option<Digest> {
    let hex = name.strip_suffix(PACK_INDEX_EXT)?;
    let digest = Digest::from_hex(hex).ok()?;
    (digest.to_hex() == hex).then_some(digest)
}

/// The digest of the blob stored under `<shard>/<sub-shard>/<name>`, if these three
/// names are exactly what [`blob_key`] makes for it. Anything else (junk, temp
/// files, a blob in the wrong shard, upper-case hex) is not a blob.
pub(crate) fn parse_blob_name(shard: &str, sub_shard: &str, name: &str) -> Option<Digest> {
    let digest = Digest::from_hex(name).ok()?;
    (digest.to_hex() == name && name[0..2] == *shard && name[2..4] == *sub_shard).then_some(digest)
}

/// Whether a directory name is a shard: two lowercase hexadecimal digits.
pub(crate) fn is_shard_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_file_names_round_trip_and_sort_as_numbers() {
        assert_eq!(seq_file_name(1, RECORD_EXT), "00000000000000000001.rec");
        assert_eq!(seq_file_name(0, ""), "00000000000000000000");
        assert_eq!(
            seq_file_name(u64::MAX, CHECKPOINT_EXT),
            format!("{}{CHECKPOINT_EXT}", u64::MAX)
        );
        assert_eq!(
            seq_file_name(1_234_567, RECORD_EXT),
            format!("{:020}{RECORD_EXT}", 1_234_567)
        );
        assert_eq!(
            seq_file_name(u64::MAX, CHECKPOINT_EXT),
            "18446744073709551615.ckpt"
        );
        for seq in [0, 1, 9, 10, 12345, u64::MAX] {
            let name = seq_file_name(seq, CHECKPOINT_EXT);
            assert_eq!(parse_seq_file_name(&name, CHECKPOINT_EXT), Some(seq));
            assert_eq!(parse_seq_file_name(&name, RECORD_EXT), None);
        }
        let mut names: Vec<String> = [10, 9, 100, 1, u64::MAX]
            .iter()
            .map(|s| seq_file_name(*s, RECORD_EXT))
            .collect();
        names.sort();
        let sorted: Vec<u64> = names
            .iter()
            .map(|n| parse_seq_file_name(n, RECORD_EXT).unwrap())
            .collect();
        assert_eq!(sorted, [1, 9, 10, 100, u64::MAX]);
        for junk in [
            "1.ckpt",
            "0000000000000000000x.ckpt",
            ".tmp-1-2",
            "+0000000000000000001.ckpt",
        ] {
            assert_eq!(parse_seq_file_name(junk, CHECKPOINT_EXT), None, "{junk}");
        }
        // 20 digits above u64::MAX.
        assert_eq!(
            parse_seq_file_name("99999999999999999999.ckpt", CHECKPOINT_EXT),
            None
        );
    }

    #[test]
    fn blob_keys_are_sharded_and_tagged() {
        let d = Digest::of(b"hello");
        let hex = d.to_hex();
        assert_eq!(
            blob_key(&d),
            "blobs/v1/blake3/ea/8f/ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(parse_blob_name("ea", "8f", &hex), Some(d));
        assert_eq!(parse_blob_name("ea", "90", &hex), None);
        assert_eq!(parse_blob_name("ea", "8f", &hex.to_uppercase()), None);
        assert_eq!(parse_blob_name("ea", "8f", &format!("{hex}#1")), None);
        assert_eq!(
            local_blob_key(&d),
            "blobs/v2/blake3/ea/ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(parse_local_blob_name("ea", &hex), Some(d));
        assert_eq!(parse_local_blob_name("eb", &hex), None);
        assert_eq!(parse_local_blob_name("ea", &hex.to_uppercase()), None);
        let shards: Vec<String> = shard_names().collect();
        assert_eq!(shards.len(), SHARDS);
        assert_eq!((shards[0].as_str(), shards[255].as_str()), ("00", "ff"));
        assert!(shards.iter().all(|s| is_shard_name(s)));
        assert!(is_shard_name("0f"));
        assert!(!is_shard_name("0F"));
        assert!(!is_shard_name("0"));
    }
}

/// Which of a log's checkpoints to delete after a new one was written, from
/// the listing of them all (`(seq, where)`, newest first): all but the
/// [`KEEP_CHECKPOINTS`] newest, and the first one of each window of history.
///
/// The history `1..=newest` is cut into windows of `w` records, `w` the
/// smallest power of two with at most [`CHECKPOINT_WINDOWS`] windows below
/// `newest`; in each window the checkpoint with the lowest number stays. So a
/// log keeps at most `CHECKPOINT_WINDOWS + 1 + KEEP_CHECKPOINTS` checkpoints,
/// and a fold as of any point after the first checkpoint starts at most about
/// two windows before it (`newest / 128` records), not from record 1: what
/// `checkpoint_at_or_before` serves time travel from.
///
/// The rule never needs a deleted checkpoint back: when `w` doubles, each new
/// window is two old ones, and its first checkpoint is the first of the lower
/// old window that has one, which was kept. A listing that misses some
/// checkpoints (a concurrent writer) only keeps more.
pub(crate) fn prunable_checkpoints<T>(newest_first: &[(u64, T)]) -> Vec<&(u64, T)> {
    let Some(newest) = newest_first.iter().map(|(seq, _)| *seq).max() else {
        return Vec::new();
    };
    let w = newest
        .div_ceil(CHECKPOINT_WINDOWS)
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(1 << 63);
    let mut first: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for (seq, _) in newest_first {
        let f = first.entry(seq / w).or_insert(*seq);
        *f = (*f).min(*seq);
    }
    newest_first
        .iter()
        .skip(KEEP_CHECKPOINTS)
        .filter(|(seq, _)| first.get(&(seq / w)) != Some(seq))
        .collect()
}

#[cfg(test)]
mod checkpoint_windows {
    use super::*;

    /// Writes checkpoints `every, 2·every, …` up to `upto`, pruning as a store
    /// does after each, and returns what is left (ascending).
    fn write(every: u64, upto: u64) -> Vec<u64> {
        let mut kept: Vec<(u64, ())> = Vec::new();
        let mut seq = every;
        while seq <= upto {
            kept.insert(0, (seq, ()));
            let gone: Vec<u64> = prunable_checkpoints(&kept).iter().map(|c| c.0).collect();
            kept.retain(|c| !gone.contains(&c.0));
            seq += every;
        }
        let mut v: Vec<u64> = kept.into_iter().map(|c| c.0).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn the_newest_and_one_per_window_are_kept_and_bounded() {
        for (every, upto) in [(1, 1), (1, 5), (100, 10_000), (1000, 100_000), (7, 99_999)] {
            let kept = write(every, upto);
            let newest = upto - upto % every;
            assert_eq!(kept.last(), Some(&newest), "{every}/{upto}");
            assert!(
                kept.len() as u64 <= CHECKPOINT_WINDOWS + 1 + KEEP_CHECKPOINTS as u64,
                "{every}/{upto}: {kept:?}"
            );
            // Every point after the first checkpoint has one at most a window
            // (under `newest / 128 + 2`) plus one interval before it.
            let first = kept[0];
            assert_eq!(first, every, "the oldest stays: {kept:?}");
            let gap = kept.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0);
            assert!(
                gap <= newest / 128 + 2 + every,
                "{every}/{upto}: gap {gap} in {kept:?}"
            );
        }
    }

    #[test]
    fn a_short_history_keeps_everything() {
        assert_eq!(write(1, 5), [1, 2, 3, 4, 5]);
        assert!(prunable_checkpoints::<()>(&[]).is_empty());
    }
}
