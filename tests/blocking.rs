//! The blocking facade, from plain `#[test]` functions with no async runtime of
//! their own: what a training script or a command-line tool does.

use std::time::Duration;

use modelreg::blocking::{ModelCache, Registry};
use modelreg::{
    Actor, ArtifactSource, CacheOptions, CreateModel, Error, FetchOptions, HistoryFilter,
    MetricSpec, Metrics, NewVersion, Progress, ProgressEvent, SetAlias, Stage, Tags, TrafficSplit,
    VersionFilter, WatchOptions,
};

fn me() -> Actor {
    Actor::new("trainer").expect("valid actor")
}

/// Registers a version of `model` whose one file holds `content`.
fn register(reg: &Registry, model: &str, content: &str) -> u64 {
    reg.acting_as(me())
        .register(
            model,
            ArtifactSource::bytes("model.bin", content.to_owned()).expect("valid path"),
            NewVersion::new(),
        )
        .expect("register")
        .number
        .get()
}

fn to_production(reg: &Registry, n: u64) {
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        reg.acting_as(me())
            .transition(format!("fraud/{n}"), stage, "")
            .expect("transition");
    }
}

/// The whole life of a model through the facade on a local directory: create,
/// register, metrics, tags, fetch, verify, lifecycle, aliases, history, time
/// travel, splits, routing, watch and the cache — and another facade over the
/// same directory sees it all.
#[test]
fn a_model_from_registration_to_serving_without_async() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("registry");
    let reg = Registry::open_local(&dir).expect("open");
    reg.acting_as(me())
        .create_model(
            "fraud",
            CreateModel::new().metric("auc", MetricSpec::maximize()),
        )
        .expect("create");
    assert_eq!(register(&reg, "fraud", "one"), 1);
    assert_eq!(register(&reg, "fraud", "two"), 2);
    reg.acting_as(me())
        .add_metrics("fraud/2", Metrics::new().with("auc", 0.9).expect("finite"))
        .expect("metrics");
    reg.acting_as(me())
        .set_version_tags("fraud/2", Tags::new(), vec![])
        .expect_err("nothing to set is refused, as in the async API");
    assert_eq!(reg.list_models().expect("list").len(), 1);
    assert_eq!(
        reg.list_versions("fraud", &VersionFilter::new())
            .expect("versions")
            .len(),
        2
    );
    assert_eq!(reg.manifest("fraud/1").expect("manifest").len(), 1);
    let fetched = reg
        .fetch("fraud/2", tmp.path().join("out"), FetchOptions::new())
        .expect("fetch");
    assert_eq!(fetched.files, 1);
    assert_eq!(reg.verify("fraud/2").expect("verify").bytes, 3);

    to_production(&reg, 1);
    to_production(&reg, 2);
    assert_eq!(
        reg.resolve("fraud@production")
            .expect("resolve")
            .number
            .get(),
        2
    );
    reg.acting_as(me())
        .rollback("fraud", "regression")
        .expect("rollback");
    assert_eq!(
        reg.resolve("fraud@production")
            .expect("resolve")
            .number
            .get(),
        1
    );
    reg.acting_as(me())
        .set_alias("fraud/1", "champion", SetAlias::new())
        .expect("alias");
    reg.acting_as(me())
        .set_alias("fraud/2", "challenger", SetAlias::new())
        .expect("alias");
    let trail = reg
        .history("fraud", &HistoryFilter::new().kind("rolled_back"))
        .expect("history");
    assert_eq!(trail.len(), 1);
    let before_rollback = trail[0].time - chrono::Duration::nanoseconds(1);
    assert_eq!(
        reg.resolve_as_of("fraud@production", before_rollback)
            .expect("as of")
            .number
            .get(),
        2
    );
    assert_eq!(
        reg.model_as_of("fraud", before_rollback)
            .expect("as of")
            .seq()
            + 1,
        trail[0].seq
    );

    let split = TrafficSplit::new([("@champion", 50), ("@challenger", 50)]).expect("valid");
    reg.acting_as(me())
        .set_traffic_split("fraud", split.clone(), "a/b")
        .expect("split");
    assert_eq!(reg.traffic_split("fraud").expect("split"), Some(split));
    let routed = reg.route("fraud", "user-7").expect("route");
    assert!(routed.from_split);
    assert_eq!(reg.route("fraud", "user-7").expect("route"), routed);
    reg.acting_as(me())
        .clear_traffic_split("fraud", "done")
        .expect("clear");
    assert!(!reg.route("fraud", "user-7").expect("route").from_split);

    let mut watch = reg
        .watch(
            "fraud@champion",
            WatchOptions::new().interval(Duration::from_millis(5)),
        )
        .expect("watch");
    assert_eq!(
        watch.next().expect("item").expect("version").number.get(),
        1
    );
    let other = Registry::open_local(&dir).expect("second facade");
    other
        .acting_as(me())
        .set_alias("fraud/2", "champion", SetAlias::new())
        .expect("move");
    assert_eq!(
        watch.next().expect("item").expect("version").number.get(),
        2
    );

    let cache =
        ModelCache::open(tmp.path().join("cache"), &reg, CacheOptions::new()).expect("cache");
    let model = cache.get("fraud@champion").expect("get");
    assert_eq!(
        std::fs::read(model.path().join("model.bin")).expect("read"),
        b"two"
    );
    assert_eq!(cache.usage().expect("usage"), 3);
    assert_eq!(cache.entries().expect("entries").len(), 1);
    assert!(cache.evict().expect("evict").evicted.is_empty());

    other
        .acting_as(me())
        .remove_alias("fraud", "challenger", "")
        .expect("remove");
    other
        .acting_as(me())
        .deprecate("fraud/1", "old")
        .expect("deprecate");
    assert_eq!(
        other.events("fraud").expect("events"),
        reg.events("fraud").expect("events")
    );
    assert_eq!(
        reg.model("fraud").expect("model"),
        other.model("fraud").expect("model")
    );
}

