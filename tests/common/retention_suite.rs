//! Retention, written once: purging a version's artifact by hand and by policy,
//! what protects a version, what a purged version can no longer do, and how
//! garbage collection reclaims what only purged versions used.
//!
//! Every `pub async fn` here taking a [`Fixture`] is a test:
//! `tests/registry_behaviour.rs` instantiates each one for every backend. A
//! refused purge is checked to have written nothing.

use std::time::Duration;

use modelreg::retention::KEEP_TAG;
use modelreg::store::MetadataStore;
use modelreg::{
    AliasName, ArtifactSource, Error, EventKind, FetchOptions, HistoryFilter, NewVersion,
    Protection, Registry, RetentionPolicy, SetAlias, Stage, TrafficSplit, VersionRecord,
};

use super::backends::Fixture;
use super::lifecycle_suite::bring_to;
use super::registry_suite::{
    actor, blobs, collect, create, event_count, num, register_bytes, tags,
};

/// Purges `model/n` as `alice` with `reason`.
async fn purge(reg: &Registry, model: &str, n: u64, reason: &str) -> Result<VersionRecord, Error> {
    reg.acting_as(actor("alice"))
        .purge_version(format!("{model}/{n}"), reason)
        .await
}

/// Registers `count` versions of `model`, each one file of its own.
async fn versions(reg: &Registry, model: &str, count: u64) {
    for i in 1..=count {
        register_bytes(reg, model, "model.bin", format!("{model} weights {i}")).await;
    }
}

/// The version numbers in a retention report's list.
fn nums(list: &[modelreg::VersionNumber]) -> Vec<u64> {
    list.iter().map(|n| n.get()).collect()
}

/// A purge is an audited event; the record and its history stay; everything
/// that would read the files — fetch, verify, manifest, scan, compare — is
/// `Error::Purged` naming who, when and why; `@latest` skips it; another
/// handle over the same stores sees all of it.
pub async fn purge_keeps_the_record_and_refuses_the_files(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    versions(&reg, "fraud", 3).await;
    let before = reg.resolve("fraud/2").await.expect("v2");

    let purged = purge(&reg, "fraud", 2, "superseded").await.expect("purge");
    let p = purged.purged.clone().expect("marked purged");
    assert_eq!((p.by.as_str(), p.reason.as_str()), ("alice", "superseded"));
    assert_eq!(
        (purged.artifact, purged.size, purged.files),
        (before.artifact, before.size, before.files),
        "the record stays"
    );

    let trail = reg
        .history("fraud", &HistoryFilter::new().kind("version_purged"))
        .await
        .expect("history");
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].actor.as_str(), "alice");
    assert_eq!(trail[0].time, p.at);
    assert!(matches!(
        &trail[0].kind,
        EventKind::VersionPurged { version, reason } if version.get() == 2 && reason == "superseded"
    ));

    for view in [reg.clone(), f.fresh().await] {
        let gone = |r: Result<_, Error>| {
            let e = assert_err!(r, Error::Purged { .. });
            match e {
                Error::Purged {
                    model,
                    version,
                    by,
                    reason,
                    at,
                } => {
                    assert_eq!((model.as_str(), version), ("fraud", 2));
                    assert_eq!(
                        (by.as_str(), reason.as_str(), at),
                        ("alice", "superseded", p.at)
                    );
                }
                _ => unreachable!(),
            }
        };
        gone(
            view.fetch("fraud/2", f.scratch().join("out"), FetchOptions::new())
                .await
                .map(|_| ()),
        );
        assert!(!f.scratch().join("out").exists(), "nothing written");
        gone(view.verify("fraud/2").await.map(|_| ()));
        gone(view.manifest("fraud/2").await.map(|_| ()));
        gone(view.compare("fraud/1", "fraud/2").await.map(|_| ()));
        gone(
            view.acting_as(actor("bob"))
                .scan_formats("fraud/2")
                .await
                .map(|_| ()),
        );
        // The others are untouched.
        view.verify("fraud/1").await.expect("v1 verifies");
        view.verify("fraud/3").await.expect("v3 verifies");
        assert_eq!(
            view.resolve("fraud/2")
                .await
                .expect("resolves by number")
                .purged,
            Some(p.clone())
        );
    }

    // Twice is refused, and so is a purge without a reason; neither writes.
    let events = event_count(&reg, "fraud").await;
    assert_err!(
        purge(&reg, "fraud", 2, "again").await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        purge(&reg, "fraud", 1, "  ").await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        purge(&reg, "fraud", 9, "no such").await,
        Error::NotFound { .. }
    );
    assert_eq!(event_count(&reg, "fraud").await, events);

    // `@latest` skips a purged version, as it skips a deprecated one.
    purge(&reg, "fraud", 3, "bad run").await.expect("purge v3");
    assert_eq!(
        reg.resolve("fraud@latest")
            .await
            .expect("latest")
            .number
            .get(),
        1
    );

    // Purges are format 4; the events around them keep their own format, so a
    // log without a purge stays readable by older builds.
    let records = reg
        .metadata_store()
        .read_after("fraud", 0, 100)
        .await
        .expect("read log");
    let mut purges = 0;
    for rec in &records {
        let line = rec
            .bytes
            .split(|b| *b == b'\n')
            .next()
            .expect("a JSON line");
        let json: serde_json::Value = serde_json::from_slice(line).expect("json record");
        let kind = json["event"]["type"].as_str().expect("a type");
        let expected = if kind == "version_purged" { 4 } else { 1 };
        purges += usize::from(kind == "version_purged");
        assert_eq!(json["format"].as_u64(), Some(expected), "{kind}");
    }
    assert_eq!(purges, 2);
}

