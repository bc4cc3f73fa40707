//! Lineage, comparison and metric history on the [`Registry`]: the registry reads
//! records, metric specs and manifests from the stores; the graph, the queries and
//! the diff are pure domain code ([`crate::domain::lineage`], [`crate::domain::diff`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{IntoModelName, IntoVersionRef, Registry, VersionFilter, blocking, lock};
use crate::domain::{
    CodeKey, DatasetKey, LineageGraph, LineageNode, LineagePath, LineageSubgraph, MetricName,
    MetricPoint, ModelName, ModelState, ParentRef, VersionDiff, VersionKey, VersionNumber,
    VersionRecord, VersionRef, compare_versions, metric_history,
};
use crate::error::{Error, Result};

/// Where a [`Registry::downstream`] query starts: a version reference, resolved
/// first (`fraud@latest`, `fraud:1.4.0`, …), or a node of the lineage graph as it
/// is (a dataset, a commit, a version by number).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineageStart {
    /// A version reference, resolved against the registry.
    Reference(VersionRef),
    /// A node, as it is.
    Node(LineageNode),
}

/// Anything a [`Registry::downstream`] query can start from: a version reference
/// (`&str`, `String`, [`VersionRef`]), a [`VersionKey`], a [`DatasetKey`], a
/// [`CodeKey`] or a [`LineageNode`].
pub trait IntoLineageStart {
    /// Parses or passes on the start.
    fn into_lineage_start(self) -> Result<LineageStart>;
}

impl IntoLineageStart for LineageStart {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(self)
    }
}
impl IntoLineageStart for &str {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Reference(self.parse()?))
    }
}
impl IntoLineageStart for String {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Reference(self.parse()?))
    }
}
impl IntoLineageStart for VersionRef {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Reference(self))
    }
}
impl IntoLineageStart for &VersionRef {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Reference(self.clone()))
    }
}
impl IntoLineageStart for LineageNode {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Node(self))
    }
}
impl IntoLineageStart for VersionKey {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Node(LineageNode::Version(self)))
    }
}
impl IntoLineageStart for DatasetKey {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Node(LineageNode::Dataset(self)))
    }
}
impl IntoLineageStart for &DatasetKey {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Node(LineageNode::Dataset(self.clone())))
    }
}
impl IntoLineageStart for CodeKey {
    fn into_lineage_start(self) -> Result<LineageStart> {
        Ok(LineageStart::Node(LineageNode::Code(self)))
    }
}

/// The lineage graph [`Registry::lineage`] built last, and the model states it
/// was built from.
///
/// A derived index, so it lives in the registry (which knows stores and
/// states) and not in the domain graph. A model's log only grows, so a graph
/// built from states at the same positions in each log is exactly the graph a
/// new build would give; when some models moved on, the graph is brought up to
/// date from the difference (see [`update`]) instead of built anew. One graph
/// is kept: its records are the states' own (shared), so it costs the graph's
/// nodes and indexes and the kept states' version lists, not a copy of the
/// versions.
#[derive(Default)]
pub(super) struct LineageCache {
    built: Mutex<Option<Built>>,
    /// The build running now, if one is: callers that need a graph meanwhile
    /// wait for its end instead of starting another. Nothing is locked while
    /// they wait (a waiter holds only a receiver), so a caller that gives up,
    /// or a future that is kept but never polled again, holds up nobody; the
    /// build runs on the blocking pool whether its starter waits or not.
    building: Mutex<Option<watch::Receiver<bool>>>,
}

/// A graph and the states it was built from, in the order they were listed.
struct Built {
    states: Vec<Arc<ModelState>>,
    graph: Arc<LineageGraph>,
}

impl Built {
    /// Whether the graph includes everything of `states`: each of their models
    /// at the same position in its log or further on. A graph newer than the
    /// states a caller read is as good an answer as one built from them.
    fn covers(&self, states: &[Arc<ModelState>]) -> bool {
        let kept: HashMap<&ModelName, u64> =
            self.states.iter().map(|s| (s.name(), s.seq())).collect();
        states
            .iter()
            .all(|s| kept.get(s.name()).is_some_and(|seq| *seq >= s.seq()))
    }
}

