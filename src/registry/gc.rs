//! Garbage collection: deleting blobs no version references, safely while other
//! processes register versions.
//!
//! # The race, and how it is closed
//!
//! Content addressing makes registration deduplicate: a file whose digest is
//! stored already is not uploaded again. If that stored blob is an orphan (left by
//! a failed registration) that a collector is about to delete, a naive collector
//! deletes a blob that the new version is about to reference. Neither side can
//! close this alone, so both announce themselves in the metadata store's
//! [leases](crate::store::MetadataStore::put_lease), then read the other's:
//!
//! - A **registration** writes an *intent* lease listing every digest the new
//!   version needs: after its blobs are stored (or found), or, when it knows the
//!   digests before storing anything (in-memory files), while it stores them. It
//!   then reads the *sweep* leases: while a sweep that was running at that moment
//!   and whose candidates include one of its digests goes on, it waits; then,
//!   with its blobs stored and the wait over, it checks that every digest is
//!   stored, re-uploads any that is missing, and only then appends the event. The
//!   intent is withdrawn after the append. What the argument below needs is the
//!   order intent → sweep read → check → append; when the blobs were stored does
//!   not matter, since the check looks at them after the wait.
//! - A **collector** marks every blob referenced by a version (each version's
//!   manifest and the files it lists), lists the stored blobs, keeps those younger
//!   than the grace period, and writes a *sweep* lease listing the remaining
//!   candidates. Only then does it read the intents (sparing every digest an
//!   unexpired intent lists) and mark again (sparing what versions committed since
//!   the first mark reference), and delete what is left, checking each blob's age
//!   once more just before deleting it.
//!
//! Each side writes its lease before reading the other's, and leases are
//! linearizable, so at least one side sees the other: either the collector sees the
//! intent and spares its digests, or the registration sees the sweep and waits for
//! it to end before checking its blobs. A registration whose intent the collector
//! missed because it was already withdrawn has committed its event before that,
//! and the collector's second mark sees the event.
//!
//! Leases expire, so a process that dies leaves nothing that blocks others for
//! long: a sweep lease lives [`SWEEP_TTL`] and its collector renews it every
//! [`SWEEP_RENEW`] while deleting (and stops deleting if it cannot); an intent lives
//! [`INTENT_TTL`] and a registration renews it if committing comes close to that.
//! This assumes the clocks of the processes sharing a registry agree to within
//! seconds, the usual assumption of lease-based locking (restic's, for example).

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{ArtifactSource, Registry, fetch, ingest, parts_gc};
use crate::digest::Digest;
use crate::domain::Manifest;
use crate::domain::codec::{seal, unseal};
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressExt};
use crate::store::{ArtifactStore, LinkMode, MetadataStore};

/// How long a sweep lease is honoured after it was last written.
const SWEEP_TTL: Duration = Duration::from_secs(60);
/// How often a collector renews its sweep lease while deleting.
const SWEEP_RENEW: Duration = Duration::from_secs(15);
/// How long a registration's intent is honoured after it was last written.
const INTENT_TTL: Duration = Duration::from_secs(3600);
/// A registration renews its intent when less than this is left of it.
const INTENT_MARGIN: Duration = Duration::from_secs(600);
/// The longest a registration waits for sweeps that may delete its blobs.
const MAX_SWEEP_WAIT: Duration = Duration::from_secs(300);
/// Key prefix of intent leases.
const INTENT_PREFIX: &str = "intent-";
/// Key prefix of sweep leases.
const SWEEP_PREFIX: &str = "gc-";
/// The lease format this build writes and reads.
const LEASE_FORMAT: u32 = 1;
/// A collection removes leases that expired longer ago than this: their writer
/// is gone even if its clock runs this far behind the collector's.
const LEASE_REMOVAL_MARGIN: Duration = Duration::from_secs(600);

/// How [`Registry::gc`] runs.
///
/// ```
/// use std::time::Duration;
/// use modelreg::GcOptions;
/// // Delete orphans older than a day; report what would go, delete nothing.
/// let options = GcOptions::new(Duration::from_secs(86_400)).dry_run(true);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcOptions {
    grace: Duration,
    dry_run: bool,
    temp_age: Duration,
    repack_percent: u8,
}

impl GcOptions {
    /// Collects unreferenced blobs older than `grace`.
    ///
    /// The grace period protects blobs that were written by something other than
    /// a registration of this crate (a tool that uploads first and registers later)
    /// and bounds what a mistake can cost; registrations in flight are protected by
    /// their intents whatever the grace period, even zero.
    pub fn new(grace: Duration) -> Self {
        GcOptions {
            grace,
            dry_run: false,
            temp_age: Duration::from_secs(3600),
            repack_percent: 50,
        }
    }

    /// In a store that keeps large files as chunks in packs
    /// ([`PackOptions`](crate::store::PackOptions)), repack a pack once
    /// `percent` of its bytes (default 50, at most 100) belong to no stored
    /// file: its live chunks are copied into new packs and it is deleted. A
    /// pack no file uses is deleted whatever the threshold. Lower frees more
    /// space and copies more; 100 only deletes wholly dead packs.
    pub fn repack_when_dead_percent(mut self, percent: u8) -> Self {
        self.repack_percent = percent.min(100);
        self
    }

