//! The lineage graph: documented on `LineageGraph`.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::name::ModelName;
use super::record::{CodeRef, DatasetRef, DatasetRole, ParentRef, Relation, VersionRecord};
use super::reference::{VersionNumber, VersionRef};
use crate::digest::Digest;
use crate::error::{Error, Result};

mod render;

use render::{render_dot, render_mermaid};

// ----- node identities -------------------------------------------------------------

/// One version of one model: a node of the lineage graph.
///
/// Shown as `model/number`, the [`VersionRef`] form that resolves to it.
///
/// ```
/// use modelreg::{ModelName, VersionKey, VersionNumber};
/// let k = VersionKey::new(ModelName::new("fraud").unwrap(), VersionNumber::new(7).unwrap());
/// assert_eq!(k.to_string(), "fraud/7");
/// assert_eq!(k.to_ref().to_string(), "fraud/7");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct VersionKey {
    /// The model.
    pub model: ModelName,
    /// The version's number within it.
    pub version: VersionNumber,
}

impl VersionKey {
    /// Version `version` of `model`.
    pub fn new(model: ModelName, version: VersionNumber) -> Self {
        VersionKey { model, version }
    }

    /// The reference `model/number`.
    pub fn to_ref(&self) -> VersionRef {
        VersionRef::number(self.model.clone(), self.version)
    }
}

impl fmt::Display for VersionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}/{}", self.model, self.version))
    }
}

impl From<&ParentRef> for VersionKey {
    fn from(p: &ParentRef) -> Self {
        VersionKey::new(p.model.clone(), p.version)
    }
}

/// The identity of a dataset version: name, version label and digest.
///
/// Two [`DatasetRef`]s are the same node when these three agree; the role is a
/// property of the edge (one dataset can be one model's training data and another's
/// evaluation data) and the URI only says where the data lives.
///
/// ```
/// use modelreg::{DatasetKey, DatasetRef, DatasetRole};
/// let used = DatasetRef::new("clicks", DatasetRole::Train).version("v3").uri("s3://data/clicks/v3");
/// assert_eq!(DatasetKey::from(&used), DatasetKey::new("clicks").version("v3"));
/// assert_eq!(DatasetKey::new("clicks").version("v3").to_string(), "clicks@v3");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct DatasetKey {
    /// The dataset's name.
    pub name: String,
    /// Its version label, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its content digest, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

impl DatasetKey {
    /// A dataset with a name only.
    pub fn new(name: impl Into<String>) -> Self {
        DatasetKey {
            name: name.into(),
            version: None,
            digest: None,
        }
    }

    /// With a version label.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// With a content digest.
    pub fn digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }
}

impl From<&DatasetRef> for DatasetKey {
    fn from(d: &DatasetRef) -> Self {
        DatasetKey {
            name: d.name.clone(),
            version: d.version.clone(),
            digest: d.digest,
        }
    }
}

impl fmt::Display for DatasetKey {
    /// `name`, `name@version`, then ` (blake3:<first 12 hex digits>)` if there is a
    /// digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name.clone();
        if let Some(v) = &self.version {
            let _ = write!(s, "@{v}");
        }
        if let Some(d) = &self.digest {
            let _ = write!(s, " (blake3:{})", &d.to_hex()[..12]);
        }
        f.pad(&s)
    }
}

/// The identity of a code commit: repository (if recorded) and commit id. Whether
/// the working tree was dirty is a property of the edge.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct CodeKey {
    /// Repository URL or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Commit id.
    pub commit: String,
}

impl From<&CodeRef> for CodeKey {
    fn from(c: &CodeRef) -> Self {
        CodeKey {
            repository: c.repository.clone(),
            commit: c.commit.clone(),
        }
    }
}

impl fmt::Display for CodeKey {
    /// `repository@commit`, or the commit alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repository {
            Some(r) => f.pad(&format!("{r}@{}", self.commit)),
            None => f.pad(&self.commit),
        }
    }
}

/// A node of the lineage graph.
///
/// Serialized with a `type` tag:
/// `{"type":"version","model":"fraud","version":3}`,
/// `{"type":"dataset","name":"clicks","version":"v3"}`,
/// `{"type":"code","commit":"9f2c1e7"}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum LineageNode {
    /// A model version.
    Version(VersionKey),
    /// A dataset version.
    Dataset(DatasetKey),
    /// A code commit.
    Code(CodeKey),
}

impl fmt::Display for LineageNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineageNode::Version(k) => k.fmt(f),
            LineageNode::Dataset(k) => k.fmt(f),
            LineageNode::Code(k) => k.fmt(f),
        }
    }
}

impl From<VersionKey> for LineageNode {
    fn from(k: VersionKey) -> Self {
        LineageNode::Version(k)
    }
}

impl From<DatasetKey> for LineageNode {
    fn from(k: DatasetKey) -> Self {
        LineageNode::Dataset(k)
    }
}

impl From<CodeKey> for LineageNode {
    fn from(k: CodeKey) -> Self {
        LineageNode::Code(k)
    }
}

/// How a version uses one of its inputs: the label of an edge.
///
/// Serialized with a `type` tag: `{"type":"parent","relation":"fine_tuned_from"}`,
/// `{"type":"dataset","role":"train"}`, `{"type":"code","dirty":false}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum LineageEdgeKind {
    /// The input is a parent version.
    Parent {
        /// How the version derives from it.
        relation: Relation,
    },
    /// The input is a dataset.
    Dataset {
        /// What the dataset was used for.
        role: DatasetRole,
    },
    /// The input is the code the version was trained with.
    Code {
        /// Whether the working tree had uncommitted changes.
        dirty: bool,
    },
}

