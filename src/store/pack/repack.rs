//! Reclaiming the space of chunks no recipe uses: repacking and deleting packs.
//!
//! A collection of packs runs in two steps, each one call from the registry's
//! garbage collection, which wraps them in its leases protocol (see
//! `registry::gc` and docs/design.md, "Garbage collection with packs"):
//!
//! 1. [`repack`]: mark every chunk range that a stored recipe uses; for each
//!    indexed pack, the dead share is what no recipe uses. A pack wholly dead is
//!    *retired* at once; a pack whose dead share reaches the threshold has its
//!    live chunks copied into new packs (each pack durable, then its index),
//!    every recipe that names it rewritten to the new places (replaced
//!    atomically: a recipe is keyed by its file's BLAKE3, which does not change),
//!    and is then retired. A retired pack that a recipe still names (written by
//!    a writer whose chunk index predates the retirement) is repacked again from
//!    its retirement record, and so is freed in turn.
//! 2. [`delete_retired`]: read the recipes again and delete each retired pack
//!    that none names and that was retired before the cutoff (the grace period),
//!    then its retirement record.
//!
//! *Retiring* a pack writes its retirement record (`<hex>.retired`: its chunk
//! list and when it was retired) and then removes its index (`<hex>.idx`), so
//! that chunk indexes stop offering its chunks (they drop a pack whose index is
//! gone at their next refresh) before the pack itself goes. A crash at any point
//! leaves a state the next collection finishes: new packs no recipe uses yet
//! (dead, retired next time), recipes some rewritten and some not (both kinds
//! name packs that still exist), or a pack with both an index and a retirement
//! record (the index wins: the pack is live).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FORMAT, PackBackend, PackIndex, Recipe, Term, read_index, storage};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::layout::{
    PACK_EXT, PACK_INDEX_EXT, PACKS_DIR, RECIPES_DIR, is_shard_name, pack_index_key, pack_key,
    recipe_key,
};

/// File name suffix of a retired pack's record.
const RETIRED_EXT: &str = ".retired";

/// `packs/v1/blake3/<hex>.retired`: the record of a retired pack.
fn retired_key(pack: &Digest) -> String {
    format!("{PACKS_DIR}/{}{RETIRED_EXT}", pack.to_hex())
}

/// What [`repack`] and [`delete_retired`] are asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RepackRequest {
    /// Repack a pack once this share of its bytes (0 to 1) is dead.
    pub(crate) threshold: f64,
    /// Packs are closed at this many bytes.
    pub(crate) pack_size: u64,
    /// Compute and report, change nothing.
    pub(crate) dry_run: bool,
}

/// The record of a retired pack: its chunks (for a repack should a recipe
/// still name it) and when it was retired (for the grace period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Retired {
    format: u32,
    pack: Digest,
    size: u64,
    retired: DateTime<Utc>,
    chunks: Vec<(Digest, u64, u32)>,
}

/// What a step of pack collection found and did (in a dry run: would do), as
/// [`ArtifactStore::repack`](crate::store::ArtifactStore::repack) and
/// [`ArtifactStore::delete_retired_packs`](crate::store::ArtifactStore::delete_retired_packs)
/// report it. Stores without packs report zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackCollection {
    /// Packs holding chunks (indexed or retired) seen.
    pub packs: u64,
    /// Bytes in those packs no recipe uses.
    pub dead_bytes: u64,
    /// Packs whose live chunks were copied into new packs, then retired.
    pub repacked: u64,
    /// Packs retired without copying (wholly dead).
    pub retired: u64,
    /// Live bytes copied into new packs.
    pub copied_bytes: u64,
    /// New packs written.
    pub new_packs: u64,
    /// Recipes rewritten to name the new packs.
    pub recipes_rewritten: u64,
    /// Retired packs deleted.
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Retired packs kept: a recipe names them, or they were retired within
    /// the grace period.
    pub retired_kept: u64,
    /// Packs left alone because a chunk did not hash to its index's hash (or
    /// a recipe's term did not fall on chunk boundaries); `check` finds them.
    pub skipped_damaged: u64,
}

