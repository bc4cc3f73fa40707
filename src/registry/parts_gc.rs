//! Garbage collection of checkpoint parts (docs/design.md, "Checkpoints",
//! "Garbage."): deleting the segments and patches no kept checkpoint head
//! names any more, safely while readers read old heads and writers write new
//! ones.
//!
//! The store only lists, puts and deletes parts; which are live is decided
//! here. A sweep of one model's parts:
//!
//! 1. lists the parts (before the heads: a part put after the listing is not
//!    a candidate, and a head put after the heads were read names only parts
//!    put before it, which the listing may hold: see 4);
//! 2. reads every head the store kept, from the latest down
//!    ([`MetadataStore::checkpoint_at_or_before`]), and marks the parts they
//!    name. A head that cannot be decoded makes the sweep delete nothing for
//!    the model (abort on doubt): what it names is unknown;
//! 3. a listed part no head names is *unnamed*: the first sweep that finds it
//!    so remembers it (with its last-modified time) in the model's memory
//!    lease, `parts-<model>`; a later sweep deletes it if it was unnamed then
//!    too, was first found unnamed at least the grace period ago, was not put
//!    again since (same last-modified time) and not put within the grace
//!    period;
//! 4. lists the parts once more just before deleting, and spares any whose
//!    last-modified time changed: a writer re-put it to name it again.
//!
//! The memory is a lease, not a file beside the log: leases are small
//! replaceable records every store has, listed by prefix, and this memory may
//! be lost at any time without harm — a lost or damaged memory only starts
//! the two-sweep cycle again (nothing is deleted on the strength of a memory
//! that cannot be read). A file beside the log would be a checkpoint part,
//! the namespace this module sweeps and other features add to.
//!
//! Only names that parse as segment or patch names (`<20 digits>-<64 hex
//! digits>`) are ever considered, and *superseded partial event archives*:
//! an archive `events-<first>-<last>` ([`archives`](super::archives)) when
//! another listed archive starts at the same event and ends later (each
//! checkpoint writes its block's events up to it again; the longer archive
//! holds every record the shorter one does). No head names archives, so a
//! superseded one goes through the same two sweeps and grace period; a
//! reader that still looks for it finds it gone and reads the log's records
//! instead (slower, never wrong). The newest archive of each block start
//! stays. Other kinds of part beside the log belong to other features and
//! are left alone, listed or not.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::gc::GcReport;
use crate::domain::ModelName;
use crate::domain::codec::{seal, unseal};
use crate::domain::state::{CheckpointHead, decode_checkpoint_head};
use crate::error::{Error, Result};
use crate::offload::offload;
use crate::store::{CheckpointPart, MetadataStore};

/// Key prefix of the leases that remember a model's unnamed parts.
pub(super) const MEMORY_PREFIX: &str = "parts-";
/// The memory lease format this build writes and reads.
const MEMORY_FORMAT: u32 = 1;

/// Whether `name` is a segment's or a patch's name,
/// `<first version, 20 digits>-<BLAKE3, 64 hex digits>`
/// ([`Segment::name`](crate::domain::state::Segment::name),
/// [`Patch::name`](crate::domain::state::Patch::name)). Nothing else beside
/// the log is ever swept here.
pub(crate) fn is_part_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 20 + 1 + 64
        && b[..20].iter().all(u8::is_ascii_digit)
        && b[20] == b'-'
        && b[21..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// One unnamed part as the memory lease keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Unnamed {
    /// When a sweep first found it unnamed (after reading the heads).
    since: DateTime<Utc>,
    /// Its last-modified time then: a part put again since is another part.
    modified: DateTime<Utc>,
}

/// The memory lease of a model: its unnamed parts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Memory {
    format: u32,
    parts: BTreeMap<String, Unnamed>,
}

impl Memory {
    fn to_bytes(&self) -> Bytes {
        // Invariant: a number and a map of names to times always serialize.
        let json = serde_json::to_vec(self).expect("a part memory always serializes");
        Bytes::from(seal(json))
    }