impl fmt::Display for LineageEdgeKind {
    /// `fine_tuned_from`, `train`, `code` or `code (dirty)`: the serialized names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LineageEdgeKind::Parent { relation } => relation.as_str(),
            LineageEdgeKind::Dataset { role } => role.as_str(),
            LineageEdgeKind::Code { dirty: false } => "code",
            LineageEdgeKind::Code { dirty: true } => "code (dirty)",
        };
        f.pad(s)
    }
}

// ----- the graph -------------------------------------------------------------------

type NodeId = usize;

#[derive(Clone, Debug)]
struct NodeData {
    node: LineageNode,
    /// The version's record; `None` for datasets, code, and versions that are only
    /// known as someone's parent.
    record: Option<Arc<VersionRecord>>,
    /// What this node was built from (only versions have inputs).
    inputs: Vec<(NodeId, LineageEdgeKind)>,
    /// What was built from this node: parent → children, dataset → versions,
    /// commit → versions.
    outputs: Vec<(NodeId, LineageEdgeKind)>,
}

/// Lineage across all models: model versions, datasets and code commits, and edges
/// from each input to the version built from it.
///
/// Edges point the way data flows: parent version → child version, dataset →
/// version, commit → version. Both directions are indexed (each node keeps its
/// inputs and its outputs), so [`upstream`](Self::upstream) and
/// [`downstream`](Self::downstream) are breadth-first walks over adjacency lists
/// that touch only what they return, never a scan of every version.
///
/// Built by [`add_version`](Self::add_version), one [`VersionRecord`] at a time
/// (what [`Registry::lineage`](crate::Registry::lineage) does for every version of
/// every model). A parent named by a record but not (yet) added is a version node
/// without a record. Walks keep a visited set, so they terminate even on a graph
/// with a cycle, which the registry never records (see
/// [`check_new_version`](Self::check_new_version)) but a hand-edited log could.
///
/// The lineage graph: which model versions were built from which parent versions,
/// datasets and code commits, and the queries over it (upstream, downstream, path),
/// with Graphviz DOT and Mermaid export. Pure: built from [`VersionRecord`]s, no I/O.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::{DatasetKey, LineageGraph, LineageNode, VersionKey};
/// # use modelreg::*;
/// # let record = |n: u64, parents: Vec<ParentRef>, datasets: Vec<DatasetRef>| VersionRecord {
/// #     model: ModelName::new("fraud").unwrap(),
/// #     number: VersionNumber::new(n).unwrap(), semver: None, artifact: Digest::of(b""), size: 0,
/// #     files: 0, created_at: chrono::DateTime::UNIX_EPOCH, created_by: Actor::new("ci").unwrap(),
/// #     description: String::new(), tags: Tags::new(),
/// #     provenance: Provenance { parents, datasets, ..Provenance::default() },
/// #     metrics: Metrics::new(), deprecated: None, stage: Default::default(), stage_since: None, approvals: Default::default(), reached: Default::default(), scan: None, purged: None, signatures: Vec::new() };
/// let clicks = DatasetRef::new("clicks", DatasetRole::Train).version("v3");
/// let base = ModelName::new("base")?;
/// let fraud = ModelName::new("fraud")?;
/// let mut graph = LineageGraph::new();
/// graph.add_version(base.clone(), record(1, vec![], vec![clicks.clone()]))?;
/// graph.add_version(fraud.clone(), record(1, vec![ParentRef {
///     model: base.clone(), version: VersionNumber::FIRST, relation: Relation::FineTunedFrom,
/// }], vec![]))?;
///
/// // Impact: everything built on clicks@v3, directly or through a parent.
/// let hit = graph.downstream(&LineageNode::Dataset(DatasetKey::from(&clicks)), None)?;
/// let affected: Vec<String> = hit.versions().map(|n| n.node.to_string()).collect();
/// assert_eq!(affected, ["base/1", "fraud/1"]);
///
/// // Provenance: everything fraud/1 was built from.
/// let up = graph.upstream(&VersionKey::new(fraud, VersionNumber::FIRST), None)?;
/// assert_eq!(up.len(), 3); // fraud/1 itself, base/1 and clicks@v3
/// assert!(up.to_mermaid().starts_with("flowchart LR\n"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct LineageGraph {
    nodes: Vec<NodeData>,
    versions: HashMap<VersionKey, NodeId>,
    datasets: HashMap<DatasetKey, NodeId>,
    code: HashMap<CodeKey, NodeId>,
}

/// Which way a walk follows edges.
#[derive(Clone, Copy)]
enum Direction {
    /// From a version to what it was built from.
    Up,
    /// From a node to what was built from it.
    Down,
}