/// Every stored recipe: one listing of the recipes' tree, then the recipes
/// read (overlapped where the backend can, [`PackBackend::get_small_many`]).
fn recipes<B: PackBackend>(backend: &B) -> Result<Vec<Recipe>> {
    let names = backend
        .list_tree(RECIPES_DIR)
        .map_err(|e| storage(backend, "list recipes", RECIPES_DIR, e))?;
    // Only `<shard>/<sub-shard>/<hex>` in its own shard is a recipe.
    let digests: Vec<Digest> = names
        .iter()
        .filter_map(|name| {
            let mut parts = name.split('/');
            let (shard, sub, hex) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || !is_shard_name(shard) || !is_shard_name(sub) {
                return None;
            }
            let digest = Digest::from_hex(hex).ok()?;
            (digest.to_hex() == hex && recipe_key(&digest) == format!("{RECIPES_DIR}/{name}"))
                .then_some(digest)
        })
        .collect();
    let keys: Vec<String> = digests.iter().map(recipe_key).collect();
    let mut out = Vec::with_capacity(digests.len());
    for ((digest, key), bytes) in digests.iter().zip(&keys).zip(backend.get_small_many(&keys)) {
        let bytes = bytes.map_err(|e| storage(backend, "read recipe", key, e))?;
        // Deleted since the listing: nothing to keep.
        if let Some(bytes) = bytes {
            out.push(Recipe::decode(&bytes, digest, backend.location(key))?);
        }
    }
    Ok(out)
}

/// The packs under [`PACKS_DIR`]: indexed, retired (record, no index) and
/// bare (pack file, neither index nor record: a crash between pack and index).
struct PackNames {
    indexed: Vec<Digest>,
    retired: Vec<Digest>,
    bare: Vec<Digest>,
}

fn pack_names<B: PackBackend>(backend: &B) -> Result<PackNames> {
    let names = backend
        .list(PACKS_DIR)
        .map_err(|e| storage(backend, "list packs", PACKS_DIR, e))?;
    let parse = |name: &str, ext: &str| {
        let hex = name.strip_suffix(ext)?;
        let digest = Digest::from_hex(hex).ok()?;
        (digest.to_hex() == hex).then_some(digest)
    };
    let set =
        |ext: &str| -> HashSet<Digest> { names.iter().filter_map(|n| parse(n, ext)).collect() };
    let (idx, retired, packs) = (set(PACK_INDEX_EXT), set(RETIRED_EXT), set(PACK_EXT));
    let mut out = PackNames {
        indexed: idx.iter().copied().collect(),
        retired: retired.difference(&idx).copied().collect(),
        bare: packs
            .iter()
            .filter(|p| !idx.contains(p) && !retired.contains(p))
            .copied()
            .collect(),
    };
    for v in [&mut out.indexed, &mut out.retired, &mut out.bare] {
        v.sort_unstable();
    }
    Ok(out)
}

fn read_retired<B: PackBackend>(backend: &B, pack: &Digest) -> Result<Option<Retired>> {
    let key = retired_key(pack);
    let Some(bytes) = backend
        .get_small(&key)
        .map_err(|e| storage(backend, "read retired pack record", &key, e))?
    else {
        return Ok(None);
    };
    let record: Retired = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("record of retired pack {pack}"), e.to_string()))?;
    if record.format != FORMAT {
        return Err(Error::UnsupportedFormat {
            record: format!("record of retired pack {pack}"),
            found: record.format,
            supported: FORMAT,
            location: Some(backend.location(&key)),
        });
    }
    Ok(Some(record))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("plain data always serializes: {e}"))
}

/// Retires `pack`: its record first, then its index goes.
fn retire<B: PackBackend>(
    backend: &B,
    pack: &Digest,
    size: u64,
    chunks: Vec<(Digest, u64, u32)>,
) -> Result<()> {
    let record = Retired {
        format: FORMAT,
        pack: *pack,
        size,
        retired: Utc::now(),
        chunks,
    };
    let key = retired_key(pack);
    backend
        .replace_small(&key, &encode(&record))
        .map_err(|e| storage(backend, "retire pack", &key, e))?;
    let key = pack_index_key(pack);
    backend
        .delete(&key)
        .map_err(|e| storage(backend, "retire pack", &key, e))
}

/// A pack's chunks and size, from its index or its retirement record.
struct Chunks {
    size: u64,
    chunks: Vec<(Digest, u64, u32)>,
    retired: bool,
}

