//! The command surface: the implementations behind `Session`'s writes
//! (`create_model`, `register`, …) and the queries (`resolve`, `list_versions`,
//! `events`, `manifest`, `fetch`, `verify`, …), each built on the engine's
//! `read` and `commit`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::{
    Actor, Event, EventKind, Manifest, MetricName, MetricSpec, ModelName, ModelState, Stage,
    TagKey, Tags, VersionRecord, VersionRef,
};
use crate::error::{Error, Result};
use crate::progress::{FileProgress, Progress, ProgressExt};
use crate::store::MetadataStore;

use super::ingest::blocking;
use super::{
    ArtifactSource, CreateModel, FetchOptions, FetchReport, IntoMetrics, IntoModelName,
    IntoVersionRef, NewVersion, RegisterReport, Registered, Registry, VerifyReport, VersionFilter,
    fetch, gc, ingest, lock,
};

impl Registry {
    // ----- commands -------------------------------------------------------------

    /// The implementation of [`Session::create_model`](super::Session::create_model).
    pub(crate) async fn create_model(
        &self,
        model: impl IntoModelName,
        options: CreateModel,
        actor: &Actor,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        options.error.check()?;
        let event = Event {
            seq: 1,
            model: model.clone(),
            time: Utc::now(),
            actor: actor.clone(),
            kind: EventKind::ModelCreated {
                description: options.description,
                metric_specs: options.metric_specs,
                tags: options.tags,
            },
        };
        let state = ModelState::genesis(&event)?;
        let slot = self.slot(&model);
        let bytes = Bytes::from(crate::domain::limits::encode(&event)?);
        match self.append(&model, 1, bytes.clone()).await {
            Ok(()) => {
                let mut cached = slot.write();
                if cached.is_none() {
                    *cached = Some(Arc::new(state.clone()));
                    self.keep_raw(&slot, vec![crate::store::LogRecord { seq: 1, bytes }]);
                }
                Ok(state)
            }
            Err(Error::AlreadyExists { .. }) => {
                Err(Error::already_exists(format!("model '{model}'")))
            }
            Err(e) => Err(e),
        }
    }

    /// The implementation of [`Session::register`](super::Session::register):
    /// [`register_uncounted`](Self::register_uncounted), with what the artifact
    /// store sent for it counted into the report.
    pub(crate) async fn register(
        &self,
        model: impl IntoModelName,
        source: ArtifactSource,
        version: NewVersion,
        actor: &Actor,
    ) -> Result<Registered> {
        let (registered, traffic) =
            crate::store::traffic::counted(self.register_uncounted(model, source, version, actor))
                .await;
        let mut registered = registered?;
        registered.report.requests_sent = traffic.requests;
        registered.report.bytes_sent = traffic.bytes_sent;
        Ok(registered)
    }