impl LineageCache {
    /// The cached graph, if it covers these states.
    fn get(&self, states: &[Arc<ModelState>]) -> Option<Arc<LineageGraph>> {
        match &*lock(&self.built) {
            Some(b) if b.covers(states) => Some(Arc::clone(&b.graph)),
            _ => None,
        }
    }

    /// What was cached, taken out to be brought up to date.
    fn take(&self) -> Option<Built> {
        lock(&self.built).take()
    }

    /// Keeps `graph`, built from `states`.
    fn put(&self, states: Vec<Arc<ModelState>>, graph: Arc<LineageGraph>) {
        *lock(&self.built) = Some(Built { states, graph });
    }
}

/// The lineage graph of `states`, built from scratch.
fn build(states: &[Arc<ModelState>]) -> Result<LineageGraph> {
    let mut graph = LineageGraph::new();
    for s in states {
        for v in s.versions() {
            graph.add_version(s.name().clone(), Arc::clone(v))?;
        }
    }
    Ok(graph)
}

/// Brings `old`'s graph up to date with `states` (for a model the kept state
/// is further on, it stays: a graph is never taken back), returning the graph
/// and the states it now holds; `None` when only a new build can (a model of
/// the graph is no longer listed, a record's lineage changed).
///
/// For each model that moved on, its new versions are added and each older
/// version whose record is no longer the same `Arc` as in the kept state (a
/// tag, a metric, a stage changed it) has its record replaced when it differs.
/// Comparing pointers first keeps this to a walk over the moved models'
/// version lists; models that did not move cost nothing. The graph is changed
/// in place when nobody else holds it (a page still rendering it), copied
/// otherwise; when `None` is returned, whatever was changed is dropped.
fn update(
    old: Built,
    states: Vec<Arc<ModelState>>,
) -> Option<(Vec<Arc<ModelState>>, Arc<LineageGraph>)> {
    let mut before: HashMap<ModelName, Arc<ModelState>> = old
        .states
        .into_iter()
        .map(|s| (s.name().clone(), s))
        .collect();
    let mut shared = old.graph;
    let graph = Arc::make_mut(&mut shared);
    let mut now = Vec::with_capacity(states.len());
    for s in states {
        let name = s.name().clone();
        let kept = match before.remove(&name) {
            Some(o) if o.seq() >= s.seq() => {
                now.push(o);
                continue;
            }
            Some(o) => o,
            None => {
                for v in s.versions() {
                    graph.add_version(name.clone(), Arc::clone(v)).ok()?;
                }
                now.push(s);
                continue;
            }
        };
        let (old_versions, new_versions) = (kept.versions(), s.versions());
        if old_versions.len() > new_versions.len() {
            return None;
        }
        for (a, b) in old_versions.iter().zip(new_versions) {
            if !Arc::ptr_eq(a, b) && a != b {
                graph.replace_record(&name, Arc::clone(b)).ok()?;
            }
        }
        for v in &new_versions[old_versions.len()..] {
            graph.add_version(name.clone(), Arc::clone(v)).ok()?;
        }
        now.push(s);
    }
    before.is_empty().then_some((now, shared))
}