impl LineageGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds version `record.number` of `model` with edges from its parents,
    /// datasets and code commit.
    ///
    /// Fails with [`Error::AlreadyExists`] if that version was added before. Parents
    /// need not have been added: they become version nodes without a record until
    /// they are. Identical inputs listed twice are one edge.
    pub fn add_version(
        &mut self,
        model: ModelName,
        record: impl Into<Arc<VersionRecord>>,
    ) -> Result<()> {
        let record: Arc<VersionRecord> = record.into();
        let key = VersionKey::new(model, record.number);
        let id = self.version_id(&key);
        if self.nodes[id].record.is_some() {
            return Err(Error::already_exists(format!(
                "version {key} in the lineage graph"
            )));
        }
        let p = &record.provenance;
        for parent in &p.parents {
            let from = self.version_id(&VersionKey::from(parent));
            let relation = parent.relation;
            self.connect(from, id, LineageEdgeKind::Parent { relation });
        }
        for d in &p.datasets {
            let from = self.dataset_id(DatasetKey::from(d));
            let role = d.role;
            self.connect(from, id, LineageEdgeKind::Dataset { role });
        }
        if let Some(c) = &p.code {
            let from = self.code_id(CodeKey::from(c));
            self.connect(from, id, LineageEdgeKind::Code { dirty: c.dirty });
        }
        self.nodes[id].record = Some(record);
        Ok(())
    }

    /// Replaces the record of version `record.number` of `model`, added before,
    /// by a newer record of the same version (its tags, metrics or stage
    /// changed): the graph's edges stay as they are, so the new record must
    /// name the same parents, datasets and code.
    ///
    /// [`Error::NotFound`] if the version was not added (known only as a parent
    /// or not at all), [`Error::InvalidInput`] if the record's lineage differs
    /// from the one the version was added with.
    pub fn replace_record(
        &mut self,
        model: &ModelName,
        record: impl Into<Arc<VersionRecord>>,
    ) -> Result<()> {
        let record: Arc<VersionRecord> = record.into();
        let key = VersionKey::new(model.clone(), record.number);
        let Some(old) = self
            .versions
            .get(&key)
            .and_then(|id| self.nodes[*id].record.as_mut())
        else {
            return Err(Error::not_found(format!(
                "version {key} in the lineage graph"
            )));
        };
        let (a, b) = (&old.provenance, &record.provenance);
        if a.parents != b.parents || a.datasets != b.datasets || a.code != b.code {
            return Err(Error::invalid_input(
                format!("record of {key}"),
                "its parents, datasets or code differ from the version's in the graph",
            ));
        }
        *old = record;
        Ok(())
    }

    /// The number of nodes (versions, datasets and commits).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node, in the order they were first seen.
    pub fn nodes(&self) -> impl Iterator<Item = &LineageNode> {
        self.nodes.iter().map(|n| &n.node)
    }

    /// Every edge as `(input, output, kind)`.
    pub fn edges(&self) -> impl Iterator<Item = (&LineageNode, &LineageNode, LineageEdgeKind)> {
        self.nodes.iter().flat_map(move |n| {
            n.inputs
                .iter()
                .map(move |(from, kind)| (&self.nodes[*from].node, &n.node, *kind))
        })
    }

    /// Whether `node` is in the graph (a version also when it is only known as a
    /// parent).
    pub fn contains(&self, node: &LineageNode) -> bool {
        self.id(node).is_some()
    }

    /// The record of a version that was added.
    pub fn record(&self, version: &VersionKey) -> Option<&Arc<VersionRecord>> {
        self.versions
            .get(version)
            .and_then(|id| self.nodes[*id].record.as_ref())
    }

    /// Every dataset version with this name, whatever its version label and digest:
    /// the identities to ask [`downstream`](Self::downstream) about when only the
    /// name is known.
    pub fn datasets_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a DatasetKey> {
        self.datasets.keys().filter(move |k| k.name == name)
    }

    /// Everything `version` was built from, transitively: parents, their parents,
    /// and the datasets and code of each of them, up to `depth` edges away (`None`:
    /// no limit). [`Error::NotFound`] if the version is not in the graph.
    pub fn upstream(&self, version: &VersionKey, depth: Option<usize>) -> Result<LineageSubgraph> {
        let start = self
            .versions
            .get(version)
            .ok_or_else(|| Error::not_found(format!("version {version} in the lineage graph")))?;
        Ok(self.walk(*start, depth, Direction::Up))
    }

    /// Every version built on `node` — a version, a dataset or a commit — in any
    /// model, transitively through parent versions, up to `depth` edges away
    /// (`None`: no limit). This answers "dataset X leaked labels: what is
    /// affected?"; each affected version carries its record, and its
    /// [`VersionKey`] looks up anything else about it.
    /// [`Error::NotFound`] if the node is not in the graph.
    pub fn downstream(&self, node: &LineageNode, depth: Option<usize>) -> Result<LineageSubgraph> {
        let start = self
            .id(node)
            .ok_or_else(|| Error::not_found(format!("{node} in the lineage graph")))?;
        Ok(self.walk(start, depth, Direction::Down))
    }

    /// The shortest chain of parent → child derivations between two versions, in
    /// whichever direction one descends from the other; `None` if neither does.
    /// The path of a version to itself is empty. Only parent edges count: two
    /// versions trained on the same dataset are not derived from one another.
    /// [`Error::NotFound`] if either version is not in the graph.
    pub fn path(&self, a: &VersionKey, b: &VersionKey) -> Result<Option<LineagePath>> {
        let find = |k: &VersionKey| {
            self.versions
                .get(k)
                .copied()
                .ok_or_else(|| Error::not_found(format!("version {k} in the lineage graph")))
        };
        let (ia, ib) = (find(a)?, find(b)?);
        Ok(self
            .descent(ia, ib)
            .or_else(|| self.descent(ib, ia))
            .map(|ids| {
                let steps = ids
                    .windows(2)
                    .map(|w| {
                        let relation = self.nodes[w[1]]
                            .inputs
                            .iter()
                            .find_map(|(from, kind)| match kind {
                                LineageEdgeKind::Parent { relation } if *from == w[0] => {
                                    Some(*relation)
                                }
                                _ => None,
                            })
                            .unwrap_or(Relation::DerivedFrom);
                        LineageStep {
                            parent: self.version_key(w[0]),
                            child: self.version_key(w[1]),
                            relation,
                        }
                    })
                    .collect();
                LineagePath {
                    ancestor: self.version_key(ids[0]),
                    descendant: self.version_key(ids[ids.len() - 1]),
                    steps,
                }
            }))
    }

    /// Checks that a new version `child` may be recorded with `parents`: each
    /// parent must be a version that was added (not only named as someone's
    /// parent), none may be `child` itself, and none may descend from `child` —
    /// recording it would make `child` its own ancestor. `child` itself must not
    /// have been added yet.
    ///
    /// Errors are [`Error::InvalidInput`] naming the parent and the reason, or
    /// [`Error::AlreadyExists`] for `child`. The registry runs this on every
    /// registration with parents. Because a parent must already exist and `child`
    /// does not, the cycle can only arise from a log edited by hand; the check makes
    /// the invariant explicit instead of leaving it to an argument.
    ///
    /// ```
    /// # fn main() -> modelreg::Result<()> {
    /// use modelreg::{LineageGraph, ModelName, ParentRef, Relation, VersionKey, VersionNumber};
    /// let graph = LineageGraph::new();
    /// let m = ModelName::new("fraud")?;
    /// let child = VersionKey::new(m.clone(), VersionNumber::FIRST);
    /// let own = ParentRef { model: m, version: VersionNumber::FIRST, relation: Relation::FineTunedFrom };
    /// let err = graph.check_new_version(&child, &[own]).unwrap_err();
    /// assert!(matches!(err, modelreg::Error::InvalidInput { .. }));
    /// # Ok(()) }
    /// ```
    pub fn check_new_version(&self, child: &VersionKey, parents: &[ParentRef]) -> Result<()> {
        if self.record(child).is_some() {
            return Err(Error::already_exists(format!(
                "version {child} in the lineage graph"
            )));
        }
        let what = |p: &VersionKey| format!("parent {p} of {child}");
        for p in parents {
            let p = VersionKey::from(p);
            if p == *child {
                return Err(Error::invalid_input(
                    what(&p),
                    "a version cannot be its own parent",
                ));
            }
            if self.record(&p).is_none() {
                return Err(Error::invalid_input(what(&p), "does not exist"));
            }
        }
        // `child` can only be in the graph as someone's (dangling) parent. Then a
        // parent that descends from it would close a cycle.
        let Some(&start) = self.versions.get(child) else {
            return Ok(());
        };
        for p in parents {
            let p = VersionKey::from(p);
            if let Some(&target) = self.versions.get(&p)
                && self.descent(start, target).is_some()
            {
                return Err(Error::invalid_input(
                    what(&p),
                    format!("{p} descends from {child}: {child} would become its own ancestor"),
                ));
            }
        }
        Ok(())
    }

    /// A cycle of parent edges, if the graph has one (only a hand-edited log can
    /// produce it): the versions on it, each a parent of the next and the last a
    /// parent of the first.
    pub fn find_cycle(&self) -> Option<Vec<VersionKey>> {
        // Iterative three-colour depth-first search over parent → child edges.
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut colour = vec![WHITE; self.nodes.len()];
        for root in self.versions.values().copied() {
            if colour[root] != WHITE {
                continue;
            }
            let mut stack: Vec<(NodeId, usize)> = vec![(root, 0)];
            colour[root] = GREY;
            while let Some((id, next)) = stack.last_mut() {
                let id = *id;
                match self.nodes[id].outputs.get(*next) {
                    Some(&(child, _)) => {
                        *next += 1;
                        match colour[child] {
                            WHITE => {
                                colour[child] = GREY;
                                stack.push((child, 0));
                            }
                            GREY => {
                                let from = stack.iter().position(|(n, _)| *n == child)?;
                                return Some(
                                    stack[from..]
                                        .iter()
                                        .map(|(n, _)| self.version_key(*n))
                                        .collect(),
                                );
                            }
                            _ => {}
                        }
                    }
                    None => {
                        colour[id] = BLACK;
                        stack.pop();
                    }
                }
            }
        }
        None
    }

    /// The whole graph as Graphviz DOT (see [`LineageSubgraph::to_dot`]).
    pub fn to_dot(&self) -> String {
        let nodes = self.nodes.iter().map(|n| (&n.node, n.record.as_deref()));
        render_dot(nodes, self.index_edges())
    }

    /// The whole graph as a Mermaid flowchart (see [`LineageSubgraph::to_mermaid`]).
    pub fn to_mermaid(&self) -> String {
        let nodes = self.nodes.iter().map(|n| (&n.node, n.record.as_deref()));
        render_mermaid(nodes, self.index_edges())
    }

    // ----- internals ---------------------------------------------------------------

    fn index_edges(&self) -> impl Iterator<Item = (usize, usize, LineageEdgeKind)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .flat_map(|(to, n)| n.inputs.iter().map(move |(from, kind)| (*from, to, *kind)))
    }

    fn id(&self, node: &LineageNode) -> Option<NodeId> {
        match node {
            LineageNode::Version(k) => self.versions.get(k),
            LineageNode::Dataset(k) => self.datasets.get(k),
            LineageNode::Code(k) => self.code.get(k),
        }
        .copied()
    }

    fn push(&mut self, node: LineageNode) -> NodeId {
        self.nodes.push(NodeData {
            node,
            record: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn version_id(&mut self, key: &VersionKey) -> NodeId {
        if let Some(id) = self.versions.get(key) {
            return *id;
        }
        let id = self.push(LineageNode::Version(key.clone()));
        self.versions.insert(key.clone(), id);
        id
    }

    fn dataset_id(&mut self, key: DatasetKey) -> NodeId {
        if let Some(id) = self.datasets.get(&key) {
            return *id;
        }
        let id = self.push(LineageNode::Dataset(key.clone()));
        self.datasets.insert(key, id);
        id
    }

    fn code_id(&mut self, key: CodeKey) -> NodeId {
        if let Some(id) = self.code.get(&key) {
            return *id;
        }
        let id = self.push(LineageNode::Code(key.clone()));
        self.code.insert(key, id);
        id
    }

    fn connect(&mut self, from: NodeId, to: NodeId, kind: LineageEdgeKind) {
        if self.nodes[to].inputs.contains(&(from, kind)) {
            return;
        }
        self.nodes[to].inputs.push((from, kind));
        self.nodes[from].outputs.push((to, kind));
    }

    /// The key of a version node (only called on version nodes).
    fn version_key(&self, id: NodeId) -> VersionKey {
        match &self.nodes[id].node {
            LineageNode::Version(k) => k.clone(),
            other => unreachable!("node {other} is not a version"),
        }
    }

    /// The shortest parent → child chain from `from` down to `to`, as node ids
    /// including both ends.
    fn descent(&self, from: NodeId, to: NodeId) -> Option<Vec<NodeId>> {
        let mut prev: HashMap<NodeId, NodeId> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        prev.insert(from, from);
        while let Some(id) = queue.pop_front() {
            if id == to {
                let mut path = vec![to];
                let mut at = to;
                while at != from {
                    at = prev[&at];
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            for (child, _) in &self.nodes[id].outputs {
                if !prev.contains_key(child) {
                    prev.insert(*child, id);
                    queue.push_back(*child);
                }
            }
        }
        None
    }

    /// Breadth-first walk from `start`, following inputs (up) or outputs (down).
    fn walk(&self, start: NodeId, depth: Option<usize>, dir: Direction) -> LineageSubgraph {
        const UNSEEN: u32 = u32::MAX;
        // Graph node id → index in the subgraph. A dense vector beats a hash map
        // here: the walk is the hot path of impact queries.
        let mut index = vec![UNSEEN; self.nodes.len()];
        let mut ids = vec![start];
        let mut nodes = vec![self.reached(start, 0)];
        let mut edges = Vec::new();
        index[start] = 0;
        let mut at = 0;
        while at < ids.len() {
            let (id, d) = (ids[at], nodes[at].depth);
            if depth.is_none_or(|max| d < max) {
                let n = &self.nodes[id];
                let next = match dir {
                    Direction::Up => &n.inputs,
                    Direction::Down => &n.outputs,
                };
                for &(other, kind) in next {
                    if index[other] == UNSEEN {
                        index[other] = ids.len() as u32;
                        ids.push(other);
                        nodes.push(self.reached(other, d + 1));
                    }
                    let j = index[other] as usize;
                    let (from, to) = match dir {
                        Direction::Up => (j, at),
                        Direction::Down => (at, j),
                    };
                    edges.push(SubgraphEdge { from, to, kind });
                }
            }
            at += 1;
        }
        LineageSubgraph { nodes, edges }
    }

    fn reached(&self, id: NodeId, depth: usize) -> ReachedNode {
        let n = &self.nodes[id];
        ReachedNode {
            node: n.node.clone(),
            depth,
            record: n.record.clone(),
        }
    }
}

// ----- query results ---------------------------------------------------------------

/// A node a lineage query reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct ReachedNode {
    /// The node.
    #[serde(flatten)]
    pub node: LineageNode,
    /// How many edges from the query's origin (0 for the origin itself).
    pub depth: usize,
    /// For a version, its record — what it is, its metrics, its provenance — so an
    /// impact report needs no further lookups; `None` for datasets, commits and
    /// versions known only as a parent.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_record"
    )]
    pub record: Option<Arc<VersionRecord>>,
}

fn serialize_record<S: serde::Serializer>(
    r: &Option<Arc<VersionRecord>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    r.as_deref().serialize(s)
}

impl ReachedNode {
    /// The version key, if this node is a version.
    pub fn version(&self) -> Option<&VersionKey> {
        match &self.node {
            LineageNode::Version(k) => Some(k),
            _ => None,
        }
    }
}

/// An edge of a [`LineageSubgraph`], between two of its nodes by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct SubgraphEdge {
    /// Index of the input node in [`LineageSubgraph::nodes`].
    pub from: usize,
    /// Index of the version built from it.
    pub to: usize,
    /// How the version uses the input.
    pub kind: LineageEdgeKind,
}

