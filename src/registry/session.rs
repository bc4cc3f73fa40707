//! [`Session`]: the registry acting as one actor. Every command that changes
//! the registry is a method of a session, so each records who made it.

use std::collections::BTreeMap;
use std::ops::Deref;

use super::options::{CreateModel, IntoMetrics, NewVersion, SetAlias};
use super::retention::RetentionReport;
use super::{ArtifactSource, IntoModelName, IntoVersionRef, Registered, Registry};
use crate::domain::{
    Actor, Event, FormatScan, GateSpec, GateVerdict, MetricName, MetricSpec, ModelState,
    RetentionPolicy, Stage, TagKey, Tags, TrafficSplit, TransitionCheck, VersionRecord,
};
use crate::error::{Error, Result};

/// The registry acting as one [`Actor`]: every command that changes the registry
/// (create, register, tag, move, approve, roll back, alias, split) is called on a
/// session, and the event it appends records the session's actor. Queries are
/// reachable too (a session dereferences to its [`Registry`]).
///
/// Identity comes from outside the command: a training job acts as its service
/// account, a command-line tool as its configured user, a server as the owner of
/// a request's token. Sessions are cheap (a registry handle and a name); make one
/// per actor, or per request.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry, Stage};
/// let registry = Registry::in_memory();
/// let alice = registry.acting_as(Actor::new("alice@example.com")?);
/// alice.create_model("fraud", CreateModel::new()).await?;
/// let v = alice
///     .register("fraud", ArtifactSource::bytes("model.bin", "weights")?, NewVersion::new())
///     .await?;
/// alice.promote_to(&*v, Stage::Production, "first model").await?;
/// assert_eq!(alice.resolve("fraud@production").await?.number, v.number);
/// assert_eq!(alice.history("fraud", &Default::default()).await?[0].actor.as_str(), "alice@example.com");
/// # Ok::<(), modelreg::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    registry: Registry,
    actor: Actor,
}

impl Registry {
    /// This registry acting as `actor`: the handle every changing command is
    /// called on. See [`Session`].
    pub fn acting_as(&self, actor: Actor) -> Session {
        Session {
            registry: self.clone(),
            actor,
        }
    }
}

impl Deref for Session {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl Session {
    /// Who this session acts as.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The registry this session acts on.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The model, created with `options` first if it does not exist yet.
    ///
    /// Race-free: creation is the model's first event, appended create-if-absent,
    /// so when several writers ensure the same model at once exactly one creates
    /// it and every one gets it. A model that exists is returned as it is: its
    /// description, specs and tags are not compared with `options` or changed.
    /// Any other error (a store that cannot be read, an invalid name) is returned,
    /// never taken for "missing".
    #[tracing::instrument(name = "ensure_model", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn ensure_model(
        &self,
        model: impl IntoModelName,
        options: CreateModel,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        options.error.check()?;
        match self.registry.model(&model).await {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        match self.create_model(&model, options).await {
            Err(Error::AlreadyExists { .. }) => self.registry.model(&model).await,
            other => other,
        }
    }

    /// Walks a version along the lifecycle to `to`, one audited
    /// [`transition`](Self::transition) per step (every step's gates run and are
    /// recorded), and returns the events appended, in order.
    ///
    /// The path is the shortest one the [transition table](Stage::allowed_targets)
    /// allows from the version's current stage (`none → staging → validation →
    /// production` for a new version). It stops at the first step that fails and
    /// returns that error — [`Error::GateRejected`] with every refusing gate's
    /// verdict, for example; the steps taken before it stay taken (each is a
    /// complete, valid move). [`Error::InvalidTransition`] if no path leads to
    /// `to`; nothing is appended if the version is already there.
    #[tracing::instrument(name = "promote_to", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn promote_to(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
        reason: impl Into<String>,
    ) -> Result<Vec<Event>> {
        let r = version.into_version_ref()?;
        let reason = reason.into();
        // Pin the version: later steps act on it even if an alias moves.
        let v = self.registry.resolve(&r).await?;
        let pinned = v.reference();
        let Some(path) = v.stage.path_to(to) else {
            return Err(Error::InvalidTransition {
                model: r.model.to_string(),
                version: v.number.get(),
                from: v.stage,
                to,
                allowed: v.stage.allowed_targets().to_vec(),
            });
        };
        let mut events = Vec::with_capacity(path.len());
        for stage in path {
            events.push(self.transition(&pinned, stage, reason.as_str()).await?);
        }
        Ok(events)
    }