/// Live byte ranges per pack, from every recipe.
fn live_ranges(recipes: &[Recipe]) -> HashMap<Digest, Vec<(u64, u64)>> {
    let mut live: HashMap<Digest, Vec<(u64, u64)>> = HashMap::new();
    for recipe in recipes {
        for Term(slot, offset, len) in &recipe.terms {
            if let Some(pack) = recipe.packs.get(*slot as usize) {
                live.entry(*pack).or_default().push((*offset, offset + len));
            }
        }
    }
    for ranges in live.values_mut() {
        ranges.sort_unstable();
    }
    live
}

fn overlaps(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    // Ranges sorted by start: the candidates start before `end`.
    let upto = ranges.partition_point(|r| r.0 < end);
    ranges[..upto].iter().any(|r| r.1 > start)
}

/// A new pack being filled: the staged object, its chunks and size.
type Open<S> = (S, Vec<(Digest, u64, u32)>, u64);

/// New packs being written by a repack.
struct Writer<'a, B: PackBackend> {
    backend: &'a B,
    pack_size: u64,
    open: Option<Open<B::Staged>>,
    /// Where each copied chunk of each old pack went: old (pack, offset) →
    /// (new pack, offset). Filled when the new pack is published.
    moved: HashMap<(Digest, u64), (Digest, u64)>,
    /// Old (pack, offset) of the chunks in the open pack, in its order.
    from: Vec<(Digest, u64)>,
    report_new: u64,
}

impl<'a, B: PackBackend> Writer<'a, B> {
    fn add(&mut self, old: (Digest, u64), hash: Digest, bytes: &[u8]) -> Result<()> {
        if self.open.is_none() {
            let staged = self
                .backend
                .stage()
                .map_err(|e| storage(self.backend, "write pack", PACKS_DIR, e))?;
            self.open = Some((staged, Vec::new(), 0));
        }
        let Some((staged, chunks, size)) = self.open.as_mut() else {
            unreachable!("opened above")
        };
        staged
            .write_all(bytes)
            .map_err(|e| storage(self.backend, "write pack", PACKS_DIR, e))?;
        chunks.push((hash, *size, bytes.len() as u32));
        *size += bytes.len() as u64;
        self.from.push(old);
        if *size >= self.pack_size {
            self.close()?;
        }
        Ok(())
    }

    /// Publishes the open pack, then its index.
    fn close(&mut self) -> Result<()> {
        let Some((staged, chunks, size)) = self.open.take() else {
            return Ok(());
        };
        let index = PackIndex::new(chunks, size);
        let name = index.pack;
        let key = pack_key(&name);
        self.backend
            .publish(staged, &key)
            .map_err(|e| storage(self.backend, "write pack", &key, e))?;
        for (old, (_, offset, _)) in self.from.drain(..).zip(&index.chunks) {
            self.moved.insert(old, (name, *offset));
        }
        let key = pack_index_key(&name);
        self.backend
            .put_small(&key, &encode(&index))
            .map_err(|e| storage(self.backend, "write pack index", &key, e))?;
        self.report_new += 1;
        Ok(())
    }
}

