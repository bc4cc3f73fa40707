//! A table of hostile inputs against one local registry. Each input must get a
//! typed error, and afterwards the registry's state and every file under its
//! directory must be exactly as before.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use modelreg::format::seal;
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, FetchOptions, HyperValue, Metrics,
    ModelState, NewVersion, Provenance, Registry, SetAlias,
};

/// Every file below `root` with the digest of its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Digest> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).expect("read");
                out.insert(
                    path.strip_prefix(root).expect("prefix").to_owned(),
                    Digest::of(&bytes),
                );
            }
        }
    }
    out
}

/// The variant of an error, for the table.
fn variant(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::InvalidName { .. } => "InvalidName",
        Error::InvalidReference { .. } => "InvalidReference",
        Error::InvalidPath { .. } => "InvalidPath",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::Integrity { .. } => "Integrity",
        Error::UnsupportedFormat { .. } => "UnsupportedFormat",
        Error::Corrupt { .. } => "Corrupt",
        Error::Io { .. } => "Io",
        _ => "other",
    }
}

struct Bench {
    root: PathBuf,
    scratch: PathBuf,
    reg: Registry,
    me: Actor,
    tried: usize,
}

impl Bench {
    /// Runs one hostile input: it must fail with `expected`, and leave the state
    /// and the files as they were.
    async fn expect<T: std::fmt::Debug>(
        &mut self,
        label: &str,
        expected: &str,
        run: impl AsyncFnOnce(&Registry, &Actor) -> Result<T, Error>,
    ) {
        let files = snapshot(&self.root);
        let state = self.reg.model("fraud").await.expect("state before");
        let got = run(&self.reg, &self.me).await;
        match &got {
            Err(e) if variant(e) == expected => {}
            other => panic!("{label}: expected {expected}, got {other:?}"),
        }
        assert_eq!(snapshot(&self.root), files, "{label}: files changed");
        // A fresh registry over the same directory folds the same state.
        let fresh = Registry::open_local(&self.root).await.expect("reopen");
        match fresh.model("fraud").await {
            Ok(s) => assert_eq!(s, state, "{label}: state changed"),
            Err(e) => panic!("{label}: state unreadable afterwards: {e}"),
        }
        self.tried += 1;
    }
}