    /// Creates a model. Fails with [`Error::AlreadyExists`] if it exists, also when
    /// another writer created it a moment earlier.
    #[tracing::instrument(name = "create_model", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn create_model(
        &self,
        model: impl IntoModelName,
        options: CreateModel,
    ) -> Result<ModelState> {
        self.registry
            .create_model(model, options, &self.actor)
            .await
    }

    /// Registers a new version of `model` from `source`.
    ///
    /// Files are hashed and only those the store lacks are uploaded; then the
    /// manifest; then the event that makes the version visible. A failure at any
    /// point before that event leaves no version, at most unreferenced blobs. The
    /// version number is the next free one at the moment the event is appended.
    /// Parents named in the provenance must exist.
    ///
    /// Before appending the event, the registration announces its blobs in an
    /// intent lease (while storing them, for in-memory files, whose digests are
    /// known before anything is stored) and then checks they are all still
    /// stored, so a concurrent [`gc`](Registry::gc) never deletes a blob the new
    /// version relies on (a blob such a collection deleted just before is stored
    /// again from the source).
    #[tracing::instrument(name = "register", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn register(
        &self,
        model: impl IntoModelName,
        source: ArtifactSource,
        version: NewVersion,
    ) -> Result<Registered> {
        self.registry
            .register(model, source, version, &self.actor)
            .await
    }

    /// Adds metrics to a version (an evaluation after training); a metric it has
    /// already is replaced, and the old value stays in the history.
    ///
    /// A version in production is immutable: [`Error::Immutable`], unless
    /// through [`override_immutable`](Self::override_immutable).
    #[tracing::instrument(name = "add_metrics", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn add_metrics(
        &self,
        version: impl IntoVersionRef,
        metrics: impl IntoMetrics,
    ) -> Result<VersionRecord> {
        self.registry
            .add_metrics(version, metrics, &self.actor, None)
            .await
    }

    /// Sets and removes tags on a version.
    ///
    /// A version in production is immutable: [`Error::Immutable`], unless
    /// through [`override_immutable`](Self::override_immutable).
    #[tracing::instrument(name = "set_version_tags", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_version_tags(
        &self,
        version: impl IntoVersionRef,
        set: Tags,
        remove: Vec<TagKey>,
    ) -> Result<VersionRecord> {
        self.registry
            .set_version_tags(version, set, remove, &self.actor, None)
            .await
    }

    /// Replaces a version's description (an empty one clears it); the old text
    /// stays in the history. At most 65,536 characters
    /// ([`Error::TooLarge`]).
    ///
    /// A version in production is immutable: [`Error::Immutable`], unless
    /// through [`override_immutable`](Self::override_immutable).
    #[tracing::instrument(name = "set_version_description", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_version_description(
        &self,
        version: impl IntoVersionRef,
        description: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.registry
            .set_version_description(version, description.into(), &self.actor, None)
            .await
    }

    /// Changes what a version in production normally keeps fixed (its tags,
    /// metrics and description), on the record: the event the override appends names this
    /// session's actor and carries `reason`. An empty reason is
    /// [`Error::InvalidInput`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// let v = me.register("fraud", ArtifactSource::bytes("m.onnx", "w")?, NewVersion::new()).await?;
    /// me.promote_to(&*v, Stage::Production, "").await?;
    /// let typo = Tags::from([(TagKey::new("team")?, "fruad".into())]);
    /// assert!(matches!(me.set_version_tags(&*v, typo, vec![]).await, Err(Error::Immutable { .. })));
    /// let fixed = Tags::from([(TagKey::new("team")?, "fraud".into())]);
    /// me.override_immutable("the team tag was never set").set_version_tags(&*v, fixed, vec![]).await?;
    /// let trail = registry.history("fraud", &HistoryFilter::new().kind("tags_set")).await?;
    /// assert!(matches!(&trail[0].kind, EventKind::TagsSet { overridden: Some(why), .. } if why == "the team tag was never set"));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub fn override_immutable(&self, reason: impl Into<String>) -> Override<'_> {
        Override {
            session: self,
            reason: reason.into(),
        }
    }

    /// Scans every file of a version with the [format scanner](crate::scan) and
    /// records the verdicts in the log (a `formats_scanned` event), where the
    /// [`FormatPolicy`](GateSpec::FormatPolicy) gate reads them. Returns the
    /// recorded scan; a refused file is a verdict in it, not an error.
    ///
    /// Reads only the byte ranges the scanner asks for from the artifact
    /// store: a few headers for safetensors and data files, a ZIP archive's
    /// directory and pickle members, a pickle file up to its budget. The
    /// ranges are not hashed (a range cannot be checked against a whole
    /// file's digest): the scan trusts the store as far as reads by range do;
    /// [`verify`](Registry::verify) re-hashes whole files.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// use modelreg::scan::FileFormat;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// let files = ArtifactSource::files([
    ///     ("model.pkl", &b"cos\nsystem\n(S'echo pwned'\ntR."[..]),
    ///     ("config.json", &b"{}"[..]),
    /// ])?;
    /// let v = me.register("fraud", files, NewVersion::new()).await?;
    /// let scan = me.scan_formats(&*v).await?;
    /// assert_eq!(scan.data_files, 1);
    /// let refused: Vec<_> = scan.refused().map(|f| f.to_string()).collect();
    /// assert_eq!(refused, ["model.pkl (pickle): global os.system at byte 0 is not on the allowlist"]);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "scan_formats", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn scan_formats(&self, version: impl IntoVersionRef) -> Result<FormatScan> {
        self.registry.scan_formats(version, &self.actor).await
    }

    /// Signs every file of a version with `key`: an OpenSSF Model Signing v1.0
    /// bundle listing each file's SHA-256 (what `model_signing verify key`
    /// checks), stored content-addressed in the artifact store and recorded
    /// in the log (a `signature_added` event naming this session's actor, the
    /// key's id, its public key and `reason`). Several keys may sign one
    /// version (trainer, evaluator, approver); the
    /// [`Signed`](GateSpec::Signed) gate and
    /// [`verify_signatures`](Registry::verify_signatures) count them.
    ///
    /// A version registered before SHA-256 digests were recorded is
    /// [`Error::InvalidInput`]; the same key signing the same files twice
    /// makes the same bundle: [`Error::AlreadyExists`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// use modelreg::signing::{SigningKey, TrustPolicy};
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("trainer")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// let v = me.register("fraud", ArtifactSource::bytes("m.onnx", "w")?, NewVersion::new()).await?;
    /// let key = SigningKey::generate(); // in practice: SigningKey::from_pem(&secret)?
    /// let sig = me.sign_version(&*v, &key, "trained").await?;
    /// assert_eq!(&sig.key, key.id());
    /// let policy = TrustPolicy::new().key(key.public_key());
    /// assert!(registry.verify_signatures("fraud/1", &policy).await?.passes());
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "sign_version", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn sign_version(
        &self,
        version: impl IntoVersionRef,
        key: &crate::signing::SigningKey,
        reason: impl Into<String>,
    ) -> Result<crate::VersionSignature> {
        self.registry
            .sign_version(version, key, &reason.into(), &self.actor)
            .await
    }

    /// Attaches a signature made elsewhere (by `model_signing sign key` on a
    /// checkout of the files, by another registry): the bundle is verified
    /// first — signed by `key`, listing exactly the version's files with their
    /// digests — then stored and recorded as [`sign_version`](Self::sign_version)
    /// records its own. A bundle that does not verify is [`Error::Signature`]
    /// and nothing is recorded.
    #[tracing::instrument(name = "add_signature", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn add_signature(
        &self,
        version: impl IntoVersionRef,
        bundle: impl Into<bytes::Bytes>,
        key: &crate::signing::PublicKey,
        reason: impl Into<String>,
    ) -> Result<crate::VersionSignature> {
        self.registry
            .add_signature(version, bundle.into(), key, &reason.into(), &self.actor)
            .await
    }

    /// Deprecates a version: it stays resolvable by number, semver and digest, but
    /// `@latest` skips it.
    #[tracing::instrument(name = "deprecate", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn deprecate(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.registry.deprecate(version, reason, &self.actor).await
    }

    /// Purges a version's artifact: appends a `version_purged` event recording
    /// this session's actor, the time and `reason` (required). The version's
    /// record and history stay; its files are no longer kept: fetching,
    /// verifying or reading the manifest of it fails with [`Error::Purged`],
    /// `@latest` skips it, and the next [`gc`](Registry::gc) deletes the blobs
    /// no other version uses (after the grace period).
    ///
    /// A protected version is refused with [`Error::Protected`], naming every
    /// protection: one in staging, validation or production, behind an alias or
    /// the traffic split, the rollback target, or tagged
    /// [`keep`](crate::retention::KEEP_TAG) (see
    /// [`retention`](crate::retention)). Purging a version twice is
    /// [`Error::InvalidInput`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// let v1 = me.register("fraud", ArtifactSource::bytes("m.bin", "epoch 1")?, NewVersion::new()).await?;
    /// me.register("fraud", ArtifactSource::bytes("m.bin", "epoch 2")?, NewVersion::new()).await?;
    /// me.promote_to("fraud/2", Stage::Production, "").await?;
    /// assert!(matches!(me.purge_version("fraud/2", "too big").await, Err(Error::Protected { .. })));
    /// let purged = me.purge_version(&*v1, "superseded by epoch 2").await?;
    /// assert_eq!(purged.purged.unwrap().reason, "superseded by epoch 2");
    /// let dest = std::env::temp_dir().join(format!("purged-doc-{}", std::process::id()));
    /// assert!(matches!(registry.fetch("fraud/1", &dest, FetchOptions::new()).await, Err(Error::Purged { version: 1, .. })));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "purge_version", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn purge_version(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.registry
            .purge_version(version, reason, &self.actor)
            .await
    }

    /// Purges, in `model`, every version `policy` picks (see
    /// [`RetentionPolicy`]): those outside the newest `keep_last` and older than
    /// `older_than`, never a protected one (the report lists those it kept, and
    /// why) nor one purged already. Each purge is its own audited event, with
    /// the policy as its reason ([`RetentionPolicy::describe`]) and decided on
    /// the state it follows, so a version protected meanwhile is kept.
    ///
    /// With `dry_run`, nothing is written: the report says what would go. A
    /// policy with no limit set is [`Error::InvalidInput`]. Space is freed by
    /// the next [`gc`](Registry::gc).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("trainer")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// for epoch in 1..=5 {
    ///     me.register("fraud", ArtifactSource::bytes("m.bin", format!("epoch {epoch}"))?, NewVersion::new()).await?;
    /// }
    /// me.set_alias("fraud/1", "baseline", SetAlias::new()).await?;
    /// let policy = RetentionPolicy::new().keep_last(2);
    /// let plan = me.apply_retention("fraud", &policy, true).await?;
    /// assert_eq!(plan.purged.iter().map(|n| n.get()).collect::<Vec<_>>(), [2, 3]);
    /// assert_eq!(plan.protected[0].version.get(), 1, "the alias keeps it");
    /// let done = me.apply_retention("fraud", &policy, false).await?;
    /// assert_eq!(done.purged, plan.purged);
    /// assert!(registry.resolve("fraud/2").await?.purged.is_some());
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "apply_retention", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn apply_retention(
        &self,
        model: impl IntoModelName,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        self.registry
            .apply_retention(model, policy, dry_run, &self.actor)
            .await
    }

    /// Sets and removes tags on a model.
    #[tracing::instrument(name = "set_model_tags", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_model_tags(
        &self,
        model: impl IntoModelName,
        set: Tags,
        remove: Vec<TagKey>,
    ) -> Result<ModelState> {
        self.registry
            .set_model_tags(model, set, remove, &self.actor)
            .await
    }

    /// Adds or replaces how metrics of a model are judged.
    #[tracing::instrument(name = "set_metric_specs", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_metric_specs(
        &self,
        model: impl IntoModelName,
        specs: BTreeMap<MetricName, MetricSpec>,
    ) -> Result<ModelState> {
        self.registry
            .set_metric_specs(model, specs, &self.actor)
            .await
    }

    /// Moves a version to another stage.
    ///
    /// The move must be in the [transition table](Stage::allowed_targets)
    /// ([`Error::InvalidTransition`] otherwise, naming the allowed targets), and
    /// every gate for the target stage — stored ([`set_gates`](Self::set_gates))
    /// and in-process ([`RegistryBuilder::gate`](crate::RegistryBuilder::gate)) —
    /// must pass ([`Error::GateRejected`] lists every failed gate; nothing changes).
    /// Moving a version to production archives the current production version in
    /// the same event. The event records actor, time, from, to, reason and every
    /// gate's verdict.
    ///
    /// If another writer changes the candidate's stage (or, for a promotion, the
    /// production version) while this runs, it fails with
    /// [`Error::ConcurrentChange`] rather than act on a state the caller did not
    /// see.
    #[tracing::instrument(name = "transition", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn transition(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.registry
            .transition(version, to, &self.actor, reason)
            .await
    }

    /// What [`transition`](Self::transition) of a version to `to` would do if
    /// this session asked for it now, without recording anything: the move,
    /// every gate's verdict (passed or not, with its reason), and the production
    /// version a promotion would archive. For a confirmation step before the
    /// real command, which decides again on the state it follows.
    ///
    /// Fails as the transition would for a missing model or version and for a
    /// move the [transition table](Stage::allowed_targets) does not allow
    /// ([`Error::InvalidTransition`]); a refusing gate is not an error here but
    /// a verdict with `passed: false`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::collections::BTreeSet;
    /// use modelreg::{Actor, ArtifactSource, CreateModel, GateSpec, NewVersion, Registry, Stage};
    /// let registry = Registry::in_memory();
    /// let alice = registry.acting_as(Actor::new("alice")?);
    /// alice.create_model("fraud", CreateModel::new()).await?;
    /// alice.set_gates("fraud", Stage::Production, vec![GateSpec::Approvals { required: 1, from: BTreeSet::new() }]).await?;
    /// alice.register("fraud", ArtifactSource::bytes("m.bin", "w")?, NewVersion::new()).await?;
    /// alice.promote_to("fraud/1", Stage::Validation, "").await?;
    /// let check = alice.check_transition("fraud/1", Stage::Production).await?;
    /// assert!(!check.passes());
    /// assert_eq!(check.gates[0].gate, "approvals(1)");
    /// assert_eq!(alice.history("fraud", &Default::default()).await?.len(), 5, "nothing recorded");
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    #[tracing::instrument(name = "check_transition", level = "debug", skip_all, fields(actor = %self.actor))]
    pub async fn check_transition(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
    ) -> Result<TransitionCheck> {
        self.registry
            .check_transition(version, to, &self.actor)
            .await
    }

    /// Every gate's verdict on a version as the candidate for `stage`, as this
    /// session would get them now, recording nothing: what
    /// [`set_alias`](Self::set_alias) and [`remove_alias`](Self::remove_alias)
    /// of a protected alias run (with `stage` production), for a confirmation
    /// step. Unlike [`check_transition`](Self::check_transition) it does not
    /// ask whether the transition table allows a move to `stage`: a protected
    /// alias may point at a version in any stage.
    #[tracing::instrument(name = "check_gates", level = "debug", skip_all, fields(actor = %self.actor))]
    pub async fn check_gates(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
    ) -> Result<Vec<GateVerdict>> {
        self.registry.check_gates(version, stage, &self.actor).await
    }

    /// Moves a version to production: [`transition`](Self::transition) to
    /// [`Stage::Production`].
    #[tracing::instrument(name = "promote", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn promote(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.registry.promote(version, &self.actor, reason).await
    }

    /// Records `approver`'s approval of moving a version to `stage`. The latest
    /// decision of each approver counts.
    #[tracing::instrument(name = "approve", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn approve(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        comment: impl Into<String>,
    ) -> Result<Event> {
        self.registry
            .approve(version, stage, &self.actor, comment)
            .await
    }

    /// Records `approver`'s rejection of moving a version to `stage`; an approvals
    /// gate refuses while it stands.
    #[tracing::instrument(name = "reject", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn reject(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        comment: impl Into<String>,
    ) -> Result<Event> {
        self.registry
            .reject(version, stage, &self.actor, comment)
            .await
    }

    /// Returns production to the version that held it before the current one, and
    /// archives the current one, as one audited event. Rolling back twice goes two
    /// steps back. Rollback is the emergency exit and passes no gates.
    ///
    /// [`Error::NotFound`] when no version is in production or none held it
    /// before; [`Error::ConcurrentChange`] if production moved while this ran.
    #[tracing::instrument(name = "rollback", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn rollback(
        &self,
        model: impl IntoModelName,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.registry.rollback(model, &self.actor, reason).await
    }

    /// Points `alias` of the referenced version's model at that version.
    ///
    /// If the alias is protected, or is being made protected, the move must pass
    /// the model's production gates with the new target as the candidate.
    #[tracing::instrument(name = "set_alias", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_alias(
        &self,
        version: impl IntoVersionRef,
        alias: &str,
        options: SetAlias,
    ) -> Result<Event> {
        self.registry
            .set_alias(version, alias, options, &self.actor)
            .await
    }

    /// Removes an alias. A protected alias's removal must pass the production gates
    /// (with its current target as the candidate).
    #[tracing::instrument(name = "remove_alias", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn remove_alias(
        &self,
        model: impl IntoModelName,
        alias: &str,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.registry
            .remove_alias(model, alias, &self.actor, reason)
            .await
    }

    /// Replaces the stored gates for moves into `stage` (an empty list removes
    /// them). Stored gates are part of the model's log, so every writer applies
    /// them.
    #[tracing::instrument(name = "set_gates", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_gates(
        &self,
        model: impl IntoModelName,
        stage: Stage,
        gates: Vec<GateSpec>,
    ) -> Result<Event> {
        self.registry
            .set_gates(model, stage, gates, &self.actor)
            .await
    }

    /// Sets (or replaces) the traffic split of `model`, as an audited event.
    ///
    /// Every target must resolve when the split is set ([`Error::NotFound`] names
    /// the first that does not); the split itself was validated when it was built
    /// ([`TrafficSplit::new`]). Servers see the new split on their next
    /// [`route`](Registry::route).
    #[tracing::instrument(name = "set_traffic_split", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn set_traffic_split(
        &self,
        model: impl IntoModelName,
        split: TrafficSplit,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.registry
            .set_traffic_split(model, split, &self.actor, reason)
            .await
    }

    /// Removes the traffic split of `model`, as an audited event: from then on
    /// [`route`](Registry::route) sends every key to `@production`.
    /// [`Error::NotFound`] when the model has no split.
    #[tracing::instrument(name = "clear_traffic_split", level = "info", skip_all, fields(actor = %self.actor))]
    pub async fn clear_traffic_split(
        &self,
        model: impl IntoModelName,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.registry
            .clear_traffic_split(model, &self.actor, reason)
            .await
    }
}