    async fn register_uncounted(
        &self,
        model: impl IntoModelName,
        source: ArtifactSource,
        version: NewVersion,
        actor: &Actor,
    ) -> Result<Registered> {
        let started = std::time::Instant::now();
        let model = model.into_model_name()?;
        let mut version = version;
        version.error.check()?;
        self.resolve_parents(&mut version).await?;
        if version.capture_environment || version.capture_code.is_some() {
            version = blocking(move || crate::capture::fill_in(version)).await?;
        }
        // Before anything clones it: validation is depth-bounded, cloning is not.
        version.provenance.check()?;
        // Parents must exist, and none may descend from the new version.
        self.check_lineage(&model, &version.provenance.parents)
            .await?;
        // Check everything that can be checked before moving any bytes. On the
        // cached state when there is one (no store round trip: one GET fewer
        // per registration on object storage): `commit` folds the log and
        // checks again before anything is appended, so a state that is behind
        // can only let a registration through to that check. A refusal is
        // only reported from the log's current state.
        let placeholder = crate::digest::Digest::of(b"");
        let check = |s: &ModelState| {
            s.check(&registered(
                s,
                &version,
                actor,
                placeholder,
                0,
                0,
                Utc::now(),
            ))
        };
        if !matches!(self.cached(&model, check), Some(Ok(()))) {
            self.read(&model, check).await??;
        }

        let artifacts = self.inner.artifacts.as_ref();
        let meta = self.inner.metadata.as_ref();
        // Announce the blobs to garbage collectors before relying on them (gc.rs).
        let (manifest, digest, stats, mut intent, prepared) =
            match ingest::Planned::of(&source).await? {
                // In-memory files: every digest is known before anything is stored, so
                // the intent is written while the blobs are, and the event is built
                // and its durable write done (not published) while they are too. What
                // makes the blobs safe is the check after all three
                // (`secure_blobs`), not their order; what makes the event durable
                // only after them is that it is published after that check.
                Some(planned) => {
                    let needed = planned.digests();
                    let (digest, size, files) = planned.sizes();
                    let event = self.prepare_commit(&model, actor, |s, time| {
                        Ok(registered(s, &version, actor, digest, size, files, time))
                    });
                    let stored = planned.store(artifacts, version.progress.as_ref());
                    let (stored, announced, prepared) =
                        futures::join!(stored, gc::Intent::announce(meta, needed), event);
                    match (stored.and_then(|s| Ok((s, prepared?))), announced) {
                        (Ok(((manifest, digest, stats), prepared)), Ok(intent)) => {
                            (manifest, digest, stats, intent, prepared)
                        }
                        (Err(e), Ok(intent)) => {
                            intent.withdraw(meta).await;
                            return Err(e);
                        }
                        (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
                    }
                }
                // Files on disk are named by the digest of what the store holds,
                // known once they are stored; then their manifest, the intent and
                // the event's durable write go at once, as above.
                None => {
                    let (manifest, mut stats, deferred) = ingest::ingest_files(
                        artifacts,
                        source.clone(),
                        self.inner.hash_cache.as_ref(),
                        version.link,
                        version.progress.as_ref(),
                    )
                    .await?;
                    let (digest, bytes) = ingest::manifest_blob(&manifest).await?;
                    let needed = std::iter::once(digest)
                        .chain(manifest.entries().iter().map(|e| e.digest))
                        .collect();
                    let (size, files) = (manifest.total_size(), manifest.len() as u64);
                    let event = self.prepare_commit(&model, actor, |s, time| {
                        Ok(registered(s, &version, actor, digest, size, files, time))
                    });
                    let stored = async {
                        let (files, manifest) = futures::join!(
                            ingest::store_blobs(artifacts, deferred),
                            artifacts.put_bytes_if_absent(&digest, bytes)
                        );
                        manifest?;
                        files
                    };
                    let (stored, announced, prepared) =
                        futures::join!(stored, gc::Intent::announce(meta, needed), event);
                    match (stored.and_then(|s| Ok((s, prepared?))), announced) {
                        (Ok((deferred, prepared)), Ok(intent)) => {
                            stats.add(deferred);
                            (manifest, digest, stats, intent, prepared)
                        }
                        (Err(e), Ok(intent)) => {
                            intent.withdraw(meta).await;
                            return Err(e);
                        }
                        (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
                    }
                }
            };
        let committed = async {
            self.secure_blobs(&mut intent, &source, &manifest, digest)
                .await?;
            let (size, files) = (manifest.total_size(), manifest.len() as u64);
            let (_, record) = self
                .commit_prepared(&model, actor, prepared, |s, time| {
                    Ok(registered(s, &version, actor, digest, size, files, time))
                })
                .await?;
            record.ok_or_else(|| {
                Error::not_found(format!("the version just registered in model '{model}'"))
            })
        }
        .await;
        intent.withdraw(meta).await;
        let version = committed?;
        Ok(Registered {
            report: RegisterReport {
                files: version.files,
                bytes: version.size,
                files_stored: stats.files_stored,
                bytes_stored: stats.bytes_stored,
                files_present: stats.files_present,
                bytes_present: stats.bytes_present,
                files_linked: stats.files_linked,
                files_copied: stats.files_copied,
                hash_cache_hits: stats.hash_cache_hits,
                requests_sent: 0,
                bytes_sent: 0,
                elapsed: started.elapsed(),
            },
            version,
        })
    }

    /// Resolves the parents given as references ([`NewVersion::parent`]) to
    /// numbered parents in the provenance.
    pub(super) async fn resolve_parents(&self, version: &mut NewVersion) -> Result<()> {
        for (r, relation) in std::mem::take(&mut version.parents) {
            let parent = self.resolve(&r).await?;
            version.provenance.parents.push(crate::domain::ParentRef {
                model: r.model.clone(),
                version: parent.number,
                relation,
            });
        }
        Ok(())
    }

    /// The implementation of [`Session::add_metrics`](super::Session::add_metrics)
    /// and of [`Override::add_metrics`](super::Override::add_metrics)
    /// (`overridden`: the override's reason).
    pub(crate) async fn add_metrics(
        &self,
        version: impl IntoVersionRef,
        metrics: impl IntoMetrics,
        actor: &Actor,
        overridden: Option<&str>,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        let metrics = metrics.into_metrics()?;
        self.commit_on_mutable_version(&r, actor, "metrics", overridden, |number| {
            EventKind::MetricsAdded {
                version: number,
                metrics: metrics.clone(),
                overridden: overridden.map(str::to_owned),
            }
        })
        .await
    }

    /// The implementation of [`Session::set_version_tags`](super::Session::set_version_tags)
    /// and of [`Override::set_version_tags`](super::Override::set_version_tags).
    pub(crate) async fn set_version_tags(
        &self,
        version: impl IntoVersionRef,
        set: Tags,
        remove: Vec<TagKey>,
        actor: &Actor,
        overridden: Option<&str>,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        self.commit_on_mutable_version(&r, actor, "tags", overridden, |number| EventKind::TagsSet {
            version: Some(number),
            set: set.clone(),
            removed: remove.clone(),
            overridden: overridden.map(str::to_owned),
        })
        .await
    }

    /// The implementation of [`Session::set_version_description`](super::Session::set_version_description)
    /// and of [`Override::set_version_description`](super::Override::set_version_description).
    pub(crate) async fn set_version_description(
        &self,
        version: impl IntoVersionRef,
        description: String,
        actor: &Actor,
        overridden: Option<&str>,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        self.commit_on_mutable_version(&r, actor, "description", overridden, |number| {
            EventKind::VersionDescriptionSet {
                version: number,
                description: description.clone(),
                overridden: overridden.map(str::to_owned),
            }
        })
        .await
    }

    /// Appends the event `make` builds for the version `r` names, unless the
    /// version is in production ([`Error::Immutable`], naming `what`), where
    /// only an override (`overridden`: its reason) may change it. Decided on the
    /// state each attempt folds, so a promotion that lands first is seen.
    async fn commit_on_mutable_version(
        &self,
        r: &VersionRef,
        actor: &Actor,
        what: &'static str,
        overridden: Option<&str>,
        make: impl Fn(crate::domain::VersionNumber) -> EventKind,
    ) -> Result<VersionRecord> {
        let mut number = None;
        let (_, record) = self
            .commit(&r.model, actor, |s, _| {
                let v = pinned_version(s, r, &mut number)?;
                if v.stage == Stage::Production && overridden.is_none() {
                    return Err(Error::Immutable {
                        model: s.name().to_string(),
                        version: v.number.get(),
                        stage: v.stage,
                        what,
                    });
                }
                Ok(make(v.number))
            })
            .await?;
        record.ok_or_else(|| Error::version_not_found(&r.model, r))
    }

    /// The implementation of [`Session::deprecate`](super::Session::deprecate).
    pub(crate) async fn deprecate(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
        actor: &Actor,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        let reason = reason.into();
        self.commit_on_version(&r, actor, |number| EventKind::VersionDeprecated {
            version: number,
            reason: reason.clone(),
        })
        .await
    }

    /// The implementation of [`Session::set_model_tags`](super::Session::set_model_tags).
    pub(crate) async fn set_model_tags(
        &self,
        model: impl IntoModelName,
        set: Tags,
        remove: Vec<TagKey>,
        actor: &Actor,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        self.commit(&model, actor, |_, _| {
            Ok(EventKind::TagsSet {
                version: None,
                set: set.clone(),
                removed: remove.clone(),
                overridden: None,
            })
        })
        .await?;
        self.model(&model).await
    }

    /// The implementation of [`Session::set_metric_specs`](super::Session::set_metric_specs).
    pub(crate) async fn set_metric_specs(
        &self,
        model: impl IntoModelName,
        specs: BTreeMap<MetricName, MetricSpec>,
        actor: &Actor,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        self.commit(&model, actor, |_, _| {
            Ok(EventKind::MetricSpecsSet {
                specs: specs.clone(),
            })
        })
        .await?;
        self.model(&model).await
    }

    // ----- queries --------------------------------------------------------------

    /// The names of all models, sorted.
    pub async fn list_models(&self) -> Result<Vec<ModelName>> {
        let mut names: Vec<ModelName> = self
            .inner
            .metadata
            .list_logs()
            .await?
            .into_iter()
            // A key that is not a model name is not one of our logs.
            .filter_map(|k| {
                ModelName::new(&k)
                    .inspect_err(|e| tracing::warn!(key = %k, error = %e, "skipping a log that is not a model's"))
                    .ok()
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The current state of a model: description, specs, tags and every version.
    pub async fn model(&self, model: impl IntoModelName) -> Result<ModelState> {
        let model = model.into_model_name()?;
        self.read(&model, ModelState::clone).await
    }

    /// Resolves a reference to its version.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry};
    /// let registry = Registry::in_memory();
    /// let alice = Actor::new("alice")?;
    /// registry.acting_as(alice.clone()).create_model("fraud", CreateModel::new()).await?;
    /// let v1 = registry
    ///     .acting_as(alice).register("fraud", ArtifactSource::bytes("model.bin", "weights")?, NewVersion::new())
    ///     .await?;
    /// assert_eq!(registry.resolve("fraud@latest").await?.number, v1.number);
    /// assert_eq!(registry.resolve(format!("fraud#{}", v1.artifact)).await?.number, v1.number);
    /// assert!(registry.resolve("fraud/2").await.is_err());
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn resolve(&self, reference: impl IntoVersionRef) -> Result<VersionRecord> {
        let r = reference.into_version_ref()?;
        self.read(&r.model, |s| s.resolve(&r.selector).cloned())
            .await?
    }

    /// [`resolve`](Self::resolve) without copying the record: the version as
    /// the cached state shares it. For callers that only read it (the server
    /// serializes one per request; a copy is ~30 allocations).
    pub(crate) async fn resolve_shared(
        &self,
        reference: impl IntoVersionRef,
    ) -> Result<Arc<VersionRecord>> {
        let r = reference.into_version_ref()?;
        self.read(&r.model, |s| {
            let n = s.resolve(&r.selector)?.number;
            s.shared_version(n)
                .cloned()
                .ok_or_else(|| Error::version_not_found(&r.model, &r))
        })
        .await?
    }

    /// The versions of a model that match `filter`, oldest first.
    ///
    /// The records are shared with the registry's cached state, so listing
    /// copies a pointer per version, not the version: listing 100,000 versions
    /// takes about a millisecond.
    pub async fn list_versions(
        &self,
        model: impl IntoModelName,
        filter: &VersionFilter,
    ) -> Result<Vec<Arc<VersionRecord>>> {
        let model = model.into_model_name()?;
        filter.error.check()?;
        self.read(&model, |s| {
            s.versions()
                .iter()
                .filter(|v| filter.matches(v))
                .cloned()
                .collect()
        })
        .await
    }

    /// At most `limit` events of a model after the event numbered `after`
    /// (0: from the first), oldest first: how a follower catches up from
    /// where it left off without reading the log from its start. An empty list
    /// means nothing newer (the model must exist).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// me.register("fraud", ArtifactSource::bytes("m.bin", "v1")?, NewVersion::new()).await?;
    /// let newer = registry.events_after("fraud", 1, 100).await?;
    /// assert_eq!(newer.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    /// assert!(registry.events_after("fraud", 2, 100).await?.is_empty());
    /// assert!(registry.events_after("nope", 0, 100).await.is_err());
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn events_after(
        &self,
        model: impl IntoModelName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let model = model.into_model_name()?;
        let mut events = Vec::new();
        if limit > 0 {
            self.read_log(&model, after, |event, _| {
                events.push(event);
                Ok(events.len() < limit)
            })
            .await?;
        }
        if events.is_empty() {
            // Tell "nothing newer" from "no such model".
            self.model(model).await?;
        }
        Ok(events)
    }

    /// Every event of a model, oldest first: the raw log. See
    /// [`history`](Self::history) for the filtered audit trail.
    pub async fn events(&self, model: impl IntoModelName) -> Result<Vec<Event>> {
        let model = model.into_model_name()?;
        let mut events = Vec::new();
        self.read_log(&model, 0, |event, _| {
            events.push(event);
            Ok(true)
        })
        .await?;
        if events.is_empty() {
            return Err(Error::model_not_found(&model));
        }
        Ok(events)
    }

    /// The manifest of a version's artifact: read and verified the first time,
    /// then kept (a manifest is immutable: its digest is its name).
    /// [`Error::Purged`] for a version whose artifact was purged.
    pub async fn manifest(&self, reference: impl IntoVersionRef) -> Result<Manifest> {
        let v = self.resolve_shared(reference).await?;
        super::retention::live(&v)?;
        Ok(Manifest::clone(
            &*self.verified_manifest(&v.artifact).await?,
        ))
    }

    /// The verified manifest stored under `digest`, kept after the first read.
    pub(crate) async fn verified_manifest(
        &self,
        digest: &crate::digest::Digest,
    ) -> Result<Arc<Manifest>> {
        self.inner
            .manifests
            .get(self.inner.artifacts.as_ref(), digest)
            .await
    }

    /// Writes a version's files into `dest`, verified. [`Error::Purged`] for a
    /// version whose artifact was purged.
    ///
    /// `dest` must not exist or be an empty directory. Files are written into a
    /// staging directory beside it and re-hashed; only when every digest matches is
    /// it renamed to `dest`. On any failure — a corrupt or missing blob, a full disk —
    /// `dest` is left as it was and no partial files remain.
    ///
    /// Dropping the returned future (cancelling the fetch, on Ctrl-C say) removes
    /// the staging directory before the drop returns (or, dropped while the
    /// directory was being created, as soon as it is). `dest` is left as it was,
    /// unless the drop came while the verified directory was being renamed, in
    /// which case `dest` may still appear, whole. Progress is reported to
    /// [`FetchOptions::progress`].
    #[tracing::instrument(name = "fetch", level = "info", skip_all)]
    pub async fn fetch(
        &self,
        reference: impl IntoVersionRef,
        dest: impl AsRef<Path>,
        options: FetchOptions,
    ) -> Result<FetchReport> {
        let r = reference.into_version_ref()?;
        let v = self.resolve(&r).await?;
        super::retention::live(&v)?;
        let what = format!("{}/{}", r.model, v.number);
        let store = self.inner.artifacts.as_ref();
        let manifest = self.verified_manifest(&v.artifact).await?;
        if let Some(policy) = &options.trust {
            self.check_signatures(&v, Arc::clone(&manifest), policy)
                .await?
                .into_result()?;
        }
        let progress = options.progress.as_ref();
        fetch::fetch_into(
            store,
            &manifest,
            dest.as_ref(),
            options.link,
            &what,
            progress,
            options.trust.is_some() || options.check_sha256,
        )
        .await
    }

    /// Re-hashes every blob of a version in the store: [`Error::Integrity`] names the
    /// first file whose bytes do not match, [`Error::NotFound`] the first missing one.
    #[tracing::instrument(name = "verify", level = "info", skip_all)]
    pub async fn verify(&self, reference: impl IntoVersionRef) -> Result<VerifyReport> {
        self.verify_files(reference, None).await
    }

    /// [`verify`](Registry::verify), reporting to `progress`: one
    /// [`ProgressEvent::Started`](crate::ProgressEvent::Started) with the
    /// version's number of files and total size (from its manifest), then
    /// [`ProgressEvent::Bytes`](crate::ProgressEvent::Bytes) as each blob is
    /// re-hashed and one [`ProgressEvent::File`](crate::ProgressEvent::File) per
    /// file whose blob matched, in manifest order. On success the deltas, and
    /// the files' sizes, add up to the total; a failure stops the events at the
    /// file that failed.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// let files = ArtifactSource::files([("a.bin", "aaaa"), ("b.bin", "bb")])?;
    /// me.register("fraud", files, NewVersion::new()).await?;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let progress = Progress::new({
    ///     let seen = Arc::clone(&seen);
    ///     move |e| seen.lock().unwrap().push(e.clone())
    /// });
    /// let report = registry.verify_with_progress("fraud/1", progress).await?;
    /// assert_eq!((report.files, report.bytes), (2, 6));
    /// // Started, then for a.bin and b.bin each its bytes and its File.
    /// assert_eq!(seen.lock().unwrap().len(), 5);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "verify", level = "info", skip_all)]
    pub async fn verify_with_progress(
        &self,
        reference: impl IntoVersionRef,
        progress: Progress,
    ) -> Result<VerifyReport> {
        self.verify_files(reference, Some(&progress)).await
    }

    /// The implementation of [`verify`](Registry::verify) and
    /// [`verify_with_progress`](Registry::verify_with_progress).
    async fn verify_files(
        &self,
        reference: impl IntoVersionRef,
        progress: Option<&Progress>,
    ) -> Result<VerifyReport> {
        let r = reference.into_version_ref()?;
        let v = self.resolve(&r).await?;
        super::retention::live(&v)?;
        let store = self.inner.artifacts.as_ref();
        let manifest = fetch::load_manifest(store, &v.artifact).await?;
        progress.started(manifest.len() as u64, manifest.total_size());
        let mut report = VerifyReport { files: 0, bytes: 0 };
        for e in manifest.entries() {
            let what = || format!("file '{}' of {}/{}", e.path, r.model, v.number);
            let file = FileProgress::new(progress, e.size);
            let (actual, size) = file
                .track(store.hash_stored(&e.digest))
                .await
                .map_err(|err| match err {
                    Error::NotFound { .. } => {
                        Error::blob_not_found(e.digest, format!("blob {} ({})", e.digest, what()))
                    }
                    err => err,
                })?;
            if actual != e.digest || size != e.size {
                return Err(Error::Integrity {
                    what: what(),
                    expected: e.digest,
                    actual,
                    location: Some(store.location(&e.digest)),
                });
            }
            report.files += 1;
            report.bytes += size;
            file.done(e.path.as_str(), size);
        }
        Ok(report)
    }

    /// Drops the cached state of every model, so the next read folds from the
    /// stores again (from the latest checkpoint). Reads pick up other writers'
    /// events without this; it is for tests and for shedding memory.
    pub fn clear_cache(&self) {
        lock(&self.inner.models).clear();
    }
}

/// Resolves `r` on a command's first attempt and by the same number on retries,
/// so a retry acts on the version the caller meant even if `@latest` or an alias
/// moved meanwhile.
pub(super) fn pinned_version<'s>(
    s: &'s ModelState,
    r: &VersionRef,
    number: &mut Option<crate::domain::VersionNumber>,
) -> Result<&'s VersionRecord> {
    match *number {
        None => {
            let v = s.resolve(&r.selector)?;
            *number = Some(v.number);
            Ok(v)
        }
        Some(n) => s
            .version(n)
            .ok_or_else(|| Error::version_not_found(&r.model, format!("{}/{n}", r.model))),
    }
}

/// The `version_registered` event for `v` as the next version of `s`.
fn registered(
    s: &ModelState,
    v: &NewVersion,
    actor: &Actor,
    artifact: crate::digest::Digest,
    size: u64,
    files: u64,
    time: DateTime<Utc>,
) -> EventKind {
    EventKind::VersionRegistered {
        version: Box::new(VersionRecord {
            // The fold fills it in: the log is the model's.
            model: ModelName::unset(),
            number: s.next_version_number(),
            semver: v.semver.clone(),
            artifact,
            size,
            files,
            created_at: time,
            created_by: actor.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            provenance: v.provenance.clone(),
            metrics: v.metrics.clone(),
            deprecated: None,
            stage: Stage::None,
            stage_since: None,
            approvals: BTreeMap::new(),
            reached: BTreeSet::new(),
            scan: None,
            purged: None,
            signatures: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod shared_reads {
    use super::*;
    use crate::{ArtifactSource, Stage};

    #[tokio::test]
    async fn resolve_shared_hands_out_the_cached_record_itself() {
        let registry = Registry::in_memory();
        let me = registry.acting_as(Actor::new("ci").expect("actor"));
        me.create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        for i in 0..3 {
            me.register(
                "fraud",
                ArtifactSource::bytes("w", format!("{i}")).expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("register");
        }
        me.promote_to("fraud/2", Stage::Production, "test")
            .await
            .expect("promote");
        for reference in ["fraud@production", "fraud/3", "fraud@latest"] {
            let shared = registry.resolve_shared(reference).await.expect("shared");
            assert_eq!(*shared, registry.resolve(reference).await.expect("owned"));
            let listed = registry
                .list_versions("fraud", &VersionFilter::new())
                .await
                .expect("list");
            let cached = &listed[(shared.number.get() - 1) as usize];
            assert!(Arc::ptr_eq(&shared, cached), "{reference} was copied");
        }
        assert!(registry.resolve_shared("fraud/4").await.is_err());
        assert!(registry.resolve_shared("nobody@latest").await.is_err());
    }
}