/// Every protection refuses a purge with `Error::Protected` naming it, and
/// writes nothing; once the protection is gone the purge goes through.
pub async fn protected_versions_are_never_purged(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("alice"));
    create(&reg, "fraud").await;
    versions(&reg, "fraud", 7).await;
    bring_to(&reg, "fraud", 1, Stage::Staging).await;
    bring_to(&reg, "fraud", 2, Stage::Validation).await;
    // 3 then 4 in production: 4 serves, 3 is where a rollback goes.
    bring_to(&reg, "fraud", 3, Stage::Production).await;
    bring_to(&reg, "fraud", 4, Stage::Production).await;
    me.set_alias("fraud/5", "champion", SetAlias::new())
        .await
        .expect("alias");
    me.set_traffic_split(
        "fraud",
        TrafficSplit::new([("@production", 90), ("/6", 10)]).expect("split"),
        "a/b",
    )
    .await
    .expect("split");
    me.set_version_tags("fraud/7", tags(&[(KEEP_TAG, "audit")]), vec![])
        .await
        .expect("tag");

    let expected: [(u64, Vec<Protection>); 7] = [
        (
            1,
            vec![Protection::Stage {
                stage: Stage::Staging,
            }],
        ),
        (
            2,
            vec![Protection::Stage {
                stage: Stage::Validation,
            }],
        ),
        (3, vec![Protection::RollbackTarget]),
        (
            4,
            vec![
                Protection::Stage {
                    stage: Stage::Production,
                },
                Protection::TrafficSplit,
            ],
        ),
        (
            5,
            vec![Protection::Alias {
                alias: AliasName::new("champion").expect("alias"),
            }],
        ),
        (6, vec![Protection::TrafficSplit]),
        (7, vec![Protection::KeepTag]),
    ];
    let events = event_count(&reg, "fraud").await;
    for (n, protections) in &expected {
        let e = assert_err!(
            purge(&reg, "fraud", *n, "tidy").await,
            Error::Protected { .. }
        );
        match e {
            Error::Protected {
                version,
                protections: got,
                ..
            } => assert_eq!((version, &got), (*n, protections), "fraud/{n}"),
            _ => unreachable!(),
        }
        assert_eq!(
            reg.model("fraud")
                .await
                .expect("model")
                .protections(num(*n)),
            *protections
        );
    }
    assert_eq!(
        event_count(&reg, "fraud").await,
        events,
        "refusals write nothing"
    );

    // Lift each protection of the ones that are easy to lift; then it goes.
    me.set_version_tags(
        "fraud/7",
        Default::default(),
        vec![modelreg::TagKey::new(KEEP_TAG).expect("key")],
    )
    .await
    .expect("untag");
    purge(&reg, "fraud", 7, "tidy")
        .await
        .expect("untagged: purged");
    me.remove_alias("fraud", "champion", "")
        .await
        .expect("remove alias");
    purge(&reg, "fraud", 5, "tidy")
        .await
        .expect("no alias: purged");
    me.clear_traffic_split("fraud", "").await.expect("clear");
    purge(&reg, "fraud", 6, "tidy")
        .await
        .expect("no split: purged");
    me.transition("fraud/1", Stage::Archived, "")
        .await
        .expect("archive");
    purge(&reg, "fraud", 1, "tidy")
        .await
        .expect("archived: purged");
}