    /// The memory in `bytes`; a damaged one, or one of another format, is
    /// empty (it only delays deletion).
    fn from_bytes(key: &str, bytes: &[u8]) -> Memory {
        let read = unseal(|| format!("lease '{key}'"), bytes)
            .ok()
            .and_then(|json| serde_json::from_slice::<Memory>(json).ok())
            .filter(|m| m.format == MEMORY_FORMAT);
        if read.is_none() {
            tracing::warn!(
                lease = key,
                "the memory of unnamed checkpoint parts is damaged or of another format; \
                 sweeping starts again (nothing is deleted before a second sweep)"
            );
        }
        read.unwrap_or_default()
    }
}

/// Why the heads of a model could not all be read.
enum Doubt {
    /// The store failed: the collection fails.
    Store(Error),
    /// A head cannot be decoded: what it names is unknown, the model's sweep
    /// is abandoned.
    Undecodable(Error),
}

/// The event archives among `names` that a longer archive from the same
/// first event supersedes (module docs).
fn superseded_archives(names: &[&str]) -> HashSet<String> {
    let mut longest: BTreeMap<u64, u64> = BTreeMap::new();
    let archives: Vec<(&str, u64, u64)> = names
        .iter()
        .filter_map(|n| super::archives::parse_name(n).map(|(f, l)| (*n, f, l)))
        .collect();
    for &(_, first, last) in &archives {
        let end = longest.entry(first).or_insert(last);
        *end = (*end).max(last);
    }
    archives
        .into_iter()
        .filter(|(_, first, last)| longest.get(first).is_some_and(|end| end > last))
        .map(|(name, ..)| name.to_owned())
        .collect()
}

/// The parts the heads `meta` kept for `model` name.
async fn named_parts(
    meta: &dyn MetadataStore,
    model: &ModelName,
) -> std::result::Result<HashSet<String>, Doubt> {
    let mut named = HashSet::new();
    let mut next = (meta.latest_checkpoint(model.as_str()).await).map_err(Doubt::Store)?;
    while let Some(cp) = next {
        let seq = cp.seq;
        let name = model.clone();
        let head = offload(move || decode_checkpoint_head(&name, seq, &cp.bytes))
            .await
            .map_err(Doubt::Store)?
            .map_err(Doubt::Undecodable)?;
        if let CheckpointHead::Segmented(head) = head {
            named.extend(head.part_names());
        }
        next = match seq.checked_sub(1) {
            Some(at_most) if at_most > 0 => (meta.checkpoint_at_or_before(model.as_str(), at_most))
                .await
                .map_err(Doubt::Store)?,
            _ => None,
        };
    }
    Ok(named)
}