fn nested(depth: usize) -> HyperValue {
    let mut v = HyperValue::Int(1);
    for _ in 0..depth {
        v = HyperValue::List(vec![v]);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    let scratch = dir.path().join("scratch");
    fs::create_dir_all(&scratch).expect("scratch");
    let reg = Registry::open_local(&root).await.expect("open");
    let me = Actor::new("ci").expect("actor");
    reg.acting_as(me.clone())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let v1 = reg
        .acting_as(me.clone())
        .register(
            "fraud",
            ArtifactSource::bytes("model.bin", "weights").expect("source"),
            NewVersion::new().semver("1.0.0"),
        )
        .await
        .expect("register");
    let mut b = Bench {
        root: root.clone(),
        scratch: scratch.clone(),
        reg,
        me,
        tried: 0,
    };

    // --- model names ---------------------------------------------------------
    let long = "a".repeat(1_000_000);
    for name in [
        "",
        long.as_str(),
        "..",
        ".",
        "a\nb",
        "a\0b",
        "fr\u{0430}ud", // Cyrillic 'а'
        "ﬁle",          // a ligature
        "Fraud",
        "a/b",
        "a:b",
        "a@b",
        "a#b",
        " fraud",
        "-x",
    ] {
        b.expect(
            &format!("model name {:.20?}", name),
            "InvalidName",
            async |r, me| {
                r.acting_as(me.clone())
                    .create_model(name, CreateModel::new())
                    .await
            },
        )
        .await;
    }
    // --- actors and aliases ----------------------------------------------------
    for actor in ["", "   ", "eve\nadmin", "a\u{1b}[31m"] {
        b.expect(&format!("actor {actor:?}"), "InvalidName", async |_, _| {
            Actor::new(actor)
        })
        .await;
    }
    for alias in ["latest", "production", "1st", "a.b", "Champion", ""] {
        b.expect(&format!("alias {alias:?}"), "InvalidName", async |r, me| {
            r.acting_as(me.clone())
                .set_alias("fraud/1", alias, SetAlias::new())
                .await
        })
        .await;
    }
    // --- references ------------------------------------------------------------
    for reference in [
        "fraud",
        "fraud/0",
        "fraud/07",
        "fraud/-1",
        "fraud/18446744073709551616",
        "fraud:1",
        "fraud:1.0",
        "fraud@",
        "fraud#",
        "fraud#blake3:zz",
        "fraud#sha256:00",
        "/1",
        "@latest",
        "fraud@none",
    ] {
        b.expect(
            &format!("reference {reference:?}"),
            "InvalidReference",
            async |r, _| r.resolve(reference).await,
        )
        .await;
    }
    // --- artifact paths --------------------------------------------------------
    for path in [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "a\0b",
        "a\\b",
        "C:/x",
        "",
        "a//b",
    ] {
        b.expect(&format!("path {path:?}"), "InvalidPath", async |_, _| {
            ArtifactSource::bytes(path, "x")
        })
        .await;
    }
    for files in [
        [("model.bin", "a"), ("model.bin", "b")],
        [("Model.bin", "a"), ("model.bin", "b")],
        [("a", "file"), ("a/b", "nested")],
    ] {
        b.expect(
            &format!("clashing paths {files:?}"),
            "InvalidPath",
            async |r, me| {
                let src = ArtifactSource::files(files)?;
                r.acting_as(me.clone())
                    .register("fraud", src, NewVersion::new())
                    .await
            },
        )
        .await;
    }
    // A directory with a symbolic link leading outside it.
    let outside = b.scratch.join("secret.txt");
    fs::write(&outside, "secret").expect("secret");
    let linked = b.scratch.join("linked");
    fs::create_dir_all(&linked).expect("dir");
    fs::write(linked.join("ok.bin"), "ok").expect("file");
    std::os::unix::fs::symlink(&outside, linked.join("escape")).expect("symlink");
    b.expect("symlink out of the source", "InvalidPath", async |r, me| {
        r.acting_as(me.clone())
            .register("fraud", ArtifactSource::dir(&linked), NewVersion::new())
            .await
    })
    .await;
    // Device files and FIFOs.
    b.expect("device file", "InvalidPath", async |r, me| {
        r.acting_as(me.clone())
            .register(
                "fraud",
                ArtifactSource::file("/dev/null"),
                NewVersion::new(),
            )
            .await
    })
    .await;
    let fifo_dir = b.scratch.join("fifo");
    fs::create_dir_all(&fifo_dir).expect("dir");
    let status = std::process::Command::new("mkfifo")
        .arg(fifo_dir.join("pipe"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    b.expect("fifo in a directory", "InvalidPath", async |r, me| {
        r.acting_as(me.clone())
            .register("fraud", ArtifactSource::dir(&fifo_dir), NewVersion::new())
            .await
    })
    .await;
    // --- values ------------------------------------------------------------------
    b.expect("duplicate semver", "AlreadyExists", async |r, me| {
        r.acting_as(me.clone())
            .register(
                "fraud",
                ArtifactSource::bytes("model.bin", "other weights")?,
                NewVersion::new().semver("1.0.0"),
            )
            .await
    })
    .await;
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        b.expect(&format!("metric {value}"), "InvalidInput", async |_, _| {
            Metrics::new().with("auc", value)
        })
        .await;
    }
    for (label, value) in [
        ("hyperparameters nested 10,000 deep", nested(10_000)),
        ("NaN hyperparameter", HyperValue::Float(f64::NAN)),
        (
            "NaN inside a list",
            HyperValue::List(vec![HyperValue::Float(f64::INFINITY)]),
        ),
    ] {
        b.expect(label, "InvalidInput", async |r, me| {
            let provenance = Provenance {
                hyperparameters: std::sync::Arc::new([("x".to_owned(), value)].into()),
                ..Provenance::default()
            };
            r.acting_as(me.clone())
                .register(
                    "fraud",
                    ArtifactSource::bytes("model.bin", "w")?,
                    NewVersion::new().provenance(provenance),
                )
                .await
        })
        .await;
    }
    b.expect("metrics on a missing version", "NotFound", async |r, me| {
        r.acting_as(me.clone())
            .add_metrics("fraud/99", Metrics::new().with("auc", 0.5)?)
            .await
    })
    .await;
    // --- damaged store files --------------------------------------------------------
    // Each is planted first (that change is the attack, not the registry's), then
    // the registry is asked to use it.
    let blob = root.join(format!(
        "artifacts/blobs/v2/blake3/{0}/{1}",
        &Digest::of(b"weights").to_hex()[..2],
        Digest::of(b"weights").to_hex()
    ));
    overwrite(&blob, b"garbage");
    b.expect("garbage blob on verify", "Integrity", async |r, _| {
        r.verify("fraud/1").await
    })
    .await;
    let dest = b.scratch.join("fetched");
    b.expect("garbage blob on fetch", "Integrity", async |r, _| {
        r.fetch("fraud/1", &dest, FetchOptions::new()).await
    })
    .await;
    assert!(!dest.exists(), "no partial destination");
    overwrite(&blob, b"weights");

    // A manifest whose path escapes, stored under its own digest and named by an
    // event appended behind the registry's back.
    let hostile_manifest = format!(
        r#"{{"format":1,"files":[{{"path":"../escaped.bin","size":7,"digest":"{}"}}]}}"#,
        Digest::of(b"weights")
    );
    let manifest_digest = Digest::of(hostile_manifest.as_bytes());
    plant(&root, &manifest_digest, hostile_manifest.as_bytes());
    let state = b.reg.model("fraud").await.expect("state");
    let forged = forged_registration(&state, manifest_digest);
    let record = root.join(format!(
        "metadata/logs/v1/fraud/records/{:020}.rec",
        state.seq() + 1
    ));
    fs::write(&record, &forged).expect("plant record");
    let dest = b.scratch.join("out/inner");
    b.expect("hostile manifest on fetch", "InvalidPath", async |r, _| {
        r.fetch("fraud/2", &dest, FetchOptions::new()).await
    })
    .await;
    assert!(!b.scratch.join("out/escaped.bin").exists());
    assert!(!dest.exists());
    fs::remove_file(&record).expect("unplant");

    // A record from a future format, and truncated and garbage records.
    let next = root.join(format!(
        "metadata/logs/v1/fraud/records/{:020}.rec",
        state.seq() + 1
    ));
    let future = format!(
        r#"{{"format":99,"seq":{},"model":"fraud","time":"2030-01-01T00:00:00Z","actor":"x","event":{{"type":"teleported"}}}}"#,
        state.seq() + 1
    );
    for (label, bytes, expected) in [
        (
            "future format record",
            seal(future.into_bytes()),
            "UnsupportedFormat",
        ),
        (
            "truncated record",
            forged[..forged.len() / 2].to_vec(),
            "Corrupt",
        ),
        ("garbage record", b"\x00\xff\xfe".to_vec(), "Corrupt"),
        ("empty record", Vec::new(), "Corrupt"),
    ] {
        fs::write(&next, &bytes).expect("plant");
        let files = snapshot(&root);
        let err = Registry::open_local(&root)
            .await
            .expect("open")
            .model("fraud")
            .await
            .expect_err(label);
        assert_eq!(variant(&err), expected, "{label}: {err}");
        assert_eq!(snapshot(&root), files, "{label}: files changed");
        b.tried += 1;
    }
    fs::remove_file(&next).expect("unplant");
    // With the planted record gone, the history is the one the registry wrote.
    let fresh = Registry::open_local(&root).await.expect("reopen");
    assert_eq!(
        fresh.resolve("fraud@latest").await.expect("intact").number,
        v1.number
    );
    fresh
        .verify("fraud/1")
        .await
        .expect("the restored blob verifies");

    assert!(b.tried >= 40, "only {} hostile inputs tried", b.tried);
    eprintln!("hostile inputs tried: {}", b.tried);
}

fn overwrite(path: &Path, bytes: &[u8]) {
    let mut perms = fs::metadata(path).expect("stat").permissions();
    perms.set_mode(0o644);
    fs::set_permissions(path, perms).expect("chmod");
    fs::write(path, bytes).expect("write");
}

fn plant(root: &Path, digest: &Digest, bytes: &[u8]) {
    let hex = digest.to_hex();
    let dir = root.join(format!("artifacts/blobs/v2/blake3/{}", &hex[..2]));
    fs::create_dir_all(&dir).expect("shard");
    fs::write(dir.join(&hex), bytes).expect("blob");
}

/// A sealed `version_registered` event for version 2 naming `artifact`.
fn forged_registration(state: &ModelState, artifact: Digest) -> Vec<u8> {
    let json = format!(
        r#"{{"format":1,"seq":{seq},"model":"fraud","time":"{time}","actor":"mallory","event":{{"type":"version_registered","version":{{"number":2,"artifact":"{artifact}","size":7,"files":1,"created_at":"{time}","created_by":"mallory"}}}}}}"#,
        seq = state.seq() + 1,
        time = state
            .updated_at()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    );
    seal(json.into_bytes())
}