/// What an upstream or downstream query reached: its origin first (depth 0), then
/// every node it reached in breadth-first order (nearest first), each once, and the
/// edges it followed.
///
/// Serialized as `{"nodes":[{"type":"version","model":…,"version":…,"depth":0,
/// "record":{…}},…],"edges":[{"from":1,"to":0,"kind":{"type":"parent",…}},…]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct LineageSubgraph {
    nodes: Vec<ReachedNode>,
    edges: Vec<SubgraphEdge>,
}

impl LineageSubgraph {
    /// The node the query started from.
    pub fn origin(&self) -> &ReachedNode {
        &self.nodes[0]
    }

    /// Every node, the origin first.
    pub fn nodes(&self) -> &[ReachedNode] {
        &self.nodes
    }

    /// The edges followed, by node index.
    pub fn edges(&self) -> &[SubgraphEdge] {
        &self.edges
    }

    /// The number of nodes, the origin included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a subgraph holds at least its origin.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The versions reached, nearest first, without the origin.
    pub fn versions(&self) -> impl Iterator<Item = &ReachedNode> {
        self.reached()
            .filter(|n| matches!(n.node, LineageNode::Version(_)))
    }

    /// The datasets reached, nearest first, without the origin.
    pub fn datasets(&self) -> impl Iterator<Item = (&DatasetKey, usize)> {
        self.reached().filter_map(|n| match &n.node {
            LineageNode::Dataset(k) => Some((k, n.depth)),
            _ => None,
        })
    }