impl Registry {
    /// The lineage graph of every version of every model: each model's state is
    /// brought up to date and its versions added to one [`LineageGraph`].
    ///
    /// The models are read one after another, not as one snapshot: a version
    /// registered meanwhile in a model already read is missing, and a parent
    /// registered meanwhile may appear only as a parent (a node without a record).
    ///
    /// The graph is derived from the models' states, so the registry keeps the
    /// last one it built with the states it was built from: when no model
    /// changed since (no event appended, no model created), asking again costs
    /// the usual check for new events of each model and returns the same graph,
    /// shared. After a change the kept graph is brought up to date (off the
    /// async workers): the versions registered since are added and the records
    /// that changed are replaced, so the cost follows the models that moved,
    /// not the size of the registry. Nodes are listed in the order they were
    /// first seen, so a graph brought up to date may list them in another
    /// order than a new build; the nodes, edges and records are the same.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let ci = registry.acting_as(Actor::new("ci")?);
    /// ci.create_model("fraud", CreateModel::new()).await?;
    /// let clicks = DatasetRef::new("clicks", DatasetRole::Train).version("v3");
    /// ci.register("fraud", ArtifactSource::bytes("m.bin", "w")?, NewVersion::new().dataset(clicks.clone()))
    ///     .await?;
    /// let graph = registry.lineage().await?;
    /// let affected = graph.downstream(&DatasetKey::from(&clicks).into(), None)?;
    /// assert_eq!(affected.versions().count(), 1);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn lineage(&self) -> Result<Arc<LineageGraph>> {
        let states = self.model_states().await?;
        let cache = &self.inner.lineage;
        loop {
            if let Some(graph) = cache.get(&states) {
                return Ok(graph);
            }
            let (done, kept) = {
                let mut building = lock(&cache.building);
                if let Some(running) = &*building {
                    (Err(running.clone()), None)
                } else {
                    let (done, running) = watch::channel(false);
                    *building = Some(running);
                    (Ok(done), cache.take())
                }
            };
            let done = match done {
                Ok(done) => done,
                // Someone else's build: wait for its end (a build that failed
                // drops its sender, which ends the wait too), then look again.
                Err(mut running) => {
                    if running.wait_for(|finished| *finished).await.is_err() {
                        // Its sender is gone without a word (the build panicked):
                        // forget it, so the next caller builds.
                        let mut building = lock(&cache.building);
                        if building.as_ref().is_some_and(|r| r.same_channel(&running)) {
                            *building = None;
                        }
                    }
                    continue;
                }
            };
            let inner = Arc::clone(&self.inner);
            return blocking(move || -> Result<_> {
                let built = match kept.and_then(|old| update(old, states.clone())) {
                    Some(updated) => Ok(updated),
                    None => build(&states).map(|graph| (states, Arc::new(graph))),
                };
                let cache = &inner.lineage;
                let graph = built.map(|(states, graph)| {
                    cache.put(states, Arc::clone(&graph));
                    graph
                });
                *lock(&cache.building) = None;
                let _ = done.send(true);
                graph
            })
            .await?;
        }
    }

    /// The state of every model, brought up to date, in the order listed.
    async fn model_states(&self) -> Result<Vec<Arc<ModelState>>> {
        let mut states = Vec::new();
        for model in self.list_models().await? {
            match self.snapshot(&model).await {
                Ok(state) => states.push(state),
                // Listed but without a first event: not a model (yet).
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(states)
    }

    /// Everything the version `reference` resolves to was built from, transitively,
    /// up to `depth` edges away (`None`: no limit): see [`LineageGraph::upstream`].
    ///
    /// Reads only the models its ancestors belong to, not the whole registry.
    pub async fn upstream(
        &self,
        reference: impl IntoVersionRef,
        depth: Option<usize>,
    ) -> Result<LineageSubgraph> {
        let key = self.version_key(reference).await?;
        let graph = self.ancestry(vec![key.clone()]).await?;
        graph.upstream(&key, depth)
    }

    /// Every version in any model built on `from` — a version reference, a dataset
    /// or a commit — transitively, up to `depth` edges away (`None`: no limit): see
    /// [`LineageGraph::downstream`]. Builds the whole [`lineage`](Self::lineage)
    /// graph; to ask several questions, build it once and query it.
    ///
    /// Each affected version comes with its record; its [`VersionKey`] looks up
    /// anything else (such as its lifecycle stage).
    pub async fn downstream(
        &self,
        from: impl IntoLineageStart,
        depth: Option<usize>,
    ) -> Result<LineageSubgraph> {
        let node = match from.into_lineage_start()? {
            LineageStart::Reference(r) => LineageNode::Version(self.version_key(r).await?),
            LineageStart::Node(n) => n,
        };
        self.lineage().await?.downstream(&node, depth)
    }

    /// The shortest parent → child chain between two versions, whichever descends
    /// from the other; `None` if neither does. See [`LineageGraph::path`]. Reads
    /// only the models their ancestors belong to.
    pub async fn lineage_path(
        &self,
        a: impl IntoVersionRef,
        b: impl IntoVersionRef,
    ) -> Result<Option<LineagePath>> {
        let (a, b) = (self.version_key(a).await?, self.version_key(b).await?);
        // Every version on a chain between them is an ancestor of the lower one.
        let graph = self.ancestry(vec![a.clone(), b.clone()]).await?;
        graph.path(&a, &b)
    }

    /// Compares version `a` (the baseline) with version `b`, any two references in
    /// any models: metrics judged by the models' specs, hyperparameters,
    /// environment, datasets, code and files. See [`compare_versions`] and
    /// [`VersionDiff`].
    ///
    /// Metrics are judged by the specs of b's model, and by a's model's for
    /// metrics b's model has no spec for. Both manifests are read and verified
    /// the first time (a missing or corrupt manifest blob is an error), then kept
    /// by digest: comparing again reads no blob and hashes nothing.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let ci = registry.acting_as(Actor::new("ci")?);
    /// ci.create_model("fraud", CreateModel::new().metric("auc", MetricSpec::maximize())).await?;
    /// for (weights, auc) in [("v1", 0.90), ("v2", 0.93)] {
    ///     let v = NewVersion::new().metric("auc", auc);
    ///     ci.register("fraud", ArtifactSource::bytes("m.bin", weights)?, v).await?;
    /// }
    /// let diff = registry.compare("fraud/1", "fraud/2").await?;
    /// assert_eq!(diff.verdict, OverallVerdict::Improved);
    /// println!("{diff}");
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn compare(
        &self,
        a: impl IntoVersionRef,
        b: impl IntoVersionRef,
    ) -> Result<VersionDiff> {
        let (ra, rb) = (a.into_version_ref()?, b.into_version_ref()?);
        let side = |r: &VersionRef, s: &ModelState| -> Result<_> {
            Ok((s.resolve(&r.selector)?.clone(), s.metric_specs().clone()))
        };
        let (va, mut specs) = self.read(&ra.model, |s| side(&ra, s)).await??;
        let (vb, specs_b) = self.read(&rb.model, |s| side(&rb, s)).await??;
        specs.extend(specs_b);
        super::retention::live(&va)?;
        super::retention::live(&vb)?;
        let ma = self.verified_manifest(&va.artifact).await?;
        let mb = self.verified_manifest(&vb.artifact).await?;
        Ok(compare_versions(
            (&ra.model, &va),
            (&rb.model, &vb),
            &specs,
            Some((&ma, &mb)),
        ))
    }

    /// One metric across the versions of `model` that match `filter`, oldest first:
    /// `(version, created_at, value)` points ready to plot. Versions without the
    /// metric are skipped.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let ci = registry.acting_as(Actor::new("ci")?);
    /// ci.create_model("fraud", CreateModel::new()).await?;
    /// for auc in [0.90, 0.93] {
    ///     let v = NewVersion::new().metric("auc", auc);
    ///     ci.register("fraud", ArtifactSource::bytes("m.bin", auc.to_string())?, v).await?;
    /// }
    /// let points = registry.metric_history("fraud", "auc", &VersionFilter::new()).await?;
    /// assert_eq!(points.iter().map(|p| p.value).collect::<Vec<_>>(), [0.90, 0.93]);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn metric_history(
        &self,
        model: impl IntoModelName,
        metric: &str,
        filter: &VersionFilter,
    ) -> Result<Vec<MetricPoint>> {
        let model = model.into_model_name()?;
        let metric = MetricName::new(metric)?;
        self.read(&model, |s| {
            metric_history(s.versions().iter().map(|v| &**v), metric.as_str(), |v| {
                filter.matches(v)
            })
        })
        .await
    }

    /// Rejects a registration of the next version of `model` with `parents` that
    /// would break the lineage graph: see [`LineageGraph::check_new_version`].
    ///
    /// The number checked is the next one now; the version may get a higher one
    /// when it commits, which changes nothing: no version that does not exist yet
    /// can be anyone's ancestor.
    pub(super) async fn check_lineage(
        &self,
        model: &ModelName,
        parents: &[ParentRef],
    ) -> Result<()> {
        if parents.is_empty() {
            return Ok(());
        }
        let next = self.read(model, ModelState::next_version_number).await?;
        let graph = self
            .ancestry(parents.iter().map(VersionKey::from).collect())
            .await?;
        graph.check_new_version(&VersionKey::new(model.clone(), next), parents)
    }

    /// Resolves a reference to the key of its version.
    async fn version_key(&self, reference: impl IntoVersionRef) -> Result<VersionKey> {
        let r = reference.into_version_ref()?;
        let v: VersionRecord = self.resolve(&r).await?;
        Ok(VersionKey::new(r.model, v.number))
    }

    /// The lineage graph of `roots` and all their ancestors (their datasets and
    /// code included). Ancestors that do not exist are left as parent-only nodes.
    ///
    /// Each round reads every model on the frontier once and follows parents within
    /// that model as far as they go; parents in other models form the next
    /// frontier. So a chain of fine-tunes within one model costs one read, not one
    /// per version.
    async fn ancestry(&self, roots: Vec<VersionKey>) -> Result<LineageGraph> {
        let mut graph = LineageGraph::new();
        // Roots may repeat (a parent listed twice); each is walked once.
        let mut seen: HashSet<VersionKey> = roots.into_iter().collect();
        let mut frontier: Vec<VersionKey> = seen.iter().cloned().collect();
        while !frontier.is_empty() {
            let mut by_model: BTreeMap<ModelName, Vec<VersionNumber>> = BTreeMap::new();
            for k in frontier.drain(..) {
                by_model.entry(k.model).or_default().push(k.version);
            }
            for (model, numbers) in by_model {
                let walked = self
                    .read(&model, |s| {
                        let mut found = Vec::new();
                        let mut queue = VecDeque::from(numbers);
                        while let Some(n) = queue.pop_front() {
                            let Some(record) = s.version(n) else { continue };
                            for p in &record.provenance.parents {
                                let k = VersionKey::from(p);
                                if seen.insert(k.clone()) {
                                    if k.model == model {
                                        queue.push_back(k.version);
                                    } else {
                                        frontier.push(k);
                                    }
                                }
                            }
                            found.push(record.clone());
                        }
                        found
                    })
                    .await;
                match walked {
                    Ok(records) => {
                        for r in records {
                            graph.add_version(model.clone(), r)?;
                        }
                    }
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(graph)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, NewVersion, Relation,
    };

    /// What a graph says, whatever the order of its nodes: each node, each
    /// edge, and each version's record.
    fn facts(g: &LineageGraph) -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
        let nodes = g.nodes().map(|n| n.to_string()).collect();
        let edges = g
            .edges()
            .map(|(a, b, kind)| format!("{a} -> {b} {kind:?}"))
            .collect();
        let mut records: Vec<String> = g
            .nodes()
            .filter_map(|n| match n {
                LineageNode::Version(k) => Some(format!("{k}: {:?}", g.record(k))),
                _ => None,
            })
            .collect();
        records.sort();
        (nodes, edges, records)
    }

    /// A graph brought up to date after each kind of change says what a new
    /// build from the same states says, and a graph nobody else holds is
    /// changed in place.
    #[tokio::test]
    async fn a_graph_brought_up_to_date_equals_a_new_build() {
        let registry = Registry::in_memory();
        let me = registry.acting_as(Actor::new("ci").unwrap());
        let clicks = DatasetRef::new("clicks", DatasetRole::Train).version("v3");
        let register = |model: &'static str, i: u32, v: NewVersion| {
            let me = me.clone();
            async move {
                let source = ArtifactSource::bytes("m.bin", format!("{model}{i}")).unwrap();
                me.register(model, source, v).await.unwrap()
            }
        };
        let agrees = |registry: Registry| async move {
            let graph = registry.lineage().await.unwrap();
            let mut states = Vec::new();
            for m in registry.list_models().await.unwrap() {
                states.push(registry.snapshot(&m).await.unwrap());
            }
            assert_eq!(facts(&graph), facts(&build(&states).unwrap()));
            graph
        };
        me.create_model("base", CreateModel::new()).await.unwrap();
        register("base", 1, NewVersion::new().dataset(clicks.clone())).await;
        let first = agrees(registry.clone()).await;
        let first_ptr = Arc::as_ptr(&first);
        drop(first);

        // New versions in a model, with a parent in it.
        register(
            "base",
            2,
            NewVersion::new().parent("base/1", Relation::FineTunedFrom),
        )
        .await;
        let g = agrees(registry.clone()).await;
        assert_eq!(Arc::as_ptr(&g), first_ptr, "changed in place, not copied");
        drop(g);
        // A new model listed before the others, built on one of them.
        me.create_model("alpha", CreateModel::new()).await.unwrap();
        register(
            "alpha",
            1,
            NewVersion::new().parent("base/2", Relation::DistilledFrom),
        )
        .await;
        agrees(registry.clone()).await;
        // A record changed (tags) and a stage moved: records replaced.
        let team = [(MetricName::new("team").unwrap(), "risk".to_owned())];
        me.set_version_tags("base/1", team.into_iter().collect(), vec![])
            .await
            .unwrap();
        let held = agrees(registry.clone()).await;
        assert_eq!(
            held.record(&VersionKey::new(
                ModelName::new("base").unwrap(),
                VersionNumber::FIRST
            ))
            .unwrap()
            .tags
            .get(&MetricName::new("team").unwrap())
            .map(String::as_str),
            Some("risk")
        );
        // A graph still held elsewhere is copied, never changed under its holder.
        register("alpha", 2, NewVersion::new().dataset(clicks)).await;
        let now = agrees(registry.clone()).await;
        assert!(!Arc::ptr_eq(&held, &now));
        assert_eq!(
            held.nodes().filter(|n| n.to_string() == "alpha/2").count(),
            0
        );
        // Nothing changed: the same graph.
        assert!(Arc::ptr_eq(&now, &registry.lineage().await.unwrap()));
    }

    /// A call polled once and then kept, never polled again, neither holds up
    /// nor loses the build it started, nor does a call waiting for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_call_holds_up_no_other() {
        let registry = Registry::in_memory();
        let me = registry.acting_as(Actor::new("ci").unwrap());
        me.create_model("base", CreateModel::new()).await.unwrap();
        for i in 0..3 {
            let source = ArtifactSource::bytes("m.bin", format!("w{i}")).unwrap();
            me.register("base", source, NewVersion::new())
                .await
                .unwrap();
        }
        let mut starter = Box::pin(registry.lineage());
        let mut waiter = Box::pin(registry.lineage());
        // Each is polled once: the starter starts the build (on the blocking
        // pool, which may even finish it within this poll), the waiter finds
        // it running or finished.
        let _ = futures::poll!(starter.as_mut());
        let _ = futures::poll!(waiter.as_mut());
        let graph = tokio::time::timeout(std::time::Duration::from_secs(20), registry.lineage())
            .await
            .expect("not held up by the kept calls")
            .unwrap();
        assert_eq!(graph.nodes().count(), 3);
        drop((starter, waiter));
    }
}
