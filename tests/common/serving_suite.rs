//! Serving behaviour, written once: watching references, traffic splits and
//! routing. Every `pub async fn` here taking a [`Fixture`] is a test that
//! `tests/registry_behaviour.rs` instantiates for every backend.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use modelreg::{
    Error, EventKind, HistoryFilter, Registry, RouteTarget, SetAlias, Stage, TrafficSplit,
    VersionRecord, WatchOptions,
};

use super::backends::Fixture;
use super::registry_suite::{actor, create, event_count, num, register_bytes};

// ----- helpers -------------------------------------------------------------------

/// How long a test waits for a watch to see a change before it fails.
const WAIT: Duration = Duration::from_secs(30);

/// Fast polling, so tests take milliseconds.
fn fast() -> WatchOptions {
    WatchOptions::new().interval(Duration::from_millis(5))
}

/// Moves version `n` of `model` from none through staging and validation to
/// production.
pub async fn to_production(reg: &Registry, model: &str, n: u64) {
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        reg.acting_as(actor("ops"))
            .transition(format!("{model}/{n}"), stage, "")
            .await
            .unwrap_or_else(|e| panic!("move {model}/{n} to {stage}: {e}"));
    }
}

/// Points `alias` of `model` at version `n`.
pub async fn alias(reg: &Registry, model: &str, alias: &str, n: u64) {
    reg.acting_as(actor("ops"))
        .set_alias(format!("{model}/{n}"), alias, SetAlias::new())
        .await
        .unwrap_or_else(|e| panic!("set {model}@{alias} -> {n}: {e}"));
}

/// The next item of a watch, within [`WAIT`].
pub async fn next_item<S>(watch: &mut S) -> modelreg::Result<VersionRecord>
where
    S: Stream<Item = modelreg::Result<VersionRecord>> + Unpin,
{
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("the watch yields within the time limit")
        .expect("a watch never ends")
}

/// The number of the next version a watch yields.
pub async fn next_number<S>(watch: &mut S) -> u64
where
    S: Stream<Item = modelreg::Result<VersionRecord>> + Unpin,
{
    next_item(watch).await.expect("a version").number.get()
}

/// Asserts that a watch yields nothing for a while (many polls).
pub async fn quiet<S>(watch: &mut S)
where
    S: Stream<Item = modelreg::Result<VersionRecord>> + Unpin,
{
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), watch.next()).await {
        panic!("expected no change, the watch yielded {item:?}");
    }
}

/// A model with `n` versions, `m.bin` = "v<i>".
async fn model_with_versions(reg: &Registry, model: &str, n: u64) {
    create(reg, model).await;
    for i in 1..=n {
        register_bytes(reg, model, "m.bin", format!("v{i}")).await;
    }
}

// ----- watch ---------------------------------------------------------------------

/// A watch on `@production`, opened on another registry (another process's view),
/// yields the current version at once and then each promotion and rollback in
/// order, once each; events that do not move the reference yield nothing.
pub async fn watch_follows_promotions_and_rollbacks(f: &Fixture) {
    let writer = f.registry();
    model_with_versions(&writer, "fraud", 3).await;
    to_production(&writer, "fraud", 1).await;

    let reader = f.fresh().await;
    let mut watch = reader
        .watch("fraud@production", fast())
        .expect("valid reference")
        .boxed();
    assert_eq!(next_number(&mut watch).await, 1);
    quiet(&mut watch).await;

    to_production(&writer, "fraud", 2).await;
    assert_eq!(next_number(&mut watch).await, 2);
    to_production(&writer, "fraud", 3).await;
    assert_eq!(next_number(&mut watch).await, 3);
    writer
        .acting_as(actor("ops"))
        .rollback("fraud", "bad")
        .await
        .expect("rollback");
    assert_eq!(next_number(&mut watch).await, 2);

    // Metrics, tags and alias changes leave production where it is.
    writer
        .acting_as(actor("eval"))
        .override_immutable("late evaluation of the production version")
        .add_metrics(
            "fraud/2",
            modelreg::Metrics::new().with("auc", 0.5).expect("finite"),
        )
        .await
        .expect("metrics");
    alias(&writer, "fraud", "champion", 1).await;
    quiet(&mut watch).await;
}