    /// The commits reached, nearest first, without the origin.
    pub fn code(&self) -> impl Iterator<Item = (&CodeKey, usize)> {
        self.reached().filter_map(|n| match &n.node {
            LineageNode::Code(k) => Some((k, n.depth)),
            _ => None,
        })
    }

    /// Whether the query reached `node` (the origin counts).
    pub fn contains(&self, node: &LineageNode) -> bool {
        self.nodes.iter().any(|n| n.node == *node)
    }

    /// Graphviz DOT: `digraph lineage { … }`, edges in data-flow direction (input →
    /// version), versions as boxes, datasets as cylinders, commits as notes, edges
    /// labelled with the relation, role or `code`.
    ///
    /// Node ids are `n0`, `n1`, … and every label is a quoted string in which `"`
    /// and `\` are escaped, `&` becomes `&amp;` (Graphviz decodes entities), a
    /// newline becomes `\n`, and other control and
    /// bidirectional-formatting characters become U+FFFD, so no name can end the
    /// string or change the graph.
    ///
    /// ```
    /// # fn main() -> modelreg::Result<()> {
    /// # use modelreg::*;
    /// # let record = VersionRecord {
    /// #     model: ModelName::new("fraud").unwrap(),
    /// #     number: VersionNumber::FIRST, semver: None, artifact: Digest::of(b""), size: 0,
    /// #     files: 0, created_at: chrono::DateTime::UNIX_EPOCH, created_by: Actor::new("ci").unwrap(),
    /// #     description: String::new(), tags: Tags::new(), provenance: Provenance {
    /// #         datasets: vec![DatasetRef::new("say \"hi\"", DatasetRole::Train)], ..Provenance::default() },
    /// #     metrics: Metrics::new(), deprecated: None, stage: Default::default(), stage_since: None, approvals: Default::default(), reached: Default::default(), scan: None, purged: None, signatures: Vec::new() };
    /// let mut graph = LineageGraph::new();
    /// graph.add_version(ModelName::new("chat")?, record)?; // trained on `say "hi"`
    /// let key = VersionKey::new(ModelName::new("chat")?, VersionNumber::FIRST);
    /// let dot = graph.upstream(&key, None)?.to_dot();
    /// assert!(dot.contains(r#"n1 [label="say \"hi\"", shape=cylinder];"#), "{dot}");
    /// assert!(dot.contains(r#"n1 -> n0 [label="train"];"#));
    /// # Ok(()) }
    /// ```
    pub fn to_dot(&self) -> String {
        render_dot(self.node_labels(), self.index_edges())
    }