/// Step 1 of pack collection (module docs): repacks and retires.
pub(crate) fn repack<B: PackBackend>(
    backend: &B,
    request: &RepackRequest,
) -> Result<PackCollection> {
    let mut report = PackCollection::default();
    let recipes = recipes(backend)?;
    let live = live_ranges(&recipes);
    let names = pack_names(backend)?;
    let none: Vec<(u64, u64)> = Vec::new();

    // Which packs to retire without copying, which to repack.
    let mut to_retire: Vec<(Digest, Chunks)> = Vec::new();
    let mut to_repack: Vec<(Digest, Chunks)> = Vec::new();
    let candidates = names
        .indexed
        .iter()
        .map(|p| (*p, false))
        .chain(names.retired.iter().map(|p| (*p, true)));
    for (pack, retired) in candidates {
        let ranges = live.get(&pack).unwrap_or(&none);
        // A retired pack nobody names waits for `delete_retired`.
        if retired && ranges.is_empty() {
            continue;
        }
        let chunks = if retired {
            match read_retired(backend, &pack)? {
                Some(r) => Chunks {
                    size: r.size,
                    chunks: r.chunks,
                    retired: true,
                },
                None => continue, // deleted meanwhile
            }
        } else {
            match read_index(backend, &pack)? {
                Some(i) => Chunks {
                    size: i.size,
                    chunks: i.chunks,
                    retired: false,
                },
                None => continue, // retired meanwhile
            }
        };
        report.packs += 1;
        // An index whose pack is gone (a writer indexed again a pack a
        // collection was deleting): nothing to copy, retire the index.
        if !retired
            && !backend
                .exists(&pack_key(&pack))
                .map_err(|e| storage(backend, "read pack", &pack_key(&pack), e))?
        {
            to_retire.push((pack, chunks));
            continue;
        }
        let live_bytes: u64 = chunks
            .chunks
            .iter()
            .filter(|(_, o, l)| overlaps(ranges, *o, o + u64::from(*l)))
            .map(|c| u64::from(c.2))
            .sum();
        let dead = chunks.size.saturating_sub(live_bytes);
        report.dead_bytes += dead;
        if live_bytes == 0 {
            to_retire.push((pack, chunks));
        } else if chunks.retired
            || (chunks.size > 0 && dead as f64 / chunks.size as f64 >= request.threshold)
        {
            to_repack.push((pack, chunks));
        }
    }
    // Bare packs (a crash between a pack and its index): nothing can name
    // them, since recipes only name indexed packs; retire them as they are.
    let bare: Vec<Digest> = names
        .bare
        .iter()
        .filter(|p| !live.contains_key(p))
        .copied()
        .collect();

    if request.dry_run {
        report.retired = (to_retire.len() + bare.len()) as u64;
        report.repacked = to_repack.len() as u64;
        report.copied_bytes = to_repack
            .iter()
            .map(|(p, c)| {
                let ranges = live.get(p).unwrap_or(&none);
                c.chunks
                    .iter()
                    .filter(|(_, o, l)| overlaps(ranges, *o, o + u64::from(*l)))
                    .map(|c| u64::from(c.2))
                    .sum::<u64>()
            })
            .sum();
        return Ok(report);
    }

    // Copy the live chunks of the packs to repack, verifying each.
    let mut writer = Writer {
        backend,
        pack_size: request.pack_size,
        open: None,
        moved: HashMap::new(),
        from: Vec::new(),
        report_new: 0,
    };
    let mut repacked: Vec<(Digest, Chunks)> = Vec::new();
    for (pack, chunks) in to_repack {
        let ranges = live.get(&pack).unwrap_or(&none);
        let live_chunks: Vec<(Digest, u64, u32)> = chunks
            .chunks
            .iter()
            .filter(|(_, o, l)| overlaps(ranges, *o, o + u64::from(*l)))
            .copied()
            .collect();
        let Some(copied) = read_chunks(backend, &pack, &live_chunks) else {
            tracing::warn!(%pack, "a chunk does not read back as indexed; pack left as it is");
            report.skipped_damaged += 1;
            continue;
        };
        for (offset, hash, bytes) in copied {
            report.copied_bytes += bytes.len() as u64;
            writer.add((pack, offset), hash, &bytes)?;
        }
        repacked.push((pack, chunks));
    }
    writer.close()?;
    report.new_packs = writer.report_new;

    // Rewrite every recipe naming a repacked pack; a recipe whose terms do not
    // fall on chunk boundaries keeps that pack (it is then not retired).
    let mut keep: HashSet<Digest> = HashSet::new();
    let boundaries: HashMap<Digest, BTreeMap<u64, u32>> = repacked
        .iter()
        .map(|(p, c)| (*p, c.chunks.iter().map(|(_, o, l)| (*o, *l)).collect()))
        .collect();
    for recipe in &recipes {
        if !recipe.packs.iter().any(|p| boundaries.contains_key(p)) {
            continue;
        }
        match relocate(recipe, &boundaries, &writer.moved) {
            Some(new) => {
                let key = recipe_key(&recipe.digest);
                backend
                    .replace_small(&key, &new.encode())
                    .map_err(|e| storage(backend, "rewrite recipe", &key, e))?;
                report.recipes_rewritten += 1;
            }
            None => {
                report.skipped_damaged += 1;
                keep.extend(recipe.packs.iter().copied());
            }
        }
    }

    // Retire: the old index goes before the pack.
    for (pack, chunks) in repacked {
        if keep.contains(&pack) {
            continue;
        }
        retire(backend, &pack, chunks.size, chunks.chunks)?;
        report.repacked += 1;
    }
    for (pack, chunks) in to_retire {
        retire(backend, &pack, chunks.size, chunks.chunks)?;
        report.retired += 1;
    }
    for pack in bare {
        // Its size, for the report of what deleting it frees.
        let size = pack_len(backend, &pack);
        retire(backend, &pack, size, Vec::new())?;
        report.retired += 1;
    }
    Ok(report)
}

