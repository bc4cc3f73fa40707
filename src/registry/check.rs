//! `Registry::check`: a read-only audit of everything the registry holds.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Registry, fetch};
use crate::digest::Digest;
use crate::domain::{Event, ModelName, ModelState, RelPath, VersionNumber};
use crate::error::{Error, Result};
use crate::progress::{FileProgress, Progress, ProgressExt};
use crate::store::MetadataItem;

/// One problem [`Registry::check`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What is affected, e.g. `event 12 of model 'fraud'`, `fraud/3 file 'model.bin'`.
    pub subject: String,
    /// What is wrong, in words (the error that reading it gave).
    pub detail: String,
    /// Where the damaged or missing thing is stored: a file path or object URL, as
    /// the store names it ([`MetadataStore::location`](crate::store::MetadataStore::location),
    /// [`ArtifactStore::location`](crate::store::ArtifactStore::location)). `None`
    /// when the problem is not one stored item (a log that cannot be listed).
    pub location: Option<String>,
}

/// What [`Registry::check`] looked at and what it found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Models whose logs were read.
    pub models: u64,
    /// Events decoded and folded.
    pub events: u64,
    /// Checkpoints compared with the log.
    pub checkpoints: u64,
    /// Versions whose artifacts were checked (every version but the purged ones).
    pub versions: u64,
    /// Distinct blobs re-hashed (manifests included).
    pub blobs: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Every problem found; empty when the registry is sound.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(
        &mut self,
        subject: impl Into<String>,
        location: Option<String>,
        detail: impl ToString,
    ) {
        self.problems.push(Problem {
            subject: subject.into(),
            detail: detail.to_string(),
            location,
        });
    }
}