/// A watch on an alias yields each move of the alias; a move to the version it
/// already points at yields nothing.
pub async fn watch_follows_an_alias(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fraud", 3).await;
    alias(&reg, "fraud", "champion", 1).await;
    let mut watch = reg.watch("fraud@champion", fast()).expect("valid").boxed();
    assert_eq!(next_number(&mut watch).await, 1);
    alias(&reg, "fraud", "champion", 3).await;
    assert_eq!(next_number(&mut watch).await, 3);
    alias(&reg, "fraud", "champion", 3).await;
    quiet(&mut watch).await;
    alias(&reg, "fraud", "champion", 2).await;
    assert_eq!(next_number(&mut watch).await, 2);
}

/// A reference that stops resolving yields one `NotFound`; when it resolves again
/// the version is yielded, even the same one as before. A model that does not
/// exist yet is `NotFound` once, then its version when it appears. A malformed
/// reference fails at once.
pub async fn watch_reports_a_reference_that_stops_resolving(f: &Fixture) {
    let reg = f.registry();
    assert!(matches!(
        reg.watch("fraud@Bad", fast()).map(|_| ()),
        Err(Error::InvalidReference { .. })
    ));

    let mut watch = reg
        .watch("fraud@production", fast())
        .expect("valid")
        .boxed();
    assert_err!(next_item(&mut watch).await, Error::NotFound { .. });
    model_with_versions(&reg, "fraud", 1).await;
    quiet(&mut watch).await;
    to_production(&reg, "fraud", 1).await;
    assert_eq!(next_number(&mut watch).await, 1);

    reg.acting_as(actor("ops"))
        .transition("fraud/1", Stage::Archived, "retired")
        .await
        .expect("archive");
    assert_err!(next_item(&mut watch).await, Error::NotFound { .. });
    quiet(&mut watch).await;
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        reg.acting_as(actor("ops"))
            .transition("fraud/1", stage, "back")
            .await
            .expect("move");
    }
    assert_eq!(next_number(&mut watch).await, 1);
}

// ----- traffic splits ------------------------------------------------------------

/// Setting and clearing a split are events with actor and reason; another
/// registry sees them; a split whose target does not resolve, and clearing when
/// there is none, are refused and append nothing.
pub async fn traffic_split_is_an_audited_event(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fraud", 2).await;
    alias(&reg, "fraud", "champion", 1).await;
    let before = event_count(&reg, "fraud").await;

    let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)]).expect("valid");
    assert_err!(
        reg.acting_as(actor("ops")).set_traffic_split("fraud", split.clone(), "canary")
            .await,
        Error::NotFound { ref what, .. } if what.contains("@challenger")
    );
    assert_err!(
        reg.acting_as(actor("ops"))
            .clear_traffic_split("fraud", "none to clear")
            .await,
        Error::NotFound { .. }
    );
    assert_eq!(event_count(&reg, "fraud").await, before);

    alias(&reg, "fraud", "challenger", 2).await;
    let event = reg
        .acting_as(actor("lead"))
        .set_traffic_split("fraud", split.clone(), "canary 10%")
        .await
        .expect("set split");
    assert_eq!(event.actor, actor("lead"));
    assert_eq!(
        event.kind,
        EventKind::TrafficSplitSet {
            split: Some(split.clone()),
            reason: "canary 10%".into()
        }
    );
    let other = f.fresh().await;
    assert_eq!(
        other.traffic_split("fraud").await.expect("split"),
        Some(split.clone())
    );
    assert_eq!(
        other.model("fraud").await.expect("model").traffic_split(),
        Some(&split)
    );

    reg.acting_as(actor("lead"))
        .clear_traffic_split("fraud", "canary over")
        .await
        .expect("clear");
    assert_eq!(other.traffic_split("fraud").await.expect("split"), None);
    let trail = other
        .history("fraud", &HistoryFilter::new().kind("traffic_split_set"))
        .await
        .expect("history");
    let reasons: Vec<(String, bool)> = trail
        .iter()
        .map(|e| match &e.kind {
            EventKind::TrafficSplitSet { split, reason } => (reason.clone(), split.is_some()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("canary over".to_owned(), false),
            ("canary 10%".to_owned(), true)
        ]
    );
    // A cleared split can be cleared no further.
    assert_err!(
        reg.acting_as(actor("ops"))
            .clear_traffic_split("fraud", "again")
            .await,
        Error::NotFound { .. }
    );
}

