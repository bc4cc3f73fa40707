//! Property tests for the lineage graph, each against a plain reference model (a map
//! from version to its parents, searched naively):
//!
//! - registering versions the way the registry does (each checked by
//!   `check_new_version`, parents must exist) never creates a cycle, in the pure
//!   graph and through a real `Registry`;
//! - on any graph, even one a hand-edited log forced a cycle into,
//!   `check_new_version` rejects exactly the additions the reference says are
//!   invalid, and `find_cycle` finds a cycle exactly when there is one;
//! - upstream and downstream are inverse: x ∈ upstream(y, d) ⇔ y ∈ downstream(x, d),
//!   for unlimited and limited depths.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use modelreg::{
    Actor, ArtifactSource, CodeRef, CreateModel, DatasetRef, DatasetRole, Digest, Error,
    LineageGraph, LineageNode, Metrics, ModelName, NewVersion, ParentRef, Provenance, Registry,
    Relation, Tags, VersionKey, VersionNumber, VersionRecord,
};
use proptest::prelude::*;

const MODELS: [&str; 3] = ["a", "b", "c"];
const DATASETS: [&str; 3] = ["d0", "d1", "d2"];
/// Version numbers drawn for parents and forced versions: a little past what a
/// short sequence registers, so missing and future parents come up.
const MAX_N: u64 = 5;

/// What one version is built from, as indexes into the constants above.
#[derive(Clone, Debug)]
struct Inputs {
    model: usize,
    parents: Vec<(usize, u64)>,
    datasets: Vec<(usize, bool)>,
    code: Option<u8>,
}

fn inputs() -> impl Strategy<Value = Inputs> {
    (
        0..MODELS.len(),
        prop::collection::vec((0..MODELS.len(), 1..=MAX_N), 0..3),
        prop::collection::vec((0..DATASETS.len(), any::<bool>()), 0..3),
        prop::option::of(0..2u8),
    )
        .prop_map(|(model, parents, datasets, code)| Inputs {
            model,
            parents,
            datasets,
            code,
        })
}

fn key(model: usize, n: u64) -> VersionKey {
    VersionKey::new(
        ModelName::new(MODELS[model]).unwrap(),
        VersionNumber::new(n).unwrap(),
    )
}

fn parents(i: &Inputs) -> Vec<ParentRef> {
    i.parents
        .iter()
        .map(|(m, n)| ParentRef {
            model: ModelName::new(MODELS[*m]).unwrap(),
            version: VersionNumber::new(*n).unwrap(),
            relation: Relation::FineTunedFrom,
        })
        .collect()
}

fn provenance(i: &Inputs) -> Provenance {
    Provenance {
        parents: parents(i),
        datasets: i
            .datasets
            .iter()
            .map(|(d, train)| {
                let role = if *train {
                    DatasetRole::Train
                } else {
                    DatasetRole::Eval
                };
                DatasetRef::new(DATASETS[*d], role).version("v1")
            })
            .collect(),
        code: i.code.map(|c| CodeRef {
            repository: None,
            commit: format!("commit{c}"),
            dirty: false,
        }),
        ..Provenance::default()
    }
}

