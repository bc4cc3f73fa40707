//! Lineage, comparison and metric history on the [`Registry`]: the registry reads
//! records, metric specs and manifests from the stores; the graph, the queries and
//! the diff are pure domain code ([`crate::domain::lineage`], [`crate::domain::diff`]).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

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

/// Which states a lineage graph was built from: each model and the last event
/// of its log that the graph includes, by name.
type LineageKey = Vec<(ModelName, u64)>;

/// The lineage graph [`Registry::lineage`] built last, and the states it was
/// built from.
///
/// A derived index, so it lives in the registry (which knows stores and
/// states) and not in the domain graph: the key is a position in each model's
/// log, and a log only grows, so a graph whose key matches the models' current
/// positions is exactly the graph a new build would give. One graph is kept:
/// its records are the states' own (shared), so it costs the graph's nodes and
/// indexes, not a copy of the versions.
#[derive(Default)]
pub(super) struct LineageCache {
    built: Mutex<Option<(LineageKey, Arc<LineageGraph>)>>,
}

impl LineageCache {
    /// The cached graph, if it was built from exactly these states.
    fn get(&self, key: &LineageKey) -> Option<Arc<LineageGraph>> {
        match &*lock(&self.built) {
            Some((k, graph)) if k == key => Some(Arc::clone(graph)),
            _ => None,
        }
    }

    /// Keeps `graph`, built from `key`. Two builds that race both hold a
    /// correct graph for their own key; the later put is kept.
    fn put(&self, key: LineageKey, graph: Arc<LineageGraph>) {
        *lock(&self.built) = Some((key, graph));
    }
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
    /// last one it built with the position in each model's log it was built
    /// from: when no model changed since (no event appended, no model created),
    /// asking again costs the usual check for new events of each model and
    /// returns the same graph, shared; any change builds it anew (off the async
    /// workers).
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
        let mut states = Vec::new();
        for model in self.list_models().await? {
            match self.snapshot(&model).await {
                Ok(state) => states.push(state),
                // Listed but without a first event: not a model (yet).
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let key: LineageKey = states.iter().map(|s| (s.name().clone(), s.seq())).collect();
        if let Some(graph) = self.inner.lineage.get(&key) {
            return Ok(graph);
        }
        let graph = blocking(move || -> Result<LineageGraph> {
            let mut graph = LineageGraph::new();
            for s in &states {
                for v in s.versions() {
                    graph.add_version(s.name().clone(), Arc::clone(v))?;
                }
            }
            Ok(graph)
        })
        .await??;
        let graph = Arc::new(graph);
        self.inner.lineage.put(key, Arc::clone(&graph));
        Ok(graph)
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