/// Over 100,000 keys each route's share is within one percentage point of its
/// weight; the same key always takes the same route, through the registry, through
/// another registry and through the pure `ModelState::route`; moving an alias moves
/// the version behind its route and no key changes route.
pub async fn route_is_sticky_and_follows_the_weights(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fraud", 3).await;
    alias(&reg, "fraud", "champion", 1).await;
    alias(&reg, "fraud", "challenger", 2).await;
    let split =
        TrafficSplit::new([("@champion", 85), ("@challenger", 10), ("/3", 5)]).expect("valid");
    reg.acting_as(actor("ops"))
        .set_traffic_split("fraud", split.clone(), "")
        .await
        .expect("set");

    let state = f.fresh().await.model("fraud").await.expect("model");
    const KEYS: u32 = 100_000;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut first_route = Vec::with_capacity(KEYS as usize);
    for i in 0..KEYS {
        let routed = state.route(format!("user-{i}").as_bytes()).expect("route");
        assert!(routed.from_split);
        *counts.entry(routed.target.to_string()).or_default() += 1;
        first_route.push(routed.target);
    }
    for route in split.routes() {
        let share = f64::from(counts[&route.target.to_string()]) * 100.0 / f64::from(KEYS);
        assert!(
            (share - f64::from(route.weight)).abs() < 1.0,
            "{}: {share:.2}% for weight {} ({})",
            route.target,
            route.weight,
            f.name
        );
    }

    let other = f.fresh().await;
    for i in (0..KEYS).step_by(997) {
        let key = format!("user-{i}");
        let a = reg.route("fraud", &key).await.expect("route");
        let b = other.route("fraud", key.as_bytes()).await.expect("route");
        assert_eq!(a.target, first_route[i as usize], "{key}");
        assert_eq!((&a.target, &a.version), (&b.target, &b.version), "{key}");
        assert_eq!(
            a.version.number,
            state.resolve(a.target.selector()).expect("resolves").number
        );
    }

    // The champion alias moves to 3: champion keys get 3, nobody changes route.
    alias(&reg, "fraud", "champion", 3).await;
    let champion: RouteTarget = "@champion".parse().expect("target");
    for i in (0..KEYS).step_by(1009) {
        let routed = other
            .route("fraud", format!("user-{i}"))
            .await
            .expect("route");
        assert_eq!(routed.target, first_route[i as usize]);
        if routed.target == champion {
            assert_eq!(routed.version.number, num(3));
        }
    }
}

/// Without a split every key goes to `@production` (`from_split` false), and with
/// no production version that is `NotFound`; a split's target that stops resolving
/// is `NotFound` for the keys routed to it.
pub async fn route_without_split_falls_back_to_production(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fraud", 2).await;
    assert_err!(reg.route("fraud", "user-1").await, Error::NotFound { .. });
    assert_err!(reg.route("nobody", "user-1").await, Error::NotFound { .. });
    to_production(&reg, "fraud", 1).await;
    for key in ["user-1", "user-2", ""] {
        let routed = reg.route("fraud", key).await.expect("route");
        assert_eq!(routed.target, RouteTarget::production());
        assert_eq!(routed.version.number, num(1));
        assert!(!routed.from_split);
    }

    alias(&reg, "fraud", "canary", 2).await;
    reg.acting_as(actor("ops"))
        .set_traffic_split(
            "fraud",
            TrafficSplit::new([("@canary", 1)]).expect("valid"),
            "",
        )
        .await
        .expect("set");
    assert_eq!(
        reg.route("fraud", "user-1")
            .await
            .expect("route")
            .version
            .number,
        num(2)
    );
    reg.acting_as(actor("ops"))
        .remove_alias("fraud", "canary", "")
        .await
        .expect("remove alias");
    assert_err!(
        reg.route("fraud", "user-1").await,
        Error::NotFound { ref what, .. } if what.contains("canary")
    );
}