/// The length of a pack file: 0 if it cannot be read.
fn pack_len<B: PackBackend>(backend: &B, pack: &Digest) -> u64 {
    backend.size(&pack_key(pack)).ok().flatten().unwrap_or(0)
}

/// Reads of a repack are runs of adjacent live chunks up to this long.
const READ_RUN: u64 = 16 << 20;

/// The bytes of `chunks` (in pack order) of `pack`, each checked against its
/// hash: `(offset, hash, bytes)`. Adjacent chunks are read together, up to
/// [`READ_RUN`] bytes a read (on object storage, one ranged GET), so a pack
/// costs a few reads, not one per chunk. `None` if a chunk cannot be read or
/// does not hash to its index's hash.
fn read_chunks<B: PackBackend>(
    backend: &B,
    pack: &Digest,
    chunks: &[(Digest, u64, u32)],
) -> Option<Vec<(u64, Digest, Vec<u8>)>> {
    let key = pack_key(pack);
    let mut out = Vec::with_capacity(chunks.len());
    let mut buf = Vec::new();
    let mut rest = chunks;
    while let Some(first) = rest.first() {
        // The run: chunks that follow each other without a gap.
        let (start, mut end, mut n) = (first.1, first.1 + u64::from(first.2), 1);
        while let Some(next) = rest.get(n) {
            let next_end = next.1 + u64::from(next.2);
            if next.1 != end || next_end - start > READ_RUN {
                break;
            }
            (end, n) = (next_end, n + 1);
        }
        buf.resize((end - start) as usize, 0);
        backend.read_at(&key, start, &mut buf).ok()?;
        for (hash, offset, len) in &rest[..n] {
            let at = (offset - start) as usize;
            let bytes = &buf[at..at + *len as usize];
            if Digest::of(bytes) != *hash {
                return None;
            }
            out.push((*offset, *hash, bytes.to_vec()));
        }
        rest = &rest[n..];
    }
    Some(out)
}

/// `recipe` with every term in a repacked pack moved to where its chunks
/// went; `None` if a term does not fall on the chunk boundaries of its pack,
/// or a chunk it covers was not copied.
fn relocate(
    recipe: &Recipe,
    boundaries: &HashMap<Digest, BTreeMap<u64, u32>>,
    moved: &HashMap<(Digest, u64), (Digest, u64)>,
) -> Option<Recipe> {
    let mut packs: Vec<Digest> = Vec::new();
    let mut slots: HashMap<Digest, u32> = HashMap::new();
    let mut terms: Vec<Term> = Vec::new();
    let mut push = |pack: Digest, offset: u64, len: u64| {
        let slot = *slots.entry(pack).or_insert_with(|| {
            packs.push(pack);
            (packs.len() - 1) as u32
        });
        match terms.last_mut() {
            Some(last) if last.0 == slot && last.1 + last.2 == offset => last.2 += len,
            _ => terms.push(Term(slot, offset, len)),
        }
    };
    for Term(slot, offset, len) in &recipe.terms {
        let pack = *recipe.packs.get(*slot as usize)?;
        let Some(chunks) = boundaries.get(&pack) else {
            push(pack, *offset, *len);
            continue;
        };
        let (mut at, end) = (*offset, offset + len);
        while at < end {
            let clen = u64::from(*chunks.get(&at)?);
            if at + clen > end {
                return None;
            }
            let (new_pack, new_offset) = *moved.get(&(pack, at))?;
            push(new_pack, new_offset, clen);
            at += clen;
        }
    }
    Some(Recipe {
        format: FORMAT,
        digest: recipe.digest,
        size: recipe.size,
        packs,
        terms,
    })
}