    /// Also remove the stores' temp files not modified for `age` (default one
    /// hour): what writers that crashed mid-write left behind, such as a
    /// half-copied multi-GB blob. A live writer modifies its temp file as it
    /// writes; one stalled longer than `age` fails without publishing anything.
    pub fn temp_files_older_than(mut self, age: Duration) -> Self {
        self.temp_age = age;
        self
    }

    /// Report what would be deleted, delete nothing (and write no lease).
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

impl Default for GcOptions {
    /// A grace period of one day.
    fn default() -> Self {
        GcOptions::new(Duration::from_secs(86_400))
    }
}

/// What [`Registry::gc`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Models whose versions were marked.
    pub models: u64,
    /// Distinct version artifacts whose manifests were read.
    pub manifests: u64,
    /// Blobs the store listed.
    pub blobs: u64,
    /// Listed blobs that a version references (manifests and files).
    pub referenced: u64,
    /// Unreferenced blobs kept because they are younger than the grace period (or
    /// the store does not know their age).
    pub young: u64,
    /// Unreferenced blobs kept because a registration in progress announced them,
    /// or a version committed during the collection references them.
    pub in_flight: u64,
    /// The blobs deleted (with [`GcOptions::dry_run`]: that would be deleted).
    pub deleted: Vec<Digest>,
    /// Their total size in bytes.
    pub bytes_freed: u64,
    /// Intents of registrations that died (expired, or damaged by a crash), removed.
    pub stale_intents: u64,
    /// Leases removed (with [`GcOptions::dry_run`]: that would be removed), intents
    /// counted in `stale_intents` included: those that expired more than 10
    /// minutes ago (their writer died, or was killed, without withdrawing them;
    /// the margin allows for clocks that disagree), and damaged ones (what a
    /// crash of the machine left, see `docs/design.md`).
    #[serde(default)]
    pub leases_removed: u64,
    /// Temp files of writers that died, removed from both stores.
    pub temp_files: u64,
    /// Their total size in bytes.
    pub temp_bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Packs (of a store that packs large files) whose live chunks were copied
    /// into new packs, then retired.
    #[serde(default)]
    pub packs_repacked: u64,
    /// Packs retired without copying: no stored file used them.
    #[serde(default)]
    pub packs_retired: u64,
    /// Bytes copied from repacked packs into new ones.
    #[serde(default)]
    pub pack_bytes_copied: u64,
    /// Retired packs deleted (their grace period over, no file using them).
    #[serde(default)]
    pub packs_deleted: u64,
    /// Their bytes.
    #[serde(default)]
    pub pack_bytes_deleted: u64,
    /// Whether deleting retired packs was put off to a later collection: a
    /// registration in flight had not stored its files yet (it may be about
    /// to use a retired pack), or the sweep lease could not be kept alive.
    #[serde(default)]
    pub packs_deletion_deferred: bool,
    /// Checkpoint parts (segments and patches of segmented checkpoints) the
    /// store listed; other kinds of part beside a log are not counted.
    #[serde(default)]
    pub checkpoint_parts: u64,
    /// Listed parts a kept checkpoint head names.
    #[serde(default)]
    pub checkpoint_parts_named: u64,
    /// Listed parts no kept head names that were kept for now: first found
    /// unnamed by this collection or too recently (they go at a collection
    /// at least the grace period after the first that found them unnamed),
    /// put within the grace period, or put again meanwhile.
    #[serde(default)]
    pub checkpoint_parts_pending: u64,
    /// Parts deleted (with [`GcOptions::dry_run`]: that would be deleted).
    #[serde(default)]
    pub checkpoint_parts_deleted: u64,
    /// Their bytes.
    #[serde(default)]
    pub checkpoint_part_bytes_freed: u64,
    /// Models whose parts were left alone because a kept checkpoint head
    /// could not be decoded (what it names is unknown).
    #[serde(default)]
    pub checkpoint_part_sweeps_aborted: u64,
}

impl GcReport {
    /// Bytes the collection gave back to the stores: deleted blobs, packs and
    /// checkpoint parts, less what repacking wrote anew.
    pub fn bytes_reclaimed(&self) -> i64 {
        let freed = (self.bytes_freed)
            .saturating_add(self.pack_bytes_deleted)
            .saturating_add(self.checkpoint_part_bytes_freed);
        i64::try_from(freed)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(self.pack_bytes_copied).unwrap_or(i64::MAX))
    }
}

/// A lease as stored: what it announces and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    format: u32,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
    /// Intent: the digests a registration needs. Sweep: the candidates it may delete.
    digests: BTreeSet<Digest>,
    /// Sweep: it may delete packs, which any registration's files may name
    /// (through chunks found in them), so every registration waits for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    packs: bool,
}

impl LeaseRecord {
    fn new(ttl: Duration, digests: BTreeSet<Digest>) -> Self {
        let created = Utc::now();
        LeaseRecord {
            format: LEASE_FORMAT,
            created,
            expires: created + ttl,
            digests,
            packs: false,
        }
    }