/// A purged version cannot come back into use: no stage that tries or serves
/// it, no alias, no route, no rollback to it. Archiving it is fine.
pub async fn purged_versions_cannot_come_back_into_use(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("alice"));
    create(&reg, "fraud").await;
    versions(&reg, "fraud", 4).await;
    purge(&reg, "fraud", 1, "old").await.expect("purge");
    let events = event_count(&reg, "fraud").await;
    assert_err!(
        me.transition("fraud/1", Stage::Staging, "").await,
        Error::Purged { version: 1, .. }
    );
    assert_err!(
        me.set_alias("fraud/1", "champion", SetAlias::new()).await,
        Error::Purged { version: 1, .. }
    );
    assert_err!(
        me.set_traffic_split(
            "fraud",
            TrafficSplit::new([("/2", 50), ("/1", 50)]).expect("split"),
            ""
        )
        .await,
        Error::Purged { version: 1, .. }
    );
    assert_eq!(event_count(&reg, "fraud").await, events);
    me.transition("fraud/1", Stage::Archived, "tidy")
        .await
        .expect("a purged version may be archived");

    // Production 2 → 3 → 4, purge 2 (no longer the rollback target once 4
    // serves); rolling back to 3 works, rolling back again to 2 is refused.
    for n in 2..=4 {
        bring_to(&reg, "fraud", n, Stage::Production).await;
    }
    purge(&reg, "fraud", 2, "old").await.expect("purge 2");
    me.rollback("fraud", "bad 4").await.expect("back to 3");
    let events = event_count(&reg, "fraud").await;
    assert_err!(
        me.rollback("fraud", "again").await,
        Error::Purged { version: 2, .. }
    );
    assert_eq!(event_count(&reg, "fraud").await, events);
    assert_eq!(
        reg.resolve("fraud@production")
            .await
            .expect("prod")
            .number
            .get(),
        3
    );
}

/// A policy purges what is outside the newest `keep_last` and older than
/// `older_than` (both, when both are set), never a protected version, which the
/// report lists with why; a dry run writes nothing; a policy without limits
/// is refused.
pub async fn retention_policy_purges_only_what_it_picks(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("retainer"));
    create(&reg, "fraud").await;
    versions(&reg, "fraud", 6).await;
    bring_to(&reg, "fraud", 2, Stage::Production).await;
    purge(&reg, "fraud", 3, "by hand").await.expect("purge 3");

    let events = event_count(&reg, "fraud").await;
    assert_err!(
        me.apply_retention("fraud", &RetentionPolicy::new(), true)
            .await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        me.apply_retention("nope", &RetentionPolicy::new().keep_last(1), true)
            .await,
        Error::NotFound { .. }
    );
    // Nothing is older than a day.
    let young = RetentionPolicy::new()
        .keep_last(2)
        .older_than(Duration::from_secs(86_400));
    let none = me
        .apply_retention("fraud", &young, true)
        .await
        .expect("dry");
    assert_eq!((nums(&none.purged), none.protected.len()), (vec![], 0));

    let policy = RetentionPolicy::new().keep_last(2);
    let dry = me
        .apply_retention("fraud", &policy, true)
        .await
        .expect("dry");
    assert!(dry.dry_run);
    assert_eq!(
        nums(&dry.purged),
        [1, 4],
        "3 is purged already, 5 and 6 are the last two"
    );
    let size = |n: u64| format!("fraud weights {n}").len() as u64;
    assert_eq!(dry.bytes, size(1) + size(4));
    assert_eq!(dry.protected.len(), 1);
    assert_eq!(dry.protected[0].version.get(), 2);
    assert_eq!(
        dry.protected[0].protections,
        [Protection::Stage {
            stage: Stage::Production
        }]
    );
    assert_eq!(
        event_count(&reg, "fraud").await,
        events,
        "a dry run writes nothing"
    );

    let done = me
        .apply_retention("fraud", &policy, false)
        .await
        .expect("apply");
    assert!(!done.dry_run);
    assert_eq!((nums(&done.purged), done.bytes), (vec![1, 4], dry.bytes));
    assert_eq!(done.protected, dry.protected);
    assert_eq!(
        event_count(&reg, "fraud").await,
        events + 2,
        "one event per purge"
    );
    let trail = reg
        .history("fraud", &HistoryFilter::new().kind("version_purged"))
        .await
        .expect("history");
    assert_eq!(trail[0].actor.as_str(), "retainer");
    assert!(matches!(
        &trail[0].kind,
        EventKind::VersionPurged { reason, .. } if reason == "retention: keep_last=2"
    ));
    let state = f.fresh().await.model("fraud").await.expect("model");
    let purged: Vec<u64> = state
        .versions()
        .iter()
        .filter(|v| v.purged.is_some())
        .map(|v| v.number.get())
        .collect();
    assert_eq!(purged, [1, 3, 4]);
    // Applying again finds nothing new.
    let again = me
        .apply_retention("fraud", &policy, false)
        .await
        .expect("again");
    assert_eq!(nums(&again.purged), Vec::<u64>::new());

    // older_than alone, with an age every version has reached: all but the
    // protected production version.
    let all = me
        .apply_retention(
            "fraud",
            &RetentionPolicy::new().older_than(Duration::ZERO),
            false,
        )
        .await
        .expect("older than zero");
    assert_eq!(nums(&all.purged), [5, 6]);
    assert_eq!(
        reg.resolve("fraud@production")
            .await
            .expect("prod")
            .number
            .get(),
        2
    );
}