/// Step 2 of pack collection (module docs): deletes the retired packs that no
/// recipe names and that were retired before `cutoff`, each pack before its
/// record.
pub(crate) fn delete_retired<B: PackBackend>(
    backend: &B,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<PackCollection> {
    let mut report = PackCollection::default();
    let named: HashSet<Digest> = recipes(backend)?
        .iter()
        .flat_map(|r| r.packs.iter().copied())
        .collect();
    for pack in pack_names(backend)?.retired {
        let Some(record) = read_retired(backend, &pack)? else {
            continue;
        };
        if named.contains(&pack) || record.retired >= cutoff {
            report.retired_kept += 1;
            continue;
        }
        if !dry_run {
            // An index written again meanwhile (the same chunks stored anew
            // make the same pack name) makes it live.
            let index = pack_index_key(&pack);
            if backend
                .exists(&index)
                .map_err(|e| storage(backend, "delete pack", &index, e))?
            {
                report.retired_kept += 1;
                continue;
            }
            for key in [pack_key(&pack), retired_key(&pack)] {
                backend
                    .delete(&key)
                    .map_err(|e| storage(backend, "delete pack", &key, e))?;
            }
        }
        report.deleted += 1;
        report.deleted_bytes += record.size;
    }
    Ok(report)
}

/// Whether `pack` is stored, asked once per pack per caller (`seen`). A pack
/// the chunk index offers may be gone: its index was read before a collection
/// retired and deleted it, or written again by a writer that stored the same
/// chunks while the collection deleted the pack.
pub(crate) fn pack_present<B: PackBackend>(
    backend: &B,
    seen: &mut HashMap<Digest, bool>,
    pack: &Digest,
) -> Result<bool> {
    if let Some(present) = seen.get(pack) {
        return Ok(*present);
    }
    let key = pack_key(pack);
    let present = backend
        .exists(&key)
        .map_err(|e| storage(backend, "read pack", &key, e))?;
    seen.insert(*pack, present);
    Ok(present)
}

/// Whether every pack `recipe` names is stored and indexed or retired (a
/// recipe naming a deleted pack is a file that is not stored).
pub(crate) fn recipe_intact<B: PackBackend>(backend: &B, recipe: &Recipe) -> io::Result<bool> {
    for pack in &recipe.packs {
        if !backend.exists(&pack_key(pack))? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(packs: &[Digest], terms: &[(u32, u64, u64)]) -> Recipe {
        Recipe {
            format: FORMAT,
            digest: Digest::of(b"file"),
            size: terms.iter().map(|t| t.2).sum(),
            packs: packs.to_vec(),
            terms: terms.iter().map(|t| Term(t.0, t.1, t.2)).collect(),
        }
    }

    #[test]
    fn relocation_follows_chunks_and_merges_what_became_adjacent() {
        let (old, other, new) = (Digest::of(b"old"), Digest::of(b"o"), Digest::of(b"new"));
        // Old pack: chunks at 0 (10), 10 (5), 15 (7); the middle one dead.
        let boundaries = HashMap::from([(old, BTreeMap::from([(0, 10), (10, 5), (15, 7)]))]);
        let moved = HashMap::from([((old, 0), (new, 0)), ((old, 15), (new, 10))]);
        let r = recipe(&[other, old], &[(0, 3, 4), (1, 0, 10), (1, 15, 7)]);
        let out = relocate(&r, &boundaries, &moved).expect("relocates");
        assert_eq!(out.packs, [other, new]);
        assert_eq!(out.terms, [Term(0, 3, 4), Term(1, 0, 17)]);
        assert_eq!(out.size, r.size);
        // A term over a chunk that was not copied, or off a boundary: refused.
        let r = recipe(&[old], &[(0, 10, 5)]);
        assert!(relocate(&r, &boundaries, &moved).is_none());
        let r = recipe(&[old], &[(0, 2, 8)]);
        assert!(relocate(&r, &boundaries, &moved).is_none());
    }

    #[test]
    fn live_ranges_overlap_only_what_they_cover() {
        let ranges = [(0, 10), (20, 30)];
        assert!(overlaps(&ranges, 5, 6));
        assert!(overlaps(&ranges, 25, 40));
        assert!(!overlaps(&ranges, 10, 20));
        assert!(!overlaps(&ranges, 30, 31));
    }
}