/// A [`Session`] changing what a version in production keeps fixed, with a
/// reason that goes into the log: made by
/// [`Session::override_immutable`]. Each command appends one event, as the
/// session's command of the same name does, with `overridden` set to the
/// reason.
#[derive(Clone, Debug)]
pub struct Override<'a> {
    session: &'a Session,
    reason: String,
}

impl Override<'_> {
    /// Why the override is made.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// [`Session::add_metrics`], on a version in production too.
    #[tracing::instrument(name = "override_add_metrics", level = "info", skip_all, fields(actor = %self.session.actor))]
    pub async fn add_metrics(
        &self,
        version: impl IntoVersionRef,
        metrics: impl IntoMetrics,
    ) -> Result<VersionRecord> {
        self.session
            .registry
            .add_metrics(version, metrics, &self.session.actor, Some(&self.reason))
            .await
    }

    /// [`Session::set_version_description`], on a version in production too.
    #[tracing::instrument(name = "override_set_version_description", level = "info", skip_all, fields(actor = %self.session.actor))]
    pub async fn set_version_description(
        &self,
        version: impl IntoVersionRef,
        description: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.session
            .registry
            .set_version_description(
                version,
                description.into(),
                &self.session.actor,
                Some(&self.reason),
            )
            .await
    }

    /// [`Session::set_version_tags`], on a version in production too.
    #[tracing::instrument(name = "override_set_version_tags", level = "info", skip_all, fields(actor = %self.session.actor))]
    pub async fn set_version_tags(
        &self,
        version: impl IntoVersionRef,
        set: Tags,
        remove: Vec<TagKey>,
    ) -> Result<VersionRecord> {
        self.session
            .registry
            .set_version_tags(
                version,
                set,
                remove,
                &self.session.actor,
                Some(&self.reason),
            )
            .await
    }
}