    fn renewed(&self, ttl: Duration) -> Self {
        LeaseRecord {
            expires: Utc::now() + ttl,
            ..self.clone()
        }
    }

    fn to_bytes(&self) -> Bytes {
        // Invariant: a format number, two times and a set of digests always
        // serialize into memory. An empty lease would read back as damaged, and
        // protect nothing.
        let json = serde_json::to_vec(self).expect("a lease always serializes");
        Bytes::from(seal(json))
    }

    fn from_bytes(key: &str, bytes: &[u8]) -> Result<Self> {
        let what = || format!("lease '{key}'");
        let json = unseal(what, bytes)?;
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format =
            serde_json::from_slice(json).map_err(|e| Error::corrupt(what(), e.to_string()))?;
        if format.format != LEASE_FORMAT {
            return Err(Error::UnsupportedFormat {
                record: what(),
                found: format.format,
                supported: LEASE_FORMAT,
                location: None,
            });
        }
        serde_json::from_slice(json).map_err(|e| Error::corrupt(what(), e.to_string()))
    }

    fn live(&self) -> bool {
        self.expires > Utc::now()
    }
}

fn new_key(prefix: &str) -> String {
    format!("{prefix}{:032x}", fastrand::u128(..))
}

/// The leases whose keys start with `prefix`, and the keys of those that are
/// damaged. A lease deleted between the listing and the read is skipped.
///
/// Leases are written without fsync (they speak for a live process), so a crash
/// of the machine can leave one empty or torn; a live writer's lease always reads
/// whole. A damaged lease is therefore a remnant of a crash and protects nothing.
/// A lease of a newer format is an error: its writer may be alive.
async fn read_leases(
    meta: &dyn MetadataStore,
    prefix: &str,
) -> Result<(Vec<(String, LeaseRecord)>, Vec<String>)> {
    let (mut live, mut damaged) = (Vec::new(), Vec::new());
    for key in meta.list_leases().await? {
        if !key.starts_with(prefix) {
            continue;
        }
        if let Some(bytes) = meta.get_lease(&key).await? {
            match LeaseRecord::from_bytes(&key, &bytes) {
                Ok(record) => live.push((key, record)),
                Err(Error::Corrupt { .. }) => damaged.push(key),
                Err(e) => return Err(e),
            }
        }
    }
    Ok((live, damaged))
}