fn record(n: u64, i: &Inputs) -> VersionRecord {
    VersionRecord {
        model: ModelName::new("m").unwrap(),
        number: VersionNumber::new(n).unwrap(),
        semver: None,
        artifact: Digest::of(b""),
        size: 0,
        files: 0,
        created_at: chrono::DateTime::UNIX_EPOCH,
        created_by: Actor::new("ci").unwrap(),
        description: String::new(),
        tags: Tags::new(),
        provenance: provenance(i),
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

/// The reference: each registered version and its parents (which may name
/// versions never registered).
#[derive(Default, Debug)]
struct Reference {
    parents: BTreeMap<VersionKey, Vec<VersionKey>>,
}

impl Reference {
    fn add(&mut self, child: VersionKey, parents: &[ParentRef]) {
        self.parents
            .insert(child, parents.iter().map(VersionKey::from).collect());
    }

    /// Whether `to` descends from `from` (or is it), following parent → child.
    fn descends(&self, from: &VersionKey, to: &VersionKey) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(k) = stack.pop() {
            if k == *to {
                return true;
            }
            if seen.insert(k.clone()) {
                for (child, ps) in &self.parents {
                    if ps.contains(&k) {
                        stack.push(child.clone());
                    }
                }
            }
        }
        false
    }

    fn acyclic(&self) -> bool {
        self.parents
            .iter()
            .all(|(child, ps)| ps.iter().all(|p| p != child && !self.descends(child, p)))
    }

    /// Whether adding `child` with `parents` is allowed.
    fn allows(&self, child: &VersionKey, parents: &[ParentRef]) -> bool {
        !self.parents.contains_key(child)
            && parents
                .iter()
                .map(VersionKey::from)
                .all(|p| p != *child && self.parents.contains_key(&p) && !self.descends(child, &p))
    }
}

/// Adds every version in `forced` without any check, as replaying a hand-edited
/// log would; a number already taken is refused with `AlreadyExists`.
fn forced_graph(forced: &[(Inputs, u64)]) -> (LineageGraph, Reference) {
    let mut graph = LineageGraph::new();
    let mut reference = Reference::default();
    for (i, n) in forced {
        let k = key(i.model, *n);
        let added = graph.add_version(k.model.clone(), record(*n, i));
        if reference.parents.contains_key(&k) {
            assert!(
                matches!(added, Err(Error::AlreadyExists { .. })),
                "{added:?}"
            );
        } else {
            added.unwrap();
            reference.add(k, &parents(i));
        }
    }
    (graph, reference)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Registering the registry's way (the next number, checked first) never
    /// yields a cycle, and the check accepts exactly what the reference allows.
    #[test]
    fn checked_registrations_never_form_a_cycle(ops in prop::collection::vec(inputs(), 0..30)) {
        let mut graph = LineageGraph::new();
        let mut reference = Reference::default();
        let mut next = [1u64; MODELS.len()];
        for i in &ops {
            let child = key(i.model, next[i.model]);
            let ps = parents(i);
            let checked = graph.check_new_version(&child, &ps);
            prop_assert_eq!(checked.is_ok(), reference.allows(&child, &ps), "{:?}", checked);
            if let Err(e) = checked {
                prop_assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
                continue;
            }
            graph.add_version(child.model.clone(), record(next[i.model], i)).unwrap();
            reference.add(child, &ps);
            next[i.model] += 1;
            prop_assert_eq!(graph.find_cycle(), None);
        }
        prop_assert!(reference.acyclic());
    }

    /// On any graph, cyclic ones included, the check agrees with the reference,
    /// `find_cycle` finds a cycle exactly when there is one, and an allowed addition
    /// to an acyclic graph leaves it acyclic.
    #[test]
    fn the_check_rejects_exactly_what_would_close_a_cycle(
        forced in prop::collection::vec((inputs(), 1..=MAX_N), 0..14),
        probe in (inputs(), 1..=MAX_N),
    ) {
        let (mut graph, mut reference) = forced_graph(&forced);
        let acyclic = reference.acyclic();
        prop_assert_eq!(graph.find_cycle().is_none(), acyclic);
        if let Some(cycle) = graph.find_cycle() {
            // Each is a parent of the next, the last of the first.
            for (i, k) in cycle.iter().enumerate() {
                let child = &cycle[(i + 1) % cycle.len()];
                prop_assert!(reference.parents[child].contains(k), "{cycle:?}");
            }
        }
        let (i, n) = probe;
        let child = key(i.model, n);
        let ps = parents(&i);
        let allowed = reference.allows(&child, &ps);
        prop_assert_eq!(graph.check_new_version(&child, &ps).is_ok(), allowed);
        if allowed {
            graph.add_version(child.model.clone(), record(n, &i)).unwrap();
            reference.add(child, &ps);
            prop_assert_eq!(reference.acyclic(), acyclic);
            prop_assert_eq!(graph.find_cycle().is_none(), acyclic);
        }
    }

    /// x ∈ upstream(y, d) ⇔ y ∈ downstream(x, d), for every version y and every
    /// node x, at unlimited depth and at depths 1 to 3; downstream only reaches
    /// versions.
    #[test]
    fn upstream_and_downstream_are_inverse(
        forced in prop::collection::vec((inputs(), 1..=MAX_N), 0..16),
    ) {
        let (graph, _) = forced_graph(&forced);
        let nodes: Vec<LineageNode> = graph.nodes().cloned().collect();
        for depth in [None, Some(1), Some(2), Some(3)] {
            let reached = |s: modelreg::LineageSubgraph| -> BTreeSet<LineageNode> {
                s.nodes()[1..].iter().map(|n| n.node.clone()).collect()
            };
            let down: BTreeMap<&LineageNode, BTreeSet<LineageNode>> = nodes
                .iter()
                .map(|x| (x, reached(graph.downstream(x, depth).unwrap())))
                .collect();
            for y in &nodes {
                let LineageNode::Version(yk) = y else { continue };
                let up = reached(graph.upstream(yk, depth).unwrap());
                for x in &nodes {
                    prop_assert_eq!(
                        up.contains(x),
                        down[x].contains(y),
                        "x = {}, y = {}, depth {:?}", x, y, depth
                    );
                }
            }
            for reached in down.values() {
                prop_assert!(reached.iter().all(|n| matches!(n, LineageNode::Version(_))));
            }
        }
    }
}

proptest! {
    // Each case drives a real registry; fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Through the registry: a registration succeeds exactly when every parent
    /// exists, and the lineage graph never has a cycle.
    #[test]
    fn registry_registrations_never_form_a_cycle(ops in prop::collection::vec(inputs(), 0..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let reg = Registry::in_memory();
            let ci = Actor::new("ci").unwrap();
            for m in MODELS {
                reg.acting_as(ci.clone()).create_model(m, CreateModel::new()).await.unwrap();
            }
            let mut reference = Reference::default();
            let mut next = [1u64; MODELS.len()];
            for (step, i) in ops.iter().enumerate() {
                let child = key(i.model, next[i.model]);
                let ps = parents(i);
                let source = ArtifactSource::bytes("m.bin", step.to_string()).unwrap();
                let version = NewVersion::new().provenance(provenance(i));
                let result = reg.acting_as(ci.clone()).register(MODELS[i.model], source, version).await;
                prop_assert_eq!(result.is_ok(), reference.allows(&child, &ps), "{:?}", result);
                match result {
                    Ok(v) => {
                        prop_assert_eq!(v.number.get(), next[i.model]);
                        reference.add(child, &ps);
                        next[i.model] += 1;
                    }
                    Err(e) => prop_assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}"),
                }
            }
            let graph = reg.lineage().await.unwrap();
            prop_assert_eq!(graph.find_cycle(), None);
            prop_assert!(reference.acyclic());
            Ok(())
        })?;
    }
}

/// Found by the property test above: a parent listed twice used to be inserted
/// into the ancestry graph twice and fail with `AlreadyExists`.
#[test]
fn a_parent_listed_twice_is_accepted() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let reg = Registry::in_memory();
        let ci = Actor::new("ci").unwrap();
        for m in ["a", "b"] {
            reg.acting_as(ci.clone())
                .create_model(m, CreateModel::new())
                .await
                .unwrap();
        }
        reg.acting_as(ci.clone())
            .register(
                "b",
                ArtifactSource::bytes("m.bin", "b1").unwrap(),
                NewVersion::new(),
            )
            .await
            .unwrap();
        let parent = ParentRef {
            model: ModelName::new("b").unwrap(),
            version: VersionNumber::FIRST,
            relation: Relation::FineTunedFrom,
        };
        let v = reg
            .acting_as(ci)
            .register(
                "a",
                ArtifactSource::bytes("m.bin", "a1").unwrap(),
                NewVersion::new().provenance(Provenance {
                    parents: vec![parent.clone(), parent],
                    ..Provenance::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(v.provenance.parents.len(), 2);
    });
}
