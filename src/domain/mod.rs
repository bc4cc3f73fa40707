//! The domain: names, versions, references, manifests, records, events and the
//! fold of events into [`ModelState`]. Pure: no I/O, no knowledge of any store.

pub mod event;
pub mod lifecycle;
pub mod manifest;
pub mod name;
pub mod record;
pub mod reference;
pub mod routing;
pub mod state;

pub use event::{EVENT_FORMAT, Event, EventKind};
pub use lifecycle::{
    AliasTarget, Approval, Baseline, Decision, Gate, GatePolicy, GateSpec, GateVerdict, Stage,
    Transition,
};
pub use manifest::{MANIFEST_FORMAT, Manifest, ManifestEntry, RelPath};
pub use name::{Actor, AliasName, MetricName, ModelName, TagKey};
pub use record::{
    CodeRef, DatasetRef, DatasetRole, Deprecation, Environment, Goal, HyperValue, Hyperparameters,
    MetricSpec, Metrics, ParentRef, Provenance, Relation, Tags, VersionRecord,
};
pub use reference::{Selector, VersionNumber, VersionRef};
pub use routing::{Route, RouteTarget, Routed, TrafficSplit};
pub use state::{CHECKPOINT_FORMAT, ModelState};