    /// A Mermaid flowchart: `flowchart LR`, then one line per node (`n0["fraud/3"]`,
    /// datasets as `[("…")]` cylinders, commits as `{{"…"}}` hexagons) and one per
    /// edge (`n1 -->|"train"| n0`).
    ///
    /// Labels are quoted; every character outside letters, digits, space and
    /// `._-/:@+,=` is written as a Mermaid entity code (`#34;` for `"`), a newline
    /// as `<br/>`, and other control and bidirectional-formatting characters as
    /// `#65533;`, so no name can end a label or inject markup.
    pub fn to_mermaid(&self) -> String {
        render_mermaid(self.node_labels(), self.index_edges())
    }

    fn reached(&self) -> impl Iterator<Item = &ReachedNode> {
        self.nodes.iter().skip(1)
    }

    fn node_labels(&self) -> impl Iterator<Item = (&LineageNode, Option<&VersionRecord>)> {
        self.nodes.iter().map(|n| (&n.node, n.record.as_deref()))
    }

    fn index_edges(&self) -> impl Iterator<Item = (usize, usize, LineageEdgeKind)> + '_ {
        self.edges.iter().map(|e| (e.from, e.to, e.kind))
    }
}

/// A derivation chain between two versions, from the ancestor down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineagePath {
    /// The version the chain starts from.
    pub ancestor: VersionKey,
    /// The version it ends at.
    pub descendant: VersionKey,
    /// Each parent → child derivation in order; empty when both are one version.
    pub steps: Vec<LineageStep>,
}