/// After purges, GC deletes the blobs only purged versions used (files and
/// manifests), once older than the grace period; a blob a kept version shares
/// stays; the kept versions verify and `check` finds nothing wrong.
pub async fn gc_reclaims_what_only_purged_versions_used(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let files = |own: &str| {
        ArtifactSource::files([
            ("tokenizer.json", "shared by every version".to_owned()),
            ("model.bin", own.to_owned()),
        ])
        .expect("paths")
    };
    let mut registered = Vec::new();
    for own in ["weights one", "weights two", "weights three"] {
        registered.push(
            reg.acting_as(actor("ci"))
                .register("fraud", files(own), NewVersion::new())
                .await
                .expect("register")
                .version,
        );
    }
    let before = blobs(&reg).await;
    // Three manifests, three own files, one shared file.
    assert_eq!(before.len(), 7);
    purge(&reg, "fraud", 1, "old").await.expect("purge 1");
    purge(&reg, "fraud", 2, "old").await.expect("purge 2");

    let young = collect(&reg, Duration::from_secs(3600)).await;
    assert_eq!(
        (young.deleted.len(), young.young),
        (0, 4),
        "within the grace period"
    );
    assert_eq!(
        young.manifests, 1,
        "only the kept version's manifest is read"
    );

    let v1_own = modelreg::Digest::of(b"weights one");
    let v2_own = modelreg::Digest::of(b"weights two");
    let mut expected = vec![
        registered[0].artifact,
        registered[1].artifact,
        v1_own,
        v2_own,
    ];
    expected.sort();
    let mut expected_bytes = 0;
    for d in &expected {
        let head = reg.artifact_store().head(d).await.expect("head");
        expected_bytes += head.expect("stored before gc").size;
    }
    let swept = collect(&reg, Duration::ZERO).await;
    let mut deleted = swept.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, expected);
    assert_eq!(swept.bytes_freed, expected_bytes);
    let after = blobs(&reg).await;
    assert_eq!(after.len(), 3);
    assert!(after.contains(&modelreg::Digest::of(b"shared by every version")));
    reg.verify("fraud/3")
        .await
        .expect("the kept version is whole");
    let fresh = f.fresh().await;
    assert!(fresh.check().await.expect("check").is_ok());
    // After GC a purged version is still `Purged`, not a missing blob.
    assert_err!(
        fresh
            .fetch("fraud/1", f.scratch().join("out"), FetchOptions::new())
            .await,
        Error::Purged { version: 1, .. }
    );
    // Registering the purged bytes again stores them again.
    let back = reg
        .acting_as(actor("ci"))
        .register("fraud", files("weights one"), NewVersion::new())
        .await
        .expect("register again");
    assert_eq!(back.version.artifact, registered[0].artifact);
    assert_eq!(
        back.report.files_stored, 1,
        "the purged file was stored again"
    );
    reg.verify("fraud/4").await.expect("whole");
    assert_eq!(collect(&reg, Duration::ZERO).await.deleted, []);
}