/// Sweeps the checkpoint parts of `model` (module docs), adding what it found
/// and did to `report`.
pub(super) async fn sweep(
    meta: &dyn MetadataStore,
    model: &ModelName,
    grace: std::time::Duration,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<()> {
    let log = model.as_str();
    // 1. The parts, before the heads. Names that are not a segment's or a
    // patch's, nor a superseded archive's, are never considered.
    let all = meta.list_checkpoint_parts(log).await?;
    let superseded = superseded_archives(&all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>());
    let listed: Vec<CheckpointPart> = all
        .into_iter()
        .filter(|p| is_part_name(&p.name) || superseded.contains(&p.name))
        .collect();
    let key = format!("{MEMORY_PREFIX}{log}");
    let remembered = (meta.get_lease(&key).await?).map(|bytes| Memory::from_bytes(&key, &bytes));
    if listed.is_empty() && remembered.is_none() {
        return Ok(());
    }
    // 2. Every kept head, and what it names.
    let named = match named_parts(meta, model).await {
        Ok(named) => named,
        Err(Doubt::Store(e)) => return Err(e),
        Err(Doubt::Undecodable(e)) => {
            tracing::warn!(
                model = log, error = %e,
                "a kept checkpoint head cannot be decoded: no checkpoint part of the \
                 model is deleted (what it names is unknown)"
            );
            report.checkpoint_part_sweeps_aborted += 1;
            report.checkpoint_parts += listed.len() as u64;
            return Ok(());
        }
    };
    // Taken after the heads were read: a part found unnamed now was unnamed
    // by every head kept at some moment before this.
    let now = Utc::now();
    let cutoff = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let remembered = remembered.unwrap_or_default();

    // 3. Unnamed parts: deletable, or remembered for a later sweep.
    let mut memory = Memory {
        format: MEMORY_FORMAT,
        parts: BTreeMap::new(),
    };
    let mut doomed = Vec::new();
    for part in listed {
        report.checkpoint_parts += 1;
        if named.contains(&part.name) {
            report.checkpoint_parts_named += 1;
            continue;
        }
        // A part whose age the store does not know is never deleted.
        let Some(modified) = part.last_modified else {
            report.checkpoint_parts_pending += 1;
            continue;
        };
        match remembered.parts.get(&part.name) {
            Some(seen)
                if seen.modified == modified && seen.since <= cutoff && modified <= cutoff =>
            {
                doomed.push((part, seen.clone()));
            }
            Some(seen) if seen.modified == modified => {
                memory.parts.insert(part.name, seen.clone());
                report.checkpoint_parts_pending += 1;
            }
            _ => {
                let seen = Unnamed {
                    since: now,
                    modified,
                };
                memory.parts.insert(part.name, seen);
                report.checkpoint_parts_pending += 1;
            }
        }
    }
    if dry_run {
        report.checkpoint_parts_deleted += doomed.len() as u64;
        report.checkpoint_part_bytes_freed += doomed.iter().map(|(p, _)| p.size).sum::<u64>();
        return Ok(());
    }

    // 4. Spare what was put again meanwhile (a writer about to name it).
    if !doomed.is_empty() {
        let again: BTreeMap<String, Option<DateTime<Utc>>> = meta
            .list_checkpoint_parts(log)
            .await?
            .into_iter()
            .map(|p| (p.name, p.last_modified))
            .collect();
        doomed.retain(|(part, _)| {
            let unchanged = again.get(&part.name) == Some(&part.last_modified);
            if !unchanged {
                report.checkpoint_parts_pending += 1;
            }
            unchanged
        });
    }
    // The memory first: a collection cut short after it deletes nothing it
    // did not mean to, and one cut short before it only sweeps again.
    if memory.parts.is_empty() {
        meta.delete_lease(&key).await?;
    } else if memory != remembered {
        meta.put_lease(&key, memory.to_bytes()).await?;
    }
    for (part, _) in doomed {
        meta.delete_checkpoint_part(log, &part.name).await?;
        report.checkpoint_parts_deleted += 1;
        report.checkpoint_part_bytes_freed += part.size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_and_patch_names_are_part_names() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_part_name(&format!("{:020}-{hex}", 1025)));
        assert!(is_part_name(&format!("{:020}-{hex}", 0)));
        for other in [
            format!("events-{:020}-{hex}", 1),
            format!("{:019}-{hex}", 1),
            format!("{:020}-{}", 1, hex.to_uppercase()),
            format!("{:020}-{hex}0", 1),
            format!("{:020}_{hex}", 1),
            "sweep".to_owned(),
        ] {
            assert!(!is_part_name(&other), "{other}");
        }
    }

    #[test]
    fn only_shorter_archives_of_a_block_start_are_superseded() {
        use crate::registry::archives::name;
        let names = [
            name(1, 100),
            name(1, 1024),
            name(1025, 1100),
            name(1025, 1200),
            name(2049, 2100),
            "events-1-2".to_owned(),
            format!("{:020}-{}", 1, "0".repeat(64)),
        ];
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let superseded = superseded_archives(&refs);
        let expected: HashSet<String> = [name(1, 100), name(1025, 1100)].into();
        assert_eq!(superseded, expected);
    }

    #[test]
    fn a_damaged_memory_is_empty() {
        let memory = Memory {
            format: MEMORY_FORMAT,
            parts: BTreeMap::from([(
                "x".to_owned(),
                Unnamed {
                    since: Utc::now(),
                    modified: Utc::now(),
                },
            )]),
        };
        let bytes = memory.to_bytes();
        assert_eq!(Memory::from_bytes("k", &bytes), memory);
        assert_eq!(
            Memory::from_bytes("k", &bytes[..bytes.len() - 3]),
            Memory::default()
        );
        let other = Memory {
            format: MEMORY_FORMAT + 1,
            ..memory
        };
        assert_eq!(
            Memory::from_bytes("k", &other.to_bytes()),
            Memory::default()
        );
    }
}