/// Removes (counts, in a dry run) the intent and sweep leases that expired more
/// than [`LEASE_REMOVAL_MARGIN`] ago, and the damaged ones: a live writer's lease
/// always reads whole (stores replace a lease atomically), so a damaged lease was
/// left by a crash of the machine, whatever its age.
async fn remove_dead_leases(
    meta: &dyn MetadataStore,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<()> {
    let margin = chrono::Duration::from_std(LEASE_REMOVAL_MARGIN)
        .expect("ten minutes is a valid chrono::Duration");
    let dead_before = Utc::now() - margin;
    for prefix in [INTENT_PREFIX, SWEEP_PREFIX] {
        let (leases, damaged) = read_leases(meta, prefix).await?;
        let expired = leases
            .into_iter()
            .filter(|(_, lease)| lease.expires < dead_before)
            .map(|(key, _)| key);
        for key in damaged.into_iter().chain(expired) {
            if !dry_run {
                meta.delete_lease(&key).await?;
            }
            report.leases_removed += 1;
            if prefix == INTENT_PREFIX {
                report.stale_intents += 1;
            }
        }
    }
    Ok(())
}

/// A registration's announcement of the blobs it is about to reference.
#[derive(Debug)]
pub(super) struct Intent {
    key: String,
    record: LeaseRecord,
}

impl Intent {
    /// Writes the intent for `digests`, then waits until no running sweep may
    /// delete any of them. Afterwards no sweep deletes them while the intent lives;
    /// the caller must still check that they are all stored (a sweep that ended
    /// just before may have deleted one).
    pub(super) async fn announce(
        meta: &dyn MetadataStore,
        digests: BTreeSet<Digest>,
    ) -> Result<Intent> {
        let intent = Intent {
            key: new_key(INTENT_PREFIX),
            record: LeaseRecord::new(INTENT_TTL, digests),
        };
        meta.put_lease(&intent.key, intent.record.to_bytes())
            .await?;
        intent.wait_for_sweeps(meta).await?;
        Ok(intent)
    }

    /// Whether the intent has too little life left to cover a commit.
    pub(super) fn expiring(&self) -> bool {
        self.record.expires - Utc::now()
            < chrono::Duration::from_std(INTENT_MARGIN).unwrap_or_default()
    }

    /// Writes the intent again with a fresh expiry, then waits for sweeps as
    /// [`announce`](Self::announce) does.
    pub(super) async fn renew(&mut self, meta: &dyn MetadataStore) -> Result<()> {
        self.record = self.record.renewed(INTENT_TTL);
        meta.put_lease(&self.key, self.record.to_bytes()).await?;
        self.wait_for_sweeps(meta).await
    }

    /// The digests the intent announces.
    pub(super) fn digests(&self) -> &BTreeSet<Digest> {
        &self.record.digests
    }

    /// Removes the intent, best effort: one left behind expires, and a later
    /// collection removes it.
    pub(super) async fn withdraw(self, meta: &dyn MetadataStore) {
        if let Err(e) = meta.delete_lease(&self.key).await {
            tracing::warn!(
                lease = %self.key, error = %e,
                "could not withdraw a registration's intent lease; it protects its \
                 blobs from gc until it expires"
            );
        }
    }

    /// Waits until every sweep that was running when the intent had just been
    /// written, and whose candidates include one of its digests, has ended (or its
    /// lease expired). Sweeps that start later read the intent and spare its
    /// digests, so they are not waited for: back-to-back collections cannot starve
    /// a registration.
    async fn wait_for_sweeps(&self, meta: &dyn MetadataStore) -> Result<()> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        let mut waiting_for: Option<HashSet<String>> = None;
        loop {
            let blocking: HashSet<String> = read_leases(meta, SWEEP_PREFIX)
                .await?
                .0
                .into_iter()
                .filter(|(key, sweep)| {
                    sweep.live()
                        && (sweep.packs || !sweep.digests.is_disjoint(&self.record.digests))
                        && waiting_for.as_ref().is_none_or(|w| w.contains(key))
                })
                .map(|(key, _)| key)
                .collect();
            if blocking.is_empty() {
                return Ok(());
            }
            if started.elapsed() > MAX_SWEEP_WAIT {
                return Err(Error::storage(
                    "registry",
                    "register",
                    self.key.clone(),
                    format!(
                        "a garbage collection that may delete blobs of this version kept \
                         running for {} s; nothing was registered, try again",
                        MAX_SWEEP_WAIT.as_secs()
                    ),
                ));
            }
            waiting_for = Some(blocking);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }
}

/// A collection's announcement of the blobs it may delete.
#[derive(Debug)]
struct Sweep {
    key: String,
    record: LeaseRecord,
    /// When the lease was last written.
    written: Instant,
}

impl Sweep {
    /// Writes the sweep lease for `candidates`.
    async fn announce(meta: &dyn MetadataStore, candidates: BTreeSet<Digest>) -> Result<Sweep> {
        Self::announce_lease(meta, LeaseRecord::new(SWEEP_TTL, candidates)).await
    }

    /// Writes the sweep lease of a collection of packs: every registration
    /// waits for it.
    async fn announce_packs(meta: &dyn MetadataStore) -> Result<Sweep> {
        let mut record = LeaseRecord::new(SWEEP_TTL, BTreeSet::new());
        record.packs = true;
        Self::announce_lease(meta, record).await
    }

    async fn announce_lease(meta: &dyn MetadataStore, record: LeaseRecord) -> Result<Sweep> {
        let sweep = Sweep {
            key: new_key(SWEEP_PREFIX),
            record,
            written: Instant::now(),
        };
        meta.put_lease(&sweep.key, sweep.record.to_bytes()).await?;
        Ok(sweep)
    }

    /// Renews the lease if it is due, before the next delete: a sweep that cannot
    /// renew stops, since registrations would stop waiting for it.
    async fn keep_alive(&mut self, meta: &dyn MetadataStore) -> Result<()> {
        if self.written.elapsed() > SWEEP_RENEW {
            self.record = self.record.renewed(SWEEP_TTL);
            meta.put_lease(&self.key, self.record.to_bytes()).await?;
            self.written = Instant::now();
        }
        Ok(())
    }

    /// Whether the lease is surely still honoured by registrations, with a
    /// margin for clocks that disagree by seconds.
    fn holds(&self) -> bool {
        self.written.elapsed() + Duration::from_secs(10) < SWEEP_TTL
    }

    /// Removes the lease, best effort: one left behind expires, and a later
    /// collection removes it.
    async fn end(self, meta: &dyn MetadataStore) {
        if let Err(e) = meta.delete_lease(&self.key).await {
            tracing::warn!(
                lease = %self.key, error = %e,
                "could not remove a collection's sweep lease; registrations that \
                 need its blobs wait until it expires"
            );
        }
    }
}

/// The blobs among `digests` that `artifacts` does not hold.
async fn missing(artifacts: &dyn ArtifactStore, digests: &BTreeSet<Digest>) -> Result<Vec<Digest>> {
    futures::stream::iter(digests.iter().copied())
        .map(|d| async move { Ok::<_, Error>(artifacts.head(&d).await?.is_none().then_some(d)) })
        .buffer_unordered(16)
        .try_filter_map(|d| futures::future::ready(Ok(d)))
        .try_collect()
        .await
}

/// What the mark phase has seen so far.
#[derive(Default)]
struct Marks {
    /// Every digest a version references.
    referenced: HashSet<Digest>,
    /// Manifests already read (versions sharing an artifact are read once).
    manifests: HashSet<Digest>,
}

impl Registry {
    /// Makes sure every blob a new version needs is stored while its intent
    /// protects them: a collection that ended just before the intent was written
    /// may have deleted one the ingest found stored. Those are stored again from
    /// the source, which must still hash to the same manifest
    /// ([`Error::SourceChanged`] naming the first file that differs otherwise).
    pub(super) async fn secure_blobs(
        &self,
        intent: &mut Intent,
        source: &ArtifactSource,
        manifest: &Manifest,
        digest: Digest,
    ) -> Result<()> {
        let artifacts = self.inner.artifacts.as_ref();
        const ROUNDS: u32 = 3;
        for _ in 0..ROUNDS {
            let missing = missing(artifacts, intent.digests()).await?;
            if missing.is_empty() && !intent.expiring() {
                return Ok(());
            }
            if !missing.is_empty() {
                // Copied, whatever the version's link mode: this is the rare path
                // after a collection, and a copy is independent of the source.
                let (again, again_digest, _) = ingest::ingest(
                    artifacts,
                    source.clone(),
                    self.inner.hash_cache.as_ref(),
                    LinkMode::Copy,
                    // The caller's progress saw these files once already.
                    None,
                )
                .await?;
                if again_digest != digest {
                    // The first file that differs, or that one manifest has and
                    // the other lacks (they differ somewhere: their digests do).
                    let (old, new) = (manifest.entries(), again.entries());
                    let changed = old
                        .iter()
                        .zip(new)
                        .find(|(a, b)| a != b)
                        .map(|(a, _)| a)
                        .or_else(|| old.get(new.len()))
                        .or_else(|| new.get(old.len()));
                    return Err(Error::SourceChanged {
                        path: changed.map(|e| source.path_of(&e.path)).unwrap_or_default(),
                    });
                }
            }
            intent.renew(self.inner.metadata.as_ref()).await?;
        }
        Err(Error::storage(
            "registry",
            "register",
            intent.key.clone(),
            format!("blobs of the new version kept disappearing in {ROUNDS} rounds"),
        ))
    }

    /// Deletes the blobs that no version references and that are older than the
    /// grace period, safely while other processes register versions, and reports
    /// what it did.
    ///
    /// Registrations announce the blobs they are about to reference in an *intent*
    /// lease, and a collection announces the blobs it may delete in a *sweep* lease;
    /// each side writes its lease and then reads the other's, so either the
    /// collection spares the registration's blobs or the registration waits for the
    /// sweep and stores again what it deleted (the protocol is in `docs/design.md`,
    /// "Garbage collection"). Leases expire: a sweep's after 60 s without renewal,
    /// an intent's after an hour, so a process that dies blocks nothing for long;
    /// this assumes the clocks of the processes sharing a registry agree within
    /// seconds.
    ///
    /// References are every version of every model, whatever its stage (archived
    /// and deprecated versions stay fetchable), through its manifest, and the
    /// signature bundles recorded for it, except the artifacts of versions that
    /// were [purged](crate::Session::purge_version): a blob only purged versions
    /// used is deleted (their manifests too), one a kept version shares stays (a
    /// purged version's signature bundles stay, as its record does).
    /// Checkpoints hold nothing else.
    ///
    /// In a store that keeps large files as chunks in packs, the collection
    /// then reclaims the chunks only deleted files used: packs no stored file
    /// uses are retired, packs whose unused share reaches
    /// [`GcOptions::repack_when_dead_percent`] have their used chunks copied
    /// into new packs and are retired, and retired packs are deleted once the
    /// grace period has passed since their retirement. Registrations wait
    /// while packs may be deleted (docs/design.md, "Garbage collection with
    /// packs").
    ///
    /// In a store that keeps checkpoint parts, the collection last deletes the
    /// segments and patches of checkpoints that no kept checkpoint head names
    /// any more: a part goes at the first collection that finds it unnamed at
    /// least the grace period after an earlier one did (and not put within the
    /// grace period), so readers of an old head still find its parts; a head
    /// that cannot be decoded leaves its model's parts alone (docs/design.md,
    /// "Checkpoints", "Garbage."). Run collections with a grace period of at
    /// least an hour while other processes write: a writer re-puts the parts
    /// it remembers half an hour after it last put or read them.
    ///
    /// If any reference cannot be read — a
    /// model's log or a manifest that is missing, corrupt or unreadable, a blob
    /// listing that fails — the collection stops with that error before
    /// deleting anything: a blob is only deleted when every reference is known.
    /// Run [`check`](Self::check) to find what is broken.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use modelreg::store::ArtifactStoreExt;
    /// use modelreg::{GcOptions, Registry};
    /// let registry = Registry::in_memory();
    /// let orphan = registry.artifact_store().put_bytes("left by a failed upload".into()).await?;
    /// let report = registry.gc(GcOptions::new(Duration::ZERO)).await?;
    /// assert_eq!(report.deleted, [orphan]);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "gc", level = "info", skip_all)]
    pub async fn gc(&self, options: GcOptions) -> Result<GcReport> {
        self.collect(options, None).await
    }

    /// [`gc`](Self::gc), reporting its mark phase — the part that grows with the
    /// registry, one read per version's manifest — to `progress`: one
    /// [`Started`](crate::ProgressEvent::Started) with the number of distinct
    /// manifests to read (and `bytes: 0`: a collection moves no file bytes), then
    /// one [`File`](crate::ProgressEvent::File) per manifest read, named
    /// `"<model>/<n> manifest"` after the first version that has it. Listing
    /// and deleting blobs are not reported.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// me.register("fraud", ArtifactSource::bytes("m.bin", "w")?, NewVersion::new()).await?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let progress = Progress::new({
    ///     let seen = Arc::clone(&seen);
    ///     move |e| seen.lock().unwrap().push(e.clone())
    /// });
    /// registry.gc_with_progress(GcOptions::new(Duration::ZERO), progress).await?;
    /// let seen = seen.lock().unwrap();
    /// assert_eq!(seen[0], ProgressEvent::Started { files: 1, bytes: 0 });
    /// assert!(matches!(&seen[1], ProgressEvent::File { path, .. } if path == "fraud/1 manifest"));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn gc_with_progress(
        &self,
        options: GcOptions,
        progress: Progress,
    ) -> Result<GcReport> {
        self.collect(options, Some(&progress)).await
    }

    async fn collect(&self, options: GcOptions, progress: Option<&Progress>) -> Result<GcReport> {
        let meta = self.inner.metadata.as_ref();
        let artifacts = self.inner.artifacts.as_ref();
        let started = Utc::now();
        // A grace period reaching back before the calendar's start leaves no
        // blob old enough (and must not overflow the subtraction).
        let cutoff = chrono::Duration::from_std(options.grace)
            .ok()
            .and_then(|grace| started.checked_sub_signed(grace))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };

        if !options.dry_run {
            for swept in [
                meta.remove_stale_temp_files(options.temp_age).await?,
                artifacts.remove_stale_temp_files(options.temp_age).await?,
            ] {
                report.temp_files += swept.files;
                report.temp_bytes += swept.bytes;
            }
        }

        // Leases left by processes that died protect nothing and would pile up.
        remove_dead_leases(meta, options.dry_run, &mut report).await?;

        // 1. Mark everything the committed versions reference.
        let mut marks = Marks::default();
        report.models = self.mark(&mut marks, progress).await?;

        // 2. List the blobs; keep the referenced and the young.
        let mut listing = artifacts.list().await?;
        let mut unreferenced = Vec::new();
        while let Some(digest) = listing.next().await {
            let digest = digest?;
            report.blobs += 1;
            if marks.referenced.contains(&digest) {
                report.referenced += 1;
            } else {
                unreferenced.push(digest);
            }
        }
        drop(listing);
        let mut candidates = BTreeSet::new();
        for digest in unreferenced {
            match artifacts.head(&digest).await? {
                None => {} // deleted meanwhile (another collector)
                Some(meta) if meta.last_modified.is_some_and(|t| t < cutoff) => {
                    candidates.insert(digest);
                }
                Some(_) => report.young += 1,
            }
        }
        if !candidates.is_empty() {
            // 3. Announce the sweep before reading what is in flight.
            let mut sweep = if options.dry_run {
                None
            } else {
                Some(Sweep::announce(meta, candidates.clone()).await?)
            };
            let swept = self
                .sweep(
                    &options,
                    cutoff,
                    candidates,
                    &mut marks,
                    sweep.as_mut(),
                    &mut report,
                )
                .await;
            if let Some(sweep) = sweep {
                sweep.end(meta).await;
            }
            report.manifests = marks.manifests.len() as u64;
            swept?;
        }
        report.manifests = marks.manifests.len() as u64;

        // 6. Packs: what the blobs deleted above used is now dead in them.
        self.collect_packs(&options, cutoff, &mut report).await?;

        // 7. Checkpoint parts no kept head names (`parts_gc`).
        if meta.keeps_checkpoint_parts() {
            for model in self.list_models().await? {
                parts_gc::sweep(meta, &model, options.grace, options.dry_run, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// Repacks and deletes packs (stores that keep files as chunks in packs),
    /// after the blobs: see docs/design.md, "Garbage collection with packs".
    ///
    /// A registration may name any pack in the recipes it writes (through the
    /// chunks its chunk index offers), so the sweep lease of this step makes
    /// every registration wait, not only those sharing a candidate. Retiring a
    /// pack (step 1) changes no file; deleting one (step 2) is what the
    /// protocol guards: either a registration saw the lease, waited for it to
    /// end and then checks its files (a recipe naming a deleted pack is a file
    /// not stored, stored again), or this collection saw its intent, and then
    /// its recipes are read by step 2, which keeps every pack a recipe names,
    /// or, if its files are not all stored yet, deletes no pack this time.
    async fn collect_packs(
        &self,
        options: &GcOptions,
        cutoff: DateTime<Utc>,
        report: &mut GcReport,
    ) -> Result<()> {
        let meta = self.inner.metadata.as_ref();
        let artifacts = self.inner.artifacts.as_ref();
        let add = |report: &mut GcReport, step: &crate::store::PackCollection| {
            report.packs_repacked += step.repacked;
            report.packs_retired += step.retired;
            report.pack_bytes_copied += step.copied_bytes;
            report.packs_deleted += step.deleted;
            report.pack_bytes_deleted += step.deleted_bytes;
        };
        // Whether there is anything to do, so that a collection with nothing
        // to do makes no registration wait (each plan reads every recipe).
        let planned = artifacts.repack(options.repack_percent, true).await?;
        if options.dry_run {
            add(report, &planned);
            add(report, &artifacts.delete_retired_packs(cutoff, true).await?);
            return Ok(());
        }
        if planned.repacked + planned.retired == 0
            && artifacts.delete_retired_packs(cutoff, true).await?.deleted == 0
        {
            return Ok(());
        }
        let mut sweep = Sweep::announce_packs(meta).await?;
        let result = async {
            // Registrations in flight whose files are not all stored may be
            // about to name any pack: no pack is deleted this time.
            let (intents, _) = read_leases(meta, INTENT_PREFIX).await?;
            let needed: BTreeSet<Digest> = intents
                .into_iter()
                .filter(|(_, intent)| intent.live())
                .flat_map(|(_, intent)| intent.digests)
                .collect();
            let mut defer = !missing(artifacts, &needed).await?.is_empty();
            // Copying may take longer than the lease lives: renew it meanwhile
            // (a renewal that fails stops the collection before any delete).
            let repack = artifacts.repack(options.repack_percent, false);
            tokio::pin!(repack);
            let repacked = loop {
                tokio::select! {
                    done = &mut repack => break done?,
                    () = tokio::time::sleep(SWEEP_RENEW) => sweep.keep_alive(meta).await?,
                }
            };
            add(report, &repacked);
            // Deleting is only safe while registrations still honour the lease.
            defer |= !sweep.holds();
            if !defer {
                sweep.keep_alive(meta).await?;
                // The grace period counts from each pack's retirement, which
                // may be just now.
                let cutoff = chrono::Duration::from_std(options.grace)
                    .ok()
                    .and_then(|grace| Utc::now().checked_sub_signed(grace))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                let deleted = artifacts.delete_retired_packs(cutoff, false).await?;
                add(report, &deleted);
            }
            report.packs_deletion_deferred = defer;
            Ok::<_, Error>(())
        }
        .await;
        sweep.end(meta).await;
        result
    }

    /// Steps 4 and 5 of [`gc`](Self::gc), with the sweep announced (unless a dry
    /// run, which deletes nothing).
    async fn sweep(
        &self,
        options: &GcOptions,
        cutoff: DateTime<Utc>,
        candidates: BTreeSet<Digest>,
        marks: &mut Marks,
        mut sweep: Option<&mut Sweep>,
        report: &mut GcReport,
    ) -> Result<()> {
        let meta = self.inner.metadata.as_ref();
        let artifacts = self.inner.artifacts.as_ref();

        // 4. Spare what registrations in flight announced, and what versions
        //    committed since the first mark reference.
        let mut spared = HashSet::new();
        let (intents, damaged) = read_leases(meta, INTENT_PREFIX).await?;
        let mut dead = damaged;
        for (key, intent) in intents {
            if intent.live() {
                spared.extend(intent.digests);
            } else {
                dead.push(key);
            }
        }
        if !options.dry_run {
            // Their registrations died: the intents protect nothing any more.
            for key in dead {
                meta.delete_lease(&key).await?;
                report.stale_intents += 1;
                report.leases_removed += 1;
            }
        }
        self.mark(marks, None).await?;

        // 5. Delete the rest, each after a last look at its age.
        for digest in candidates {
            if spared.contains(&digest) || marks.referenced.contains(&digest) {
                report.in_flight += 1;
                continue;
            }
            let Some(blob) = artifacts.head(&digest).await? else {
                continue;
            };
            if blob.last_modified.is_none_or(|t| t >= cutoff) {
                report.young += 1;
                continue;
            }
            if let Some(sweep) = sweep.as_deref_mut() {
                sweep.keep_alive(meta).await?;
                artifacts.delete(&digest).await?;
            }
            report.deleted.push(digest);
            report.bytes_freed += blob.size;
        }
        Ok(())
    }

    /// Adds every digest the committed versions reference to `marks`, reading
    /// each manifest not read before, and returns how many models there are.
    async fn mark(&self, marks: &mut Marks, progress: Option<&Progress>) -> Result<u64> {
        let artifacts = self.inner.artifacts.as_ref();
        let models = self.list_models().await?;
        // Every version's manifest, first the list (from the states), then the reads.
        let mut todo = Vec::new();
        for model in &models {
            let (versions, bundles): (Vec<(u64, Digest)>, Vec<Digest>) = self
                .read(model, |s| {
                    let versions = s.versions();
                    (
                        // A purged version references nothing: what only it used
                        // goes. Purges are never undone, so a version unmarked here
                        // cannot reference its blobs again; a new version that
                        // reuses them is protected by its intent (module docs).
                        versions
                            .iter()
                            .filter(|v| v.purged.is_none())
                            .map(|v| (v.number.get(), v.artifact))
                            .collect(),
                        // Signature bundles, referenced by the log alone (a purged
                        // version's too: its record and history stay).
                        versions
                            .iter()
                            .flat_map(|v| v.signatures.iter().map(|s| s.bundle))
                            .collect(),
                    )
                })
                .await?;
            marks.referenced.extend(bundles);
            for (number, artifact) in versions {
                if marks.manifests.insert(artifact) {
                    todo.push((model, number, artifact));
                }
            }
        }
        progress.started(todo.len() as u64, 0);
        for (model, number, artifact) in todo {
            let manifest = fetch::load_manifest(artifacts, &artifact).await?;
            marks.referenced.insert(artifact);
            marks
                .referenced
                .extend(manifest.entries().iter().map(|e| e.digest));
            progress.file(&format!("{model}/{number} manifest"), 0);
        }
        Ok(models.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ArtifactStoreExt;
    use crate::{Actor, ArtifactSource, CreateModel, NewVersion};

    /// A lease for `digests` that expired a minute ago.
    fn expired(digests: BTreeSet<Digest>) -> Bytes {
        let mut record = LeaseRecord::new(Duration::ZERO, digests);
        record.expires = Utc::now() - chrono::Duration::minutes(1);
        record.to_bytes()
    }

    #[tokio::test]
    async fn expired_intents_protect_nothing_and_are_removed() {
        let reg = Registry::in_memory();
        let orphan = reg
            .artifact_store()
            .put_bytes("left by a registration that died".into())
            .await
            .expect("put");
        let meta = reg.metadata_store();
        meta.put_lease("intent-dead", expired(BTreeSet::from([orphan])))
            .await
            .expect("put lease");
        let live = LeaseRecord::new(INTENT_TTL, BTreeSet::from([orphan]));
        meta.put_lease("intent-live", live.to_bytes())
            .await
            .expect("put lease");
        let report = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
        assert_eq!((report.deleted.len(), report.in_flight), (0, 1));
        assert_eq!(report.stale_intents, 1);
        assert_eq!(meta.list_leases().await.expect("list"), ["intent-live"]);

        meta.delete_lease("intent-live").await.expect("delete");
        let report = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
        assert_eq!(report.deleted, [orphan]);
    }

    #[tokio::test]
    async fn an_expired_sweep_does_not_hold_up_a_registration() {
        let reg = Registry::in_memory();
        let alice = Actor::new("alice").expect("actor");
        reg.acting_as(alice.clone())
            .create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        let digest = Digest::of(b"weights");
        reg.metadata_store()
            .put_lease("gc-dead", expired(BTreeSet::from([digest])))
            .await
            .expect("put lease");
        let source = ArtifactSource::bytes("model.bin", "weights").expect("source");
        let registered = tokio::time::timeout(
            Duration::from_secs(5),
            reg.acting_as(alice)
                .register("fraud", source, NewVersion::new()),
        )
        .await
        .expect("no wait for a dead collector")
        .expect("register");
        assert_eq!(registered.number.get(), 1);
    }

    /// A registration in flight whose files are not stored yet may name any
    /// pack: the collection retires packs but deletes none, until it is gone.
    #[tokio::test]
    async fn pack_deletion_waits_for_registrations_that_have_not_stored_their_files() {
        use crate::store::{LocalArtifactOptions, LocalArtifactStore, PackOptions};
        let dir = tempfile::tempdir().expect("tempdir");
        let options = PackOptions::new().min_file_size(0).pack_size(1 << 20);
        let store =
            LocalArtifactStore::open_with(dir.path(), LocalArtifactOptions::new().packed(options))
                .expect("store");
        let reg = Registry::builder()
            .metadata(std::sync::Arc::new(crate::store::MemoryMetadataStore::new()))
            .artifacts(std::sync::Arc::new(store))
            .build()
            .expect("registry");
        let me = reg.acting_as(Actor::new("alice").expect("actor"));
        me.create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        let mut rng = fastrand::Rng::with_seed(7);
        let bytes: Vec<u8> = (0..(1 << 20)).map(|_| rng.u8(..)).collect();
        let source = ArtifactSource::files([("m.bin", bytes)]).expect("source");
        me.register("fraud", source, NewVersion::new())
            .await
            .expect("register");
        me.purge_version("fraud/1", "gone").await.expect("purge");
        let unstored = LeaseRecord::new(INTENT_TTL, BTreeSet::from([Digest::of(b"to come")]));
        let meta = reg.metadata_store();
        meta.put_lease("intent-in-flight", unstored.to_bytes())
            .await
            .expect("put lease");
        let held = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
        assert!(held.packs_retired > 0, "{held:?}");
        assert!(held.packs_deletion_deferred);
        assert_eq!(held.packs_deleted, 0);

        meta.delete_lease("intent-in-flight").await.expect("delete");
        let freed = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
        assert!(!freed.packs_deletion_deferred);
        assert_eq!(freed.packs_deleted, held.packs_retired, "{freed:?}");
        assert!(freed.pack_bytes_deleted >= 1 << 20);
    }

    #[tokio::test]
    async fn leases_from_a_newer_format_are_refused() {
        let mut record = LeaseRecord::new(INTENT_TTL, BTreeSet::new());
        record.format = LEASE_FORMAT + 1;
        let bytes = record.to_bytes();
        assert!(matches!(
            LeaseRecord::from_bytes("intent-x", &bytes),
            Err(Error::UnsupportedFormat { found, .. }) if found == LEASE_FORMAT + 1
        ));
        let ok = LeaseRecord::new(INTENT_TTL, BTreeSet::from([Digest::of(b"x")]));
        assert_eq!(
            LeaseRecord::from_bytes("intent-x", &ok.to_bytes()).expect("decodes"),
            ok
        );
    }
}