/// Several threads share one facade (and its runtime) at once.
#[test]
fn threads_share_one_facade() {
    let reg = Registry::in_memory().expect("runtime");
    reg.acting_as(me())
        .create_model("fraud", CreateModel::new())
        .expect("create");
    std::thread::scope(|s| {
        for t in 0..4 {
            let reg = reg.clone();
            s.spawn(move || {
                for i in 0..5 {
                    register(&reg, "fraud", &format!("{t}-{i}"));
                }
            });
        }
    });
    assert_eq!(reg.model("fraud").expect("model").versions().len(), 20);
}

/// Called from inside an async runtime the facade refuses with a typed error
/// instead of blocking the runtime's worker, and dropping it there is harmless.
#[test]
fn inside_an_async_runtime_it_refuses_instead_of_blocking() {
    let reg = Registry::in_memory().expect("runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match reg.list_models() {
            Err(Error::InvalidInput { reason, .. }) => {
                assert!(reason.contains("async runtime"), "{reason}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        // The async registry inside works here.
        assert!(reg.as_async().list_models().await.expect("list").is_empty());
        drop(reg);
    });
}

/// Every public async method of `Registry` has its blocking twin, so the facade
/// cannot silently fall behind the async API.
#[test]
fn the_facade_covers_every_async_registry_method() {
    let names = |text: &str, prefix: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix(prefix))
            .map(|rest| rest.split(['(', '<']).next().unwrap_or("").to_owned())
            .collect()
    };
    let mut asyncs = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("src/registry").expect("src/registry") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        asyncs.extend(names(&text, "pub async fn "));
    }
    let blocking = names(
        &std::fs::read_to_string("src/blocking.rs").expect("src/blocking.rs"),
        "pub fn ",
    );
    let missing: Vec<_> = asyncs.difference(&blocking).collect();
    assert!(asyncs.len() > 30, "found only {asyncs:?}");
    assert!(missing.is_empty(), "no blocking twin for {missing:?}");
}

/// Progress callbacks work through the facade: registering, fetching, verifying
/// and checking each report a `Started`, their files' bytes as `Bytes` deltas
/// and as `File` sizes.
#[test]
fn progress_is_reported_through_the_facade() {
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg = Registry::open_local(tmp.path().join("registry")).expect("open");
    reg.acting_as(me())
        .create_model("fraud", CreateModel::new())
        .expect("create");
    // (files announced, bytes announced, files done, bytes done, bytes counted)
    let counts = Arc::new(Mutex::new((0, 0, 0, 0, 0)));
    let progress = Progress::new({
        let counts = Arc::clone(&counts);
        move |e| {
            let mut c = counts.lock().expect("lock");
            match e {
                ProgressEvent::Started { files, bytes } => *c = (*files, *bytes, 0, 0, 0),
                ProgressEvent::Bytes { bytes } => c.4 += bytes,
                ProgressEvent::File { bytes, .. } => {
                    c.2 += 1;
                    c.3 += bytes;
                }
                _ => {}
            }
        }
    });
    let counted = || *counts.lock().expect("lock");
    let files = ArtifactSource::files([("a.bin", "aaaa"), ("b/c.bin", "cc")]).expect("paths");
    reg.acting_as(me())
        .register("fraud", files, NewVersion::new().progress(progress.clone()))
        .expect("register");
    assert_eq!(counted(), (2, 6, 2, 6, 6));
    let out = tmp.path().join("out");
    reg.fetch(
        "fraud/1",
        &out,
        FetchOptions::new().progress(progress.clone()),
    )
    .expect("fetch");
    assert_eq!(counted(), (2, 6, 2, 6, 6));
    reg.verify_with_progress("fraud/1", progress.clone())
        .expect("verify");
    assert_eq!(counted(), (2, 6, 2, 6, 6));
    let report = reg.check_with_progress(progress).expect("check");
    assert_eq!(
        counted(),
        (
            report.blobs,
            report.bytes,
            report.blobs,
            report.bytes,
            report.bytes
        )
    );
}