/// A watch on `@champion` and the split's routes work together: promoting the
/// challenger by moving the alias is seen by the watch and by `route`.
pub async fn watch_and_route_agree_after_an_alias_move(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fraud", 2).await;
    alias(&reg, "fraud", "champion", 1).await;
    alias(&reg, "fraud", "challenger", 2).await;
    reg.acting_as(actor("ops"))
        .set_traffic_split(
            "fraud",
            TrafficSplit::new([("@champion", 50), ("@challenger", 50)]).expect("valid"),
            "",
        )
        .await
        .expect("set");
    let server = f.fresh().await;
    let mut watch = server
        .watch("fraud@champion", fast())
        .expect("valid")
        .boxed();
    assert_eq!(next_number(&mut watch).await, 1);
    alias(&reg, "fraud", "champion", 2).await;
    assert_eq!(next_number(&mut watch).await, 2);
    for i in 0..50 {
        let routed = server.route("fraud", format!("k{i}")).await.expect("route");
        assert_eq!(routed.version.number, num(2), "both routes lead to 2 now");
    }
}

/// A consumer that stops polling a watch half-way through a poll (a timeout, a
/// `select!` that picked another branch) and keeps the stream must not block
/// writers on the same registry: a half-finished poll holds no lock.
pub async fn abandoned_watch_poll_blocks_no_writer(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fraud", 2).await;
    alias(&reg, "fraud", "champion", 1).await;
    let mut watch = reg
        .watch(
            "fraud@champion",
            WatchOptions::new().interval(Duration::from_millis(1)),
        )
        .expect("valid")
        .boxed();
    for i in 0..200u64 {
        // Give up on the stream at varying points of its poll.
        let _ = tokio::time::timeout(Duration::from_micros(i * 7 % 500), watch.next()).await;
        tokio::time::timeout(
            Duration::from_secs(10),
            alias(&reg, "fraud", "champion", 1 + i % 2),
        )
        .await
        .unwrap_or_else(|_| panic!("a writer was blocked after abandoned poll {i}"));
    }
}

/// `watch_model` yields the state now and after every change by another writer,
/// traffic splits included, so a router can route from the state it holds; the
/// states it yields route as `route` does.
pub async fn watch_model_sees_every_change_including_splits(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "ab").await;
    register_bytes(&reg, "ab", "m.bin", "one").await;
    register_bytes(&reg, "ab", "m.bin", "two").await;
    alias(&reg, "ab", "a", 1).await;
    alias(&reg, "ab", "b", 2).await;
    let mut states = reg.watch_model("ab", fast()).expect("watch");
    let now = next_state(&mut states).await;
    assert_eq!(now.seq(), event_count(&reg, "ab").await as u64);
    assert!(now.traffic_split().is_none());

    let other = f.fresh().await;
    let split = TrafficSplit::new([("@a", 50), ("@b", 50)]).expect("split");
    other
        .acting_as(actor("ops"))
        .set_traffic_split("ab", split.clone(), "a/b test")
        .await
        .expect("split");
    let after = next_state(&mut states).await;
    assert_eq!(after.seq(), now.seq() + 1);
    assert_eq!(after.traffic_split(), Some(&split));
    for key in ["u1", "u2", "u3", "u4"] {
        let held = after.route(key.as_bytes()).expect("route from state");
        let asked = reg.route("ab", key).await.expect("route");
        assert_eq!(held.version.number, asked.version.number, "{key}");
    }
    // An alias move is a change too.
    alias(&other, "ab", "a", 2).await;
    let moved = next_state(&mut states).await;
    assert_eq!(moved.seq(), after.seq() + 1);
}

