//! The domain: names, versions, references, manifests, records, events and the
//! fold of events into [`ModelState`]. Pure: no I/O, no knowledge of any store.

pub(crate) mod chunk;
pub mod codec;
pub mod diff;
pub mod event;
pub mod lifecycle;
pub mod limits;
pub mod lineage;
pub mod manifest;
pub mod name;
pub(crate) mod par;
pub mod record;
pub mod reference;
pub mod retention;
pub mod routing;
pub mod scan;
pub mod signing;
pub mod state;
pub mod summary;

pub use diff::{
    ArtifactDiff, CodeChange, DatasetChange, DatasetDiff, FileChange, KeyedValue, MapDiff,
    MetricDiff, MetricPoint, MetricVerdict, OverallVerdict, ValueChange, VersionDiff,
    VersionSummary, compare_versions, flatten_hyperparameters, metric_history, metric_verdict,
};
pub use event::{Event, EventKind};
pub use lifecycle::{
    AliasTarget, Approval, Baseline, Decision, Gate, GatePolicy, GateSpec, GateVerdict, Stage,
    Transition, TransitionCheck,
};
pub use lineage::{
    CodeKey, DatasetKey, LineageEdgeKind, LineageGraph, LineageNode, LineagePath, LineageStep,
    LineageSubgraph, ReachedNode, SubgraphEdge, VersionKey,
};
pub use manifest::{Manifest, ManifestEntry, RelPath};
pub use name::{Actor, AliasName, MetricName, ModelName, TagKey};
pub use record::{
    CodeRef, DatasetRef, DatasetRole, Deprecation, Environment, FormatScan, Goal, HyperValue,
    Hyperparameters, MetricSpec, Metrics, ParentRef, Provenance, Relation, Tags, VersionRecord,
    VersionSignature,
};
pub use reference::{Selector, VersionNumber, VersionRef};
pub use retention::{Protection, Purge, RetentionPlan, RetentionPolicy};
pub use routing::{Route, RouteTarget, Routed, TrafficSplit};
pub use state::ModelState;
pub use summary::ModelSummary;