impl Registry {
    /// Adds where record `seq` of `model`'s log is stored to an error about its
    /// bytes (see [`Error::location`]); other errors pass unchanged.
    pub(super) fn record_at(&self, model: &ModelName, seq: u64) -> impl Fn(Error) -> Error + '_ {
        let model = model.clone();
        move |e| {
            e.at(|| {
                self.inner
                    .metadata
                    .location(model.as_str(), MetadataItem::Record(seq))
            })
        }
    }

    /// Reads and verifies everything, changing nothing: every model's log
    /// (checksums, formats, the fold's rules), its latest checkpoint against the
    /// log, and every version's manifest and blobs (present, and re-hashed to
    /// their digests; each distinct blob once). Every problem found is reported,
    /// with where the damaged item is stored ([`Problem::location`]); the check
    /// goes on past it. Fails only if the models cannot be listed.
    ///
    /// Reads never fail on a damaged checkpoint (they ignore it and replay the
    /// log); this is where one is reported.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// me.register("fraud", ArtifactSource::bytes("m.bin", "w")?, NewVersion::new()).await?;
    /// let report = registry.check().await?;
    /// assert!(report.is_ok(), "{:?}", report.problems);
    /// assert_eq!((report.models, report.versions, report.blobs), (1, 1, 2));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "check", level = "info", skip_all)]
    pub async fn check(&self) -> Result<CheckReport> {
        self.check_all(None).await
    }

    /// [`check`](Registry::check), reporting to `progress`.
    ///
    /// The check works in two passes: it first reads every log and every
    /// version's manifest (each manifest is hashed as it is read), which tells it
    /// every blob and its size, then re-hashes the files' blobs. So the events
    /// mean:
    ///
    /// - [`ProgressEvent::Started`](crate::ProgressEvent::Started), after the
    ///   first pass: `files` is the number of distinct blobs, manifests included,
    ///   and `bytes` their total size as the manifests give it (manifests by
    ///   their length). Until then, which may take a while on a registry of many
    ///   models, nothing is reported.
    /// - [`ProgressEvent::File`](crate::ProgressEvent::File), once per distinct
    ///   blob: first every manifest that was read (`path` is `"<model>/<n>
    ///   manifest"`, naming the first version that has it), then each file's
    ///   blob once re-hashed (`"<model>/<n> file '<path>'"`, the first version
    ///   and path that name it). A blob that is missing or damaged is reported
    ///   too, with its expected size, so the sizes add up to `Started`'s `bytes`.
    ///   A manifest that cannot be read is not a blob to hash and has no event.
    /// - [`ProgressEvent::Bytes`](crate::ProgressEvent::Bytes) while a blob is
    ///   re-hashed, and before each `File` the rest of its size (a manifest's
    ///   whole length, read in the first pass), so the deltas add up to
    ///   `Started`'s `bytes` too, damaged blobs included.
    ///
    /// So the number of `File` events is [`CheckReport::blobs`], and on a sound
    /// registry their bytes, like the deltas, add up to [`CheckReport::bytes`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// me.register("fraud", ArtifactSource::bytes("m.bin", "w")?, NewVersion::new()).await?;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let progress = Progress::new({
    ///     let seen = Arc::clone(&seen);
    ///     move |e| seen.lock().unwrap().push(e.clone())
    /// });
    /// let report = registry.check_with_progress(progress).await?;
    /// let seen = seen.lock().unwrap();
    /// assert_eq!(seen[0], ProgressEvent::Started { files: report.blobs, bytes: report.bytes });
    /// let files: Vec<_> = seen.iter().filter(|e| matches!(e, ProgressEvent::File { .. })).collect();
    /// assert!(matches!(files[0], ProgressEvent::File { path, .. } if path == "fraud/1 manifest"));
    /// assert!(matches!(files[1], ProgressEvent::File { path, bytes: 1 } if path == "fraud/1 file 'm.bin'"));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "check", level = "info", skip_all)]
    pub async fn check_with_progress(&self, progress: Progress) -> Result<CheckReport> {
        self.check_all(Some(&progress)).await
    }

    /// The implementation of [`check`](Registry::check) and
    /// [`check_with_progress`](Registry::check_with_progress).
    async fn check_all(&self, progress: Option<&Progress>) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut blobs = Blobs::default();
        for model in self.list_models().await? {
            report.models += 1;
            let Some(state) = self.check_log(&model, &mut report).await else {
                continue;
            };
            // A purged version's files are not kept: nothing of it to check.
            for v in state.versions().iter().filter(|v| v.purged.is_none()) {
                report.versions += 1;
                self.check_manifest(&model, v.number, &v.artifact, &mut blobs, &mut report)
                    .await;
            }
        }
        let Blobs {
            seen,
            manifests,
            files,
        } = blobs;
        report.blobs = seen.len() as u64;
        let total = manifests.iter().map(|(_, size)| size).sum::<u64>()
            + files.iter().map(|f| f.size).sum::<u64>();
        progress.started(report.blobs, total);
        for (version, size) in &manifests {
            progress.file(&format!("{version} manifest"), *size);
        }
        let store = self.inner.artifacts.as_ref();
        for f in files {
            let name = format!("{} file '{}'", f.version, f.path);
            let subject = format!("{name} ({})", f.digest);
            let file = FileProgress::new(progress, f.size);
            let checked = file.track(store.hash_stored(&f.digest)).await;
            // An error that names where the damage is (a pack) says it best.
            let location = match &checked {
                Err(e) if e.location().is_some() => e.location().map(str::to_owned),
                _ => Some(store.location(&f.digest)),
            };
            match checked {
                Ok((actual, size)) if actual == f.digest && size == f.size => report.bytes += size,
                Ok((actual, _)) => report.problem(
                    subject,
                    location,
                    Error::Integrity {
                        what: "blob".into(),
                        expected: f.digest,
                        actual,
                        location: Some(store.location(&f.digest)),
                    },
                ),
                Err(err) => report.problem(subject, location, err),
            }
            file.done(&name, f.size);
        }
        Ok(report)
    }

    /// Folds a model's whole log (no checkpoint) and compares its latest
    /// checkpoint with the fold at the same position.
    async fn check_log(&self, model: &ModelName, report: &mut CheckReport) -> Option<ModelState> {
        let meta = &self.inner.metadata;
        let mut states: Option<ModelState> = None;
        let mut checkpoint_state = None;
        let checkpoint = match meta.latest_checkpoint(model.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                report.problem(format!("checkpoint of model '{model}'"), None, e);
                None
            }
        };
        let mut after = 0;
        loop {
            let batch = match meta
                .read_after(model.as_str(), after, super::READ_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    report.problem(format!("log of model '{model}'"), None, e);
                    return None;
                }
            };
            let done = batch.len() < super::READ_BATCH;
            for rec in batch {
                after = rec.seq;
                let folded = Event::from_bytes(model, rec.seq, &rec.bytes).and_then(|e| {
                    report.events += 1;
                    match states.as_mut() {
                        Some(s) => s.apply(e),
                        None => ModelState::genesis(&e).map(|s| states = Some(s)),
                    }
                });
                if let Err(e) = folded.map_err(self.record_at(model, rec.seq)) {
                    let location = e.location().map(str::to_owned).or_else(|| {
                        Some(meta.location(model.as_str(), MetadataItem::Record(rec.seq)))
                    });
                    report.problem(format!("event {} of model '{model}'", rec.seq), location, e);
                    return None;
                }
                if checkpoint.as_ref().is_some_and(|c| c.seq == rec.seq) {
                    checkpoint_state = states.clone();
                }
            }
            if done {
                break;
            }
        }
        if let Some(c) = checkpoint {
            report.checkpoints += 1;
            let subject = format!("checkpoint {} of model '{model}'", c.seq);
            let location = meta.location(model.as_str(), MetadataItem::Checkpoint(c.seq));
            // A format 5 checkpoint is read with its segments, each checked
            // against its digest: a damaged segment is a damaged checkpoint.
            let read = crate::format::read_checkpoint(meta.as_ref(), model, c).await;
            match (read, checkpoint_state) {
                (Err(e), _) => {
                    let e = e.at(|| location.clone());
                    report.problem(subject, Some(location), e)
                }
                (Ok(_), None) => report.problem(
                    subject,
                    Some(location),
                    "covers events the log does not have",
                ),
                (Ok(cp), Some(folded)) if cp != folded => report.problem(
                    subject,
                    Some(location),
                    "disagrees with the fold of the log",
                ),
                (Ok(_), Some(_)) => {}
            }
        }
        states
    }

    /// Reads and checks a version's manifest and adds it, and the blobs it names,
    /// to `blobs` (each distinct blob once).
    async fn check_manifest(
        &self,
        model: &ModelName,
        number: VersionNumber,
        artifact: &Digest,
        blobs: &mut Blobs,
        report: &mut CheckReport,
    ) {
        let store = self.inner.artifacts.as_ref();
        let manifest = match fetch::load_manifest(store, artifact).await {
            Ok(m) => m,
            Err(e) => {
                report.problem(
                    format!("{model}/{number} manifest {artifact}"),
                    Some(store.location(artifact)),
                    e,
                );
                return;
            }
        };
        let version: Arc<str> = format!("{model}/{number}").into();
        if blobs.seen.insert(*artifact) {
            let size = manifest.to_bytes().len() as u64;
            report.bytes += size;
            blobs.manifests.push((Arc::clone(&version), size));
        }
        for e in manifest.entries() {
            if blobs.seen.insert(e.digest) {
                blobs.files.push(FileBlob {
                    version: Arc::clone(&version),
                    path: e.path.clone(),
                    digest: e.digest,
                    size: e.size,
                });
            }
        }
    }
}

/// What a check's first pass found to hash: each distinct blob once, with the
/// first version (and path) that names it.
#[derive(Default)]
struct Blobs {
    /// Every blob taken: manifests read and files' blobs.
    seen: BTreeSet<Digest>,
    /// The manifests read (and hashed as they were): version and length.
    manifests: Vec<(Arc<str>, u64)>,
    /// The files' blobs, to re-hash.
    files: Vec<FileBlob>,
}

/// A file's blob to re-hash.
struct FileBlob {
    /// `model/number`.
    version: Arc<str>,
    path: RelPath,
    digest: Digest,
    /// The size its manifest gives.
    size: u64,
}