/// The next item of a model watch, within the wait.
async fn next_state(
    s: &mut futures::stream::BoxStream<'static, modelreg::Result<modelreg::ModelState>>,
) -> modelreg::ModelState {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("a state within the wait")
        .expect("stream goes on")
        .expect("state")
}

// ----- following and serving -------------------------------------------------------

/// Waits until `check` accepts the followed value, within the wait; returns it.
async fn until<T>(
    followed: &mut modelreg::Followed<T>,
    what: &str,
    check: impl Fn(&T) -> bool,
) -> std::sync::Arc<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = followed.current();
        if check(&now) {
            return now;
        }
        match tokio::time::timeout_at(deadline, followed.changed()).await {
            Ok(changed) => {
                changed.expect("the follow goes on");
            }
            Err(_) => panic!("{what}: not reached within the wait"),
        }
    }
}

/// A model cache over `reg` in a fresh temporary directory (kept while the
/// returned guard lives).
async fn cache_over(reg: &Registry) -> (tempfile::TempDir, modelreg::ModelCache) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = modelreg::ModelCache::open(tmp.path(), reg.clone(), Default::default())
        .await
        .expect("cache");
    (tmp, cache)
}

/// `ModelCache::follow` hands out the verified files of what the reference
/// resolves to now, then swaps to each version another writer moves it to;
/// `follow_model` keeps the state current, traffic splits included.
pub async fn follow_swaps_files_and_states_on_change(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "fol", 2).await;
    to_production(&reg, "fol", 1).await;
    let (_tmp, cache) = cache_over(&reg).await;
    let mut files = cache
        .follow("fol@production", fast())
        .await
        .expect("follow");
    let mut state = reg.follow_model("fol", fast()).await.expect("follow model");
    let now = files.current();
    assert_eq!(now.version().number.get(), 1);
    assert_eq!(
        std::fs::read(now.path().join("m.bin")).expect("file"),
        b"v1"
    );
    assert!(state.current().traffic_split().is_none());

    let other = f.fresh().await;
    to_production(&other, "fol", 2).await;
    let swapped = until(&mut files, "production files at 2", |m| {
        m.version().number.get() == 2
    })
    .await;
    assert_eq!(
        std::fs::read(swapped.path().join("m.bin")).expect("file"),
        b"v2"
    );
    // The old files stay usable while held.
    assert_eq!(
        std::fs::read(now.path().join("m.bin")).expect("file"),
        b"v1"
    );
    assert!(files.last_error().is_none());

    alias(&other, "fol", "old", 1).await;
    let split = TrafficSplit::new([("@production", 50), ("@old", 50)]).expect("split");
    other
        .acting_as(actor("ops"))
        .set_traffic_split("fol", split.clone(), "a/b")
        .await
        .expect("split");
    let held = until(&mut state, "the split", |s| s.traffic_split().is_some()).await;
    assert_eq!(held.traffic_split(), Some(&split));
    assert_eq!(held.production().expect("production").number.get(), 2);
}