/// A safetensors file of [`TENSORS`] BF16 tensors of [`TENSOR`] bytes each,
/// its own `__metadata__`, tensor `changed` (if any) rewritten: a fine-tune
/// that changed one tensor. A packed store cuts it at tensor boundaries, so a
/// variant costs its changed tensor and its header, nothing more.
fn variant(changed: Option<usize>, tag: &str) -> Vec<u8> {
    let mut header = format!(r#"{{"__metadata__":{{"run":"{tag}"}}"#);
    for t in 0..TENSORS {
        let (begin, end) = (t * TENSOR, (t + 1) * TENSOR);
        header.push_str(&format!(
            r#","t{t}":{{"dtype":"BF16","shape":[{}],"data_offsets":[{begin},{end}]}}"#,
            TENSOR / 2
        ));
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for t in 0..TENSORS {
        let seed = if changed == Some(t) { 1000 + t } else { t } as u64;
        let mut rng = fastrand::Rng::with_seed(seed);
        out.extend((0..TENSOR).map(|_| rng.u8(..)));
    }
    out
}

/// Tensors in a [`variant`].
const TENSORS: usize = 10;
/// Bytes of each tensor.
const TENSOR: usize = 256 << 10;

/// Ten fine-tunes of one checkpoint, each its own tensor changed; five
/// purged, then collected: the store keeps within 1.1× of what the five left
/// need (whole files on a store without packs; on a packed one the shared
/// tensors once, plus each kept variant's changed tensor and header), every
/// kept version fetches and verifies, and `check` finds nothing wrong.
pub async fn gc_reclaims_the_space_of_purged_fine_tunes(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "llm").await;
    let files: Vec<Vec<u8>> = (0..TENSORS)
        .map(|i| variant(Some(i), &format!("ft-{i}")))
        .collect();
    for file in &files {
        let source = ArtifactSource::files([("model.safetensors", file.clone())]).expect("path");
        reg.acting_as(actor("ci"))
            .register("llm", source, NewVersion::new())
            .await
            .expect("register");
    }
    let before = f.stored_bytes().await;
    // Purge every other version: on a packed store their changed tensors
    // sit in packs that are then wholly or half dead.
    let purged: Vec<u64> = (2..=10).step_by(2).collect();
    for n in &purged {
        purge(&reg, "llm", *n, "superseded").await.expect("purge");
    }
    let report = collect(&reg, Duration::ZERO).await;
    let after = f.stored_bytes().await;

    let kept: Vec<u64> = (1..=9).step_by(2).collect();
    let header = |i: usize| files[i].len() - TENSORS * TENSOR;
    let ideal: usize = if f.packed() {
        // Every original tensor (each some kept variant still has), the
        // kept variants' changed tensors and headers.
        TENSORS * TENSOR
            + kept
                .iter()
                .map(|n| TENSOR + header(*n as usize - 1))
                .sum::<usize>()
    } else {
        kept.iter().map(|n| files[*n as usize - 1].len()).sum()
    };
    let ratio = after as f64 / ideal as f64;
    eprintln!(
        "{}: stored {before} bytes before gc, {after} after; ideal {ideal} ({ratio:.3}×); {report:?}",
        f.name
    );
    assert!(after < before, "{}: {after} of {before}", f.name);
    assert!(
        ratio <= 1.1,
        "{}: {after} bytes stored after gc, ideal {ideal}: {ratio:.3}×",
        f.name
    );
    if f.packed() {
        assert!(
            report.packs_repacked > 0 && report.packs_retired > 0,
            "{}: {report:?}",
            f.name
        );
        assert!(report.packs_deleted > 0 && !report.packs_deletion_deferred);
    }
    // Another process's view: every kept version reads whole.
    let fresh = f.fresh().await;
    for n in &kept {
        let out = f.scratch().join(format!("v{n}"));
        fresh
            .fetch(format!("llm/{n}"), &out, FetchOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{}: fetch llm/{n}: {e}", f.name));
        let got = std::fs::read(out.join("model.safetensors")).expect("fetched file");
        assert!(got == files[*n as usize - 1], "{}: llm/{n} differs", f.name);
        fresh
            .verify(format!("llm/{n}"))
            .await
            .unwrap_or_else(|e| panic!("{}: verify llm/{n}: {e}", f.name));
    }
    let check = fresh.check().await.expect("check");
    assert!(check.is_ok(), "{}: {:?}", f.name, check.problems);
    // Nothing left to reclaim.
    let again = collect(&reg, Duration::ZERO).await;
    assert_eq!(
        (
            again.deleted.len(),
            again.packs_repacked,
            again.packs_deleted
        ),
        (0, 0, 0),
        "{}: {again:?}",
        f.name
    );
}