/// One parent → child derivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageStep {
    /// The parent.
    pub parent: VersionKey,
    /// The child.
    pub child: VersionKey,
    /// How the child derives from the parent.
    pub relation: Relation,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::render::{dot_escape, mermaid_escape};
    use super::*;
    use crate::domain::{Actor, MetricName, Metrics, Provenance, Tags};

    fn key(m: &str, n: u64) -> VersionKey {
        VersionKey::new(ModelName::new(m).unwrap(), VersionNumber::new(n).unwrap())
    }

    fn record(n: u64, provenance: Provenance) -> VersionRecord {
        VersionRecord {
            model: crate::domain::ModelName::unset(),
            number: VersionNumber::new(n).unwrap(),
            semver: None,
            artifact: Digest::of(b""),
            size: 0,
            files: 0,
            created_at: chrono::DateTime::UNIX_EPOCH,
            created_by: Actor::new("ci").unwrap(),
            description: String::new(),
            tags: Tags::new(),
            provenance,
            metrics: Metrics::new(),
            deprecated: None,
            stage: Default::default(),
            stage_since: None,
            approvals: Default::default(),
            reached: Default::default(),
            scan: None,
            purged: None,
            signatures: Vec::new(),
        }
    }

    fn parent(m: &str, n: u64) -> ParentRef {
        ParentRef {
            model: ModelName::new(m).unwrap(),
            version: VersionNumber::new(n).unwrap(),
            relation: Relation::FineTunedFrom,
        }
    }

    /// base/1 (clicks@v3 train, commit abc) → fraud/1 → fraud/2; other/1 on views.
    fn sample() -> LineageGraph {
        let mut g = LineageGraph::new();
        let clicks = DatasetRef::new("clicks", DatasetRole::Train).version("v3");
        let code = CodeRef {
            repository: None,
            commit: "abc".into(),
            dirty: false,
        };
        let add = |g: &mut LineageGraph, m: &str, n: u64, p: Provenance| {
            g.add_version(ModelName::new(m).unwrap(), record(n, p))
                .unwrap()
        };
        add(
            &mut g,
            "base",
            1,
            Provenance {
                datasets: vec![clicks],
                code: Some(code),
                ..Provenance::default()
            },
        );
        add(
            &mut g,
            "fraud",
            1,
            Provenance {
                parents: vec![parent("base", 1)],
                ..Provenance::default()
            },
        );
        add(
            &mut g,
            "fraud",
            2,
            Provenance {
                parents: vec![parent("fraud", 1)],
                ..Provenance::default()
            },
        );
        add(
            &mut g,
            "other",
            1,
            Provenance {
                datasets: vec![DatasetRef::new("views", DatasetRole::Eval)],
                ..Provenance::default()
            },
        );
        g
    }

    fn names(s: &LineageSubgraph) -> Vec<String> {
        s.nodes().iter().map(|n| n.node.to_string()).collect()
    }

    #[test]
    fn a_record_is_replaced_only_by_one_with_the_same_lineage() {
        let mut g = sample();
        let fraud = ModelName::new("fraud").unwrap();
        let k = key("fraud", 1);
        let mut newer = (**g.record(&k).unwrap()).clone();
        newer
            .tags
            .insert(MetricName::new("team").unwrap(), "risk".into());
        g.replace_record(&fraud, newer.clone()).unwrap();
        assert_eq!(
            g.record(&k)
                .unwrap()
                .tags
                .get(&MetricName::new("team").unwrap())
                .map(String::as_str),
            Some("risk")
        );
        let edges = g.edges().count();

        let mut moved = newer.clone();
        moved.provenance.parents.clear();
        let err = g.replace_record(&fraud, moved).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert_eq!(g.record(&k).unwrap().provenance, newer.provenance);
        assert_eq!(g.edges().count(), edges);

        let unknown = record(9, Provenance::default());
        assert!(matches!(
            g.replace_record(&fraud, unknown),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn upstream_and_downstream_with_depth() {
        let g = sample();
        let up = g.upstream(&key("fraud", 2), None).unwrap();
        assert_eq!(
            names(&up),
            ["fraud/2", "fraud/1", "base/1", "clicks@v3", "abc"]
        );
        assert_eq!(
            up.nodes().iter().map(|n| n.depth).collect::<Vec<_>>(),
            [0, 1, 2, 3, 3]
        );
        let up1 = g.upstream(&key("fraud", 2), Some(1)).unwrap();
        assert_eq!(names(&up1), ["fraud/2", "fraud/1"]);
        assert_eq!(up1.edges().len(), 1);

        let clicks = LineageNode::Dataset(DatasetKey::new("clicks").version("v3"));
        let down = g.downstream(&clicks, None).unwrap();
        assert_eq!(
            down.versions()
                .map(|n| n.node.to_string())
                .collect::<Vec<_>>(),
            ["base/1", "fraud/1", "fraud/2"]
        );
        assert!(down.versions().all(|n| n.record.is_some()));
        let down2 = g.downstream(&clicks, Some(2)).unwrap();
        assert_eq!(names(&down2), ["clicks@v3", "base/1", "fraud/1"]);

        // A name without the version label is another identity.
        assert_err_not_found(g.downstream(&LineageNode::Dataset(DatasetKey::new("clicks")), None));
        assert_eq!(
            g.datasets_named("clicks").collect::<Vec<_>>(),
            [&DatasetKey::new("clicks").version("v3")]
        );
        assert_err_not_found(g.upstream(&key("fraud", 3), None));
    }

    fn assert_err_not_found(r: Result<LineageSubgraph>) {
        assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    }

    #[test]
    fn path_between_versions() {
        let g = sample();
        let p = g.path(&key("fraud", 2), &key("base", 1)).unwrap().unwrap();
        assert_eq!(p.ancestor, key("base", 1));
        assert_eq!(p.descendant, key("fraud", 2));
        assert_eq!(
            p.steps
                .iter()
                .map(|s| (s.parent.to_string(), s.child.to_string()))
                .collect::<Vec<_>>(),
            [
                ("base/1".to_owned(), "fraud/1".to_owned()),
                ("fraud/1".to_owned(), "fraud/2".to_owned())
            ]
        );
        assert_eq!(p.steps[0].relation, Relation::FineTunedFrom);
        assert_eq!(g.path(&key("fraud", 1), &key("other", 1)).unwrap(), None);
        let same = g.path(&key("fraud", 1), &key("fraud", 1)).unwrap().unwrap();
        assert!(same.steps.is_empty());
        assert!(g.path(&key("fraud", 1), &key("nope", 1)).is_err());
    }

    #[test]
    fn duplicate_versions_and_inputs() {
        let mut g = sample();
        let again = g.add_version(
            ModelName::new("fraud").unwrap(),
            record(1, Provenance::default()),
        );
        assert!(matches!(again, Err(Error::AlreadyExists { .. })));
        let d = DatasetRef::new("x", DatasetRole::Train);
        g.add_version(
            ModelName::new("dup").unwrap(),
            record(
                1,
                Provenance {
                    datasets: vec![d.clone(), d, DatasetRef::new("x", DatasetRole::Eval)],
                    ..Provenance::default()
                },
            ),
        )
        .unwrap();
        let up = g.upstream(&key("dup", 1), None).unwrap();
        assert_eq!(up.len(), 2);
        assert_eq!(up.edges().len(), 2); // train and eval, the duplicate dropped
    }

    #[test]
    fn new_versions_cannot_close_cycles() {
        let mut g = LineageGraph::new();
        // a/1 names a/2 as its parent before a/2 exists: only a hand-edited log can.
        g.add_version(
            ModelName::new("a").unwrap(),
            record(
                1,
                Provenance {
                    parents: vec![parent("a", 2)],
                    ..Provenance::default()
                },
            ),
        )
        .unwrap();
        let reason = |r: Result<()>| match r {
            Err(Error::InvalidInput { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(
            reason(g.check_new_version(&key("a", 2), &[parent("a", 1)]))
                .contains("would become its own ancestor")
        );
        assert!(
            reason(g.check_new_version(&key("a", 3), &[parent("a", 3)])).contains("its own parent")
        );
        assert!(
            reason(g.check_new_version(&key("a", 3), &[parent("a", 2)])).contains("does not exist")
        );
        assert!(g.check_new_version(&key("a", 3), &[parent("a", 1)]).is_ok());
        assert!(matches!(
            g.check_new_version(&key("a", 1), &[]),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(g.find_cycle(), None);
        // Forced in anyway (as a tampered log would), the cycle is found and walks end.
        g.add_version(
            ModelName::new("a").unwrap(),
            record(
                2,
                Provenance {
                    parents: vec![parent("a", 1)],
                    ..Provenance::default()
                },
            ),
        )
        .unwrap();
        let cycle = g.find_cycle().unwrap();
        assert_eq!(cycle.len(), 2);
        assert_eq!(g.upstream(&key("a", 1), None).unwrap().len(), 2);
    }

    #[test]
    fn dot_escapes_labels() {
        assert_eq!(dot_escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(dot_escape("two\nlines"), "two\\nlines");
        assert_eq!(
            dot_escape("tab\there\u{202E}x\r"),
            "tab\u{FFFD}here\u{FFFD}x\u{FFFD}"
        );
        assert_eq!(dot_escape("ünïcode {} <b> ;"), "ünïcode {} <b> ;");
        assert_eq!(dot_escape("&amp; &"), "&amp;amp; &amp;");

        let mut g = LineageGraph::new();
        g.add_version(
            ModelName::new("m").unwrap(),
            record(
                1,
                Provenance {
                    datasets: vec![
                        DatasetRef::new("evil\"]; x -> y; \"\nname", DatasetRole::Train)
                            .version("v\\1")
                            .digest(Digest::of(b"data")),
                    ],
                    code: Some(CodeRef {
                        repository: Some("git@host:r.git".into()),
                        commit: "c0ffee".into(),
                        dirty: true,
                    }),
                    ..Provenance::default()
                },
            ),
        )
        .unwrap();
        let hex = &Digest::of(b"data").to_hex()[..12];
        assert_eq!(
            g.to_dot(),
            format!(
                "digraph lineage {{\n  rankdir=LR;\n\
                 \x20 n0 [label=\"m/1\", shape=box];\n\
                 \x20 n1 [label=\"evil\\\"]; x -> y; \\\"\\nname@v\\\\1\\nblake3:{hex}\", shape=cylinder];\n\
                 \x20 n2 [label=\"commit c0ffee\\ngit@host:r.git\", shape=note];\n\
                 \x20 n1 -> n0 [label=\"train\"];\n\
                 \x20 n2 -> n0 [label=\"code (dirty)\"];\n}}\n"
            )
        );
        assert_eq!(g.to_dot(), g.upstream(&key("m", 1), None).unwrap().to_dot());
    }

    #[test]
    fn mermaid_escapes_labels() {
        assert_eq!(mermaid_escape("a\"b"), "a#34;b");
        assert_eq!(mermaid_escape("x|y]z#1;"), "x#124;y#93;z#35;1#59;");
        assert_eq!(mermaid_escape("<script>&"), "#60;script#62;#38;");
        assert_eq!(mermaid_escape("a\nb"), "a<br/>b");
        assert_eq!(mermaid_escape("\u{7}\u{202E}é"), "#65533;#65533;é");
        assert_eq!(
            mermaid_escape("fraud/3 1.0.0 blake3:ab_c-d@v,+="),
            "fraud/3 1.0.0 blake3:ab_c-d@v,+="
        );

        let g = sample();
        let m = g.upstream(&key("fraud", 1), None).unwrap().to_mermaid();
        assert_eq!(
            m,
            "flowchart LR\n  n0[\"fraud/1\"]\n  n1[\"base/1\"]\n  n2[(\"clicks@v3\")]\n  \
             n3{{\"commit abc\"}}\n  n1 -->|\"fine_tuned_from\"| n0\n  \
             n2 -->|\"train\"| n1\n  n3 -->|\"code\"| n1\n"
        );
    }

    #[test]
    fn subgraph_serializes() {
        let g = sample();
        let up = g.upstream(&key("fraud", 1), Some(1)).unwrap();
        let v = serde_json::to_value(&up).unwrap();
        assert_eq!(v["nodes"][0]["type"], "version");
        assert_eq!(v["nodes"][0]["model"], "fraud");
        assert_eq!(v["nodes"][0]["version"], 1);
        assert_eq!(v["nodes"][0]["depth"], 0);
        assert_eq!(v["nodes"][0]["record"]["number"], 1);
        assert_eq!(
            v["edges"][0],
            serde_json::json!({"from": 1, "to": 0, "kind": {"type": "parent", "relation": "fine_tuned_from"}})
        );
        let node: LineageNode =
            serde_json::from_str(r#"{"type":"dataset","name":"clicks","version":"v3"}"#).unwrap();
        assert_eq!(
            node,
            LineageNode::Dataset(DatasetKey::new("clicks").version("v3"))
        );
    }
}