/// `ModelCache::serve` loads production and every split target once each,
/// routes keys to the loaded versions as `route` does, swaps only once a new
/// version is loaded, keeps serving the last good set when a loader fails
/// (reporting `Error::Load`), and drops versions no longer routed to.
pub async fn serve_loads_every_routed_version_once(f: &Fixture) {
    use std::sync::{Arc, Mutex};
    let reg = f.registry();
    model_with_versions(&reg, "srv", 3).await;
    to_production(&reg, "srv", 1).await;
    let (_tmp, cache) = cache_over(&reg).await;
    // How many times each file content was loaded.
    let loads: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let counter = Arc::clone(&loads);
    let loaded = move || loads.lock().expect("counts").clone();
    let mut serving = cache
        .serve("srv", fast(), move |files| {
            let text = std::fs::read_to_string(files.path().join("m.bin"))?;
            *counter
                .lock()
                .expect("counts")
                .entry(text.clone())
                .or_default() += 1;
            if text == "v3" {
                return Err("v3 does not parse".into());
            }
            Ok(text)
        })
        .await
        .expect("serve");
    let now = serving.current();
    assert_eq!(now.production().expect("production").as_str(), "v1");
    assert_eq!(now.route(b"anyone").expect("route").model.as_str(), "v1");
    assert_eq!(loaded(), BTreeMap::from([("v1".to_owned(), 1)]));

    // A split between production and @b (version 2): both loaded, v1 not again.
    let other = f.fresh().await;
    alias(&other, "srv", "b", 2).await;
    let split = TrafficSplit::new([("@production", 50), ("@b", 50)]).expect("split");
    other
        .acting_as(actor("ops"))
        .set_traffic_split("srv", split, "a/b")
        .await
        .expect("split");
    let split_in = until(&mut serving, "the split", |s| {
        s.state().traffic_split().is_some()
    })
    .await;
    assert_eq!(
        loaded(),
        BTreeMap::from([("v1".to_owned(), 1), ("v2".to_owned(), 1)])
    );
    assert_eq!(
        split_in
            .loaded()
            .map(|l| l.version().number.get())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    for i in 0..40 {
        let key = format!("user-{i}");
        let served = split_in.route(key.as_bytes()).expect("route");
        let asked = reg.route("srv", key.as_str()).await.expect("route");
        assert_eq!(served.model.version().number, asked.version.number, "{key}");
        assert_eq!(served.target, asked.target);
        assert_eq!(served.model.as_str(), format!("v{}", asked.version.number));
    }

    // Production moves to a version the loader refuses: the last good set stays.
    to_production(&other, "srv", 3).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let error = loop {
        if let Some(e) = serving.last_error() {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load error reported"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    match &*error {
        Error::Load { version, source } => {
            assert_eq!(version, "srv/3");
            assert_eq!(source.to_string(), "v3 does not parse");
        }
        other => panic!("expected Error::Load, got {other:?}"),
    }
    assert_eq!(
        serving.current().production().expect("production").as_str(),
        "v1"
    );

    // Production rolls back to 1 and the split is cleared: serving recovers,
    // and only version 1 is still loaded.
    other
        .acting_as(actor("ops"))
        .clear_traffic_split("srv", "done")
        .await
        .expect("clear");
    other
        .acting_as(actor("ops"))
        .rollback("srv", "v3 does not load")
        .await
        .expect("rollback");
    let recovered = until(&mut serving, "rolled back and unsplit", |s| {
        s.state().traffic_split().is_none()
            && s.state().production().map(|v| v.number.get()) == Some(1)
    })
    .await;
    assert!(serving.last_error().is_none());
    assert_eq!(
        recovered
            .loaded()
            .map(|l| l.version().number.get())
            .collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(recovered.production().expect("production").as_str(), "v1");
    // Versions 1 and 2 were loaded once each, whatever changed meanwhile; the
    // refused version 3 was tried again on each change that still routed to it.
    let counts = loaded();
    assert_eq!((counts["v1"], counts["v2"]), (1, 1));
    assert!(counts["v3"] >= 1);
}

/// A loader that fails on the version serving starts with fails `serve` with
/// `Error::Load` naming the version.
pub async fn serve_reports_a_loader_error_at_start(f: &Fixture) {
    let reg = f.registry();
    model_with_versions(&reg, "bad", 1).await;
    to_production(&reg, "bad", 1).await;
    let (_tmp, cache) = cache_over(&reg).await;
    let got = cache
        .serve("bad", fast(), |_| -> Result<(), modelreg::BoxError> {
            Err("corrupt weights".into())
        })
        .await;
    match got {
        Err(Error::Load { version, source }) => {
            assert_eq!(version, "bad/1");
            assert_eq!(source.to_string(), "corrupt weights");
        }
        other => panic!("expected Error::Load, got {other:?}"),
    }
}