/// The trust commands through the facade: a production version's tags are
/// fixed unless overridden, and a scan is recorded.
#[test]
fn overrides_and_scans_without_async() {
    let reg = Registry::in_memory().expect("runtime");
    let me = reg.acting_as(me());
    me.create_model("fraud", CreateModel::new())
        .expect("create");
    register(&reg, "fraud", "weights");
    to_production(&reg, 1);
    let tags = Tags::from([(modelreg::TagKey::new("team").expect("key"), "risk".into())]);
    assert!(matches!(
        me.set_version_tags("fraud/1", tags.clone(), vec![]),
        Err(Error::Immutable { version: 1, .. })
    ));
    let v = me
        .override_immutable("forgot the team")
        .set_version_tags("fraud/1", tags.clone(), vec![])
        .expect("override");
    assert_eq!(v.tags, tags);
    assert!(matches!(
        me.set_version_description("fraud/1", "typo"),
        Err(Error::Immutable {
            what: "description",
            ..
        })
    ));
    let v = me
        .override_immutable("described late")
        .set_version_description("fraud/1", "the fraud scorer")
        .expect("override description");
    assert_eq!(v.description, "the fraud scorer");
    me.override_immutable("late eval")
        .add_metrics("fraud/1", Metrics::new().with("auc", 0.9).expect("finite"))
        .expect("override metrics");
    // `model.bin` is named as a pickle; its bytes are not one.
    let scan = me.scan_formats("fraud/1").expect("scan");
    assert_eq!(scan.refused().count(), 1);
    assert_eq!(reg.resolve("fraud/1").expect("v1").scan, Some(scan));
}

/// Purging by hand and by policy through the facade: the purged version's
/// record stays, fetching it is `Error::Purged`, and gc frees its bytes.
#[test]
fn purge_and_retention_without_async() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg = Registry::open_local(tmp.path().join("registry")).expect("open");
    let me = reg.acting_as(me());
    me.create_model("fraud", CreateModel::new())
        .expect("create");
    for content in ["one", "two", "three", "four"] {
        register(&reg, "fraud", content);
    }
    let v = me.purge_version("fraud/1", "superseded").expect("purge");
    assert_eq!(v.purged.expect("purged").reason, "superseded");
    assert!(matches!(
        reg.fetch("fraud/1", tmp.path().join("out"), FetchOptions::new()),
        Err(Error::Purged { version: 1, .. })
    ));
    let policy = modelreg::RetentionPolicy::new().keep_last(2);
    let plan = me.apply_retention("fraud", &policy, true).expect("dry run");
    assert_eq!(plan.purged.len(), 1, "{plan:?}");
    assert!(reg.resolve("fraud/2").expect("v2").purged.is_none());
    let done = me.apply_retention("fraud", &policy, false).expect("apply");
    assert_eq!(done.purged, plan.purged);
    assert!(reg.resolve("fraud/2").expect("v2").purged.is_some());
    let gc = reg
        .gc(modelreg::GcOptions::new(Duration::ZERO))
        .expect("gc");
    // The files and the manifests of versions 1 and 2.
    assert_eq!(gc.deleted.len(), 4, "{gc:?}");
}

/// Signing through the facade: sign, attach, list, read bundles, verify against
/// a policy, and a fetch and a cache that require a trusted signature.
#[test]
fn signatures_without_async() {
    use modelreg::signing::{SigningKey, TrustPolicy};
    let tmp = tempfile::tempdir().expect("tempdir");
    let reg = Registry::in_memory().expect("runtime");
    let me = reg.acting_as(me());
    me.create_model("fraud", CreateModel::new())
        .expect("create");
    register(&reg, "fraud", "weights");
    let (trainer, approver) = (SigningKey::generate(), SigningKey::generate());
    let policy = TrustPolicy::new()
        .key(trainer.public_key())
        .key(approver.public_key())
        .min(2);
    let fetch = |dest: &str| {
        reg.fetch(
            "fraud/1",
            tmp.path().join(dest),
            FetchOptions::new().trust(policy.clone()),
        )
    };
    assert!(matches!(fetch("a"), Err(Error::Signature { .. })));
    let s = me
        .sign_version("fraud/1", &trainer, "trained")
        .expect("sign");
    // Made elsewhere (here: by the library's pure function) and attached.
    let manifest = reg.manifest("fraud/1").expect("manifest");
    let bundle = modelreg::signing::sign_manifest(
        &manifest,
        "fraud",
        modelreg::signing::FileHash::Blake3,
        &approver,
    )
    .expect("sign");
    let a = me
        .add_signature("fraud/1", bundle.clone(), approver.public_key(), "approved")
        .expect("attach");
    assert_eq!(
        reg.signatures("fraud/1").expect("list"),
        [s.clone(), a.clone()]
    );
    assert_eq!(
        reg.signature_bundle("fraud/1", a.bundle).expect("bundle"),
        bundle
    );
    assert_eq!(reg.signature_bundles("fraud/1").expect("bundles").len(), 2);
    assert!(
        reg.verify_signatures("fraud/1", &policy)
            .expect("verify")
            .passes()
    );
    fetch("b").expect("signed by both");
    let cache = ModelCache::open(
        tmp.path().join("cache"),
        &reg,
        CacheOptions::new().trust(policy.clone()),
    )
    .expect("cache");
    cache.get("fraud/1").expect("cached");
}
