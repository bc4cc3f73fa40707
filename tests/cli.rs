//! The `modelreg` binary, run as a process: every command on a local registry,
//! `file://`, and in CI on S3 (moto) and Azure (Azurite); `--json` checked field
//! by field, tables by snapshot; exit codes, one-line errors, hostile input that
//! writes nothing, the default actor, and Ctrl-C during a fetch.

// A failed setup step should fail the test where it happened.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::servers::Server;
use serde_json::Value;
use tempfile::TempDir;

/// Runs the binary against one registry, as one actor.
struct Cli {
    registry: String,
    /// Holds the local registry (and sources, destinations) until the test ends.
    tmp: TempDir,
}

/// What a run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and parses stdout as JSON.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts the exit code and that stderr is one line naming `needle`.
    fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}; stdout: {}; stderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "the error is not one line: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        self
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modelreg"));
    c.env_remove("MODELREG_REGISTRY")
        .env_remove("MODELREG_ACTOR")
        .stdin(Stdio::null());
    c
}

impl Cli {
    fn local() -> Cli {
        let tmp = TempDir::new().unwrap();
        let registry = tmp.path().join("registry").display().to_string();
        Cli { registry, tmp }
    }

    fn file_url() -> Cli {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("registry");
        std::fs::create_dir_all(&dir).unwrap();
        let registry = format!("file://{}", dir.display());
        Cli { registry, tmp }
    }

    fn server(server: Server) -> Cli {
        Cli {
            registry: server.unique_url(),
            tmp: TempDir::new().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Runs `modelreg ARGS` as `alice@example.com`.
    fn run(&self, args: &[&str]) -> Run {
        Run::of(
            bin()
                .env("MODELREG_REGISTRY", &self.registry)
                .env("MODELREG_ACTOR", "alice@example.com")
                .current_dir(self.tmp.path())
                .args(args)
                .output()
                .unwrap(),
        )
    }

    /// Runs `modelreg --json ARGS` and parses what it printed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&all).json()
    }

    /// A directory of model files: `weights.bin` (`size` bytes) and `config.json`.
    fn artifact(&self, name: &str, size: usize, seed: u8) -> String {
        let dir = self.path(name);
        std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
        let weights: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        std::fs::write(dir.join("weights.bin"), weights).unwrap();
        std::fs::write(dir.join("config.json"), format!("{{\"seed\":{seed}}}")).unwrap();
        std::fs::write(dir.join("tokenizer/vocab.txt"), "a\nb\n").unwrap();
        dir.display().to_string()
    }

    /// How many events the model's log holds (0 when it does not exist).
    fn events(&self, model: &str) -> u64 {
        let r = self.run(&["--json", "history", model, "--limit", "1"]);
        if r.code == 3 {
            return 0;
        }
        r.json()["items"][0]["seq"].as_u64().unwrap()
    }
}

fn nums(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["number"].as_u64().unwrap())
        .collect()
}

/// Every command, through its `--json` output, on one registry.
fn every_command(cli: &Cli) {
    // Models.
    let m = cli.json(&[
        "model",
        "create",
        "fraud",
        "--description",
        "card fraud",
        "--tag",
        "team=risk",
        "--metric-goal",
        "auc=max",
        "--metric-goal",
        "latency_ms=min:5",
    ]);
    assert_eq!(m["name"], "fraud");
    assert_eq!(m["description"], "card fraud");
    assert_eq!(m["tags"]["team"], "risk");
    assert_eq!(m["created_by"], "alice@example.com");
    assert_eq!(m["metric_specs"]["auc"]["goal"], "maximize");

    // Versions.
    let src1 = cli.artifact("v1", 100_000, 1);
    let r1 = cli.json(&[
        "version",
        "register",
        "fraud",
        &src1,
        "--metric",
        "auc=0.91",
        "--metric",
        "latency_ms=12",
        "--param",
        "lr=0.01",
        "--param",
        "optimizer=adam",
        "--tag",
        "run=a",
        "--semver",
        "1.0.0",
        "--dataset",
        "train:transactions@2026-11",
        "--dataset",
        "eval:holdout",
        "--code-commit",
        "0123456789abcdef0123456789abcdef01234567",
        "--framework",
        "torch=2.4.0",
        "--no-env",
    ]);
    let v1 = &r1["version"];
    assert_eq!(v1["model"], "fraud");
    assert_eq!(v1["number"], 1);
    assert_eq!(v1["semver"], "1.0.0");
    assert_eq!(v1["files"], 3);
    assert_eq!(v1["created_by"], "alice@example.com");
    assert_eq!(v1["metrics"]["auc"], 0.91);
    assert_eq!(v1["tags"]["run"], "a");
    let p = &v1["provenance"];
    assert_eq!(p["hyperparameters"]["lr"], 0.01);
    assert_eq!(p["hyperparameters"]["optimizer"], "adam");
    assert_eq!(p["datasets"][0]["name"], "transactions");
    assert_eq!(p["datasets"][0]["version"], "2026-11");
    assert_eq!(p["datasets"][1]["role"], "eval");
    assert_eq!(
        p["code"]["commit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(p["environment"]["frameworks"]["torch"], "2.4.0");
    assert_eq!(r1["report"]["files_stored"], 3);

    let src2 = cli.artifact("v2", 120_000, 2);
    let r2 = cli.json(&[
        "version",
        "register",
        "fraud",
        &src2,
        "-m",
        "auc=0.93",
        "-m",
        "latency_ms=11",
        "--parent",
        "fraud/1=retrained_from",
        "--semver",
        "1.1.0",
        "--no-code",
        "--no-env",
    ]);
    assert_eq!(r2["version"]["number"], 2);
    assert_eq!(r2["version"]["provenance"]["parents"][0]["version"], 1);
    assert_eq!(
        r2["version"]["provenance"]["parents"][0]["relation"],
        "retrained_from"
    );
    // config.json differs, tokenizer/vocab.txt is shared with version 1.
    assert_eq!(r2["report"]["files_present"], 1);
    // Without --json, the reference alone on stdout.
    let src3 = cli.artifact("v3", 10, 3);
    let plain = cli.run(&["version", "register", "fraud", &src3, "--no-env"]);
    assert_eq!((plain.code, plain.stdout.as_str()), (0, "fraud/3\n"));

    let page = cli.json(&["version", "list", "fraud", "--limit", "2"]);
    assert_eq!(nums(&page["items"]), [1, 2]);
    assert_eq!(page["total"], 3);
    let next = page["next"].as_str().unwrap().to_owned();
    let rest = cli.json(&["version", "list", "fraud", "--after", &next]);
    assert_eq!(nums(&rest["items"]), [3]);
    let best = cli.json(&["version", "list", "fraud", "--by", "auc", "--limit", "1"]);
    assert_eq!(nums(&best["items"]), [2]);

    let shown = cli.json(&["version", "show", "fraud:1.1.0"]);
    assert_eq!(shown["number"], 2);
    assert_eq!(shown["artifact"], r2["version"]["artifact"]);
    let files = cli.json(&["version", "show", "fraud/1", "--files"]);
    let entries = files["manifest"]["files"].as_array().unwrap();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["config.json", "tokenizer/vocab.txt", "weights.bin"]);
    assert_eq!(entries[2]["size"], 100_000);

    let dest = cli.path("fetched");
    let fetched = cli.json(&["version", "fetch", "fraud@latest", dest.to_str().unwrap()]);
    assert_eq!(fetched["files"], 3);
    assert_eq!(
        std::fs::read(dest.join("config.json")).unwrap(),
        std::fs::read(Path::new(&src3).join("config.json")).unwrap()
    );
    let verified = cli.json(&["version", "verify", "fraud/2"]);
    assert_eq!(verified["files"], 3);
    assert_eq!(verified["bytes"], r2["version"]["size"]);

    let tagged = cli.json(&[
        "version",
        "tag",
        "fraud/2",
        "reviewed=yes",
        "--rm",
        "nothing",
    ]);
    assert_eq!(tagged["tags"]["reviewed"], "yes");
    let measured = cli.json(&["version", "metrics", "fraud/2", "f1=0.8"]);
    assert_eq!(measured["metrics"]["f1"], 0.8);
    assert_eq!(measured["metrics"]["auc"], 0.93);

    let diff = cli.json(&["version", "diff", "fraud/2", "fraud/1"]);
    let auc = diff["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "auc")
        .unwrap();
    assert_eq!(
        (auc["a"].as_f64(), auc["b"].as_f64()),
        (Some(0.93), Some(0.91))
    );

    // Lifecycle.
    let promoted = cli.json(&["stage", "promote", "fraud/1", "--reason", "first model"]);
    let stages: Vec<&str> = promoted
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["to"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["staging", "validation", "production"]);
    assert_eq!(promoted[2]["actor"], "alice@example.com");
    let moved = cli.json(&["stage", "transition", "fraud/2", "staging"]);
    assert_eq!(moved[0]["event"]["to"], "staging");
    let approved = cli.json(&["stage", "approve", "fraud/2", "production", "-c", "ok"]);
    assert_eq!(approved[0]["event"]["decision"], "approve");
    let rejected = cli.json(&["stage", "reject", "fraud/3", "production", "-c", "no"]);
    assert_eq!(rejected[0]["event"]["decision"], "reject");
    cli.json(&["stage", "promote", "fraud/2"]);
    assert_eq!(
        cli.json(&["version", "show", "fraud@production"])["number"],
        2
    );
    let back = cli.json(&["stage", "rollback", "fraud", "-r", "auc dropped live"]);
    assert_eq!(back[0]["event"]["type"], "rolled_back");
    assert_eq!(
        cli.json(&["version", "show", "fraud@production"])["number"],
        1
    );

    // Aliases.
    let set = cli.json(&["alias", "set", "fraud/2", "champion", "--protected"]);
    assert_eq!(set[0]["event"]["alias"], "champion");
    let aliases = cli.json(&["alias", "list", "fraud"]);
    assert_eq!(aliases["champion"]["version"], 2);
    assert_eq!(aliases["champion"]["protected"], true);
    assert_eq!(
        cli.json(&["version", "show", "fraud@champion"])["number"],
        2
    );
    cli.json(&["alias", "rm", "fraud", "champion"]);
    assert_eq!(cli.json(&["alias", "list", "fraud"]), serde_json::json!({}));

    // Traffic split and routing.
    cli.json(&[
        "split",
        "set",
        "fraud",
        "@production=90",
        "/2=10",
        "--salt",
        "s1",
    ]);
    let split = cli.json(&["split", "show", "fraud"]);
    let resolved = split["resolved"].as_array().unwrap();
    assert_eq!(resolved[0]["version"], 1);
    assert_eq!(resolved[1]["version"], 2);
    assert_eq!(resolved[1]["weight"], 10);
    let mut seen = std::collections::BTreeSet::new();
    for key in 0..64 {
        let routed = cli.json(&["route", "fraud", &format!("user-{key}")]);
        assert_eq!(routed["from_split"], true);
        seen.insert(routed["version"]["number"].as_u64().unwrap());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2]);
    cli.json(&["split", "clear", "fraud"]);
    assert_eq!(cli.json(&["route", "fraud", "user-1"])["from_split"], false);
    cli.run(&["split", "show", "fraud"])
        .fails(3, "traffic split");

    // History.
    let h = cli.json(&["history", "fraud", "--kind", "rolled_back"]);
    assert_eq!(h["items"].as_array().unwrap().len(), 1);
    assert_eq!(h["items"][0]["event"]["reason"], "auc dropped live");
    let mine = cli.json(&[
        "history",
        "fraud",
        "--actor-is",
        "alice@example.com",
        "--since",
        "1h",
    ]);
    assert!(mine["items"].as_array().unwrap().len() >= 10);
    let none = cli.json(&["history", "fraud", "--actor-is", "bob"]);
    assert_eq!(none["items"], serde_json::json!([]));

    // Lineage.
    let up = cli.json(&["lineage", "fraud/2"]);
    let nodes: Vec<String> = up["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "version")
        .map(|n| format!("{}/{}", n["model"].as_str().unwrap(), n["version"]))
        .collect();
    assert_eq!(nodes, ["fraud/2", "fraud/1"]);
    let dot = cli.run(&["lineage", "fraud/2", "--format", "dot"]);
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
    assert!(dot.stdout.contains("fraud/1"));
    let mermaid = cli.run(&["lineage", "fraud/2", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.starts_with("flowchart"),
        "{}",
        mermaid.stdout
    );
    let down = cli.run(&["lineage", "fraud/1", "--downstream"]);
    assert_eq!(down.stdout, "fraud/1\n  fraud/2 (retrained_from)\n");

    // Watch prints the current version first.
    let watched = cli.run(&["--json", "watch", "fraud@production", "--count", "1"]);
    let line: Value = serde_json::from_str(watched.stdout.trim()).unwrap();
    assert_eq!(line["number"], 1);

    // Deprecation, model tags, listing.
    let dep = cli.json(&["version", "deprecate", "fraud/3", "--reason", "bad data"]);
    assert_eq!(dep["deprecated"]["reason"], "bad data");
    let tags = cli.json(&["model", "tag", "fraud", "owner=ops", "--rm", "team"]);
    assert_eq!(tags["tags"], serde_json::json!({"owner": "ops"}));
    let models = cli.json(&["model", "list"]);
    assert_eq!(models[0]["name"], "fraud");
    assert_eq!(models[0]["versions"], 3);
    assert_eq!(models[0]["production"], 1);
    let shown = cli.json(&["model", "show", "fraud"]);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 3);

    // Maintenance.
    let checked = cli.json(&["check"]);
    assert_eq!(checked["problems"], serde_json::json!([]));
    assert_eq!(checked["versions"], 3);
    let gc = cli.json(&["gc", "--grace", "0s", "--dry-run"]);
    assert_eq!(gc["deleted"], serde_json::json!([]));
}

#[test]
fn every_command_on_a_local_registry() {
    every_command(&Cli::local());
}

#[test]
fn every_command_on_a_file_url() {
    every_command(&Cli::file_url());
}

#[test]
#[cfg_attr(
    not(modelreg_s3),
    ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
)]
fn every_command_on_s3() {
    every_command(&Cli::server(Server::S3));
}

#[test]
#[cfg_attr(
    not(modelreg_azure),
    ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)"
)]
fn every_command_on_azure() {
    every_command(&Cli::server(Server::Azure));
}

// ----- exit codes, errors, hostile input ------------------------------------------

/// A local registry with `fraud/1` (auc 0.9) registered.
fn one_version() -> Cli {
    let cli = Cli::local();
    let src = cli.artifact("src", 1000, 7);
    let r = cli.run(&[
        "version", "register", "fraud", &src, "-m", "auc=0.9", "--no-env",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    cli
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let cli = one_version();
    // 2: usage.
    let r = cli.run(&["version", "frobnicate"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Usage"), "{}", r.stderr);
    cli.run(&["version", "show", "Fraud/1"]).fails(2, "invalid");
    // 3: not found (model, version, alias).
    cli.run(&["version", "show", "fraud/9"])
        .fails(3, "not found");
    cli.run(&["model", "show", "nope"]).fails(3, "not found");
    cli.run(&["version", "show", "fraud@champion"])
        .fails(3, "champion");
    // 4: conflict.
    cli.run(&["model", "create", "fraud"])
        .fails(4, "already exists");
    assert_eq!(cli.run(&["model", "create", "fraud", "--exist-ok"]).code, 0);
    // 5: refused by the transition table…
    cli.run(&["stage", "transition", "fraud/1", "staging"]);
    cli.run(&["stage", "transition", "fraud/1", "production"])
        .fails(5, "cannot move fraud/1 from staging to production");
    // …and by a gate (set through the library: the CLI does not edit gates).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let reg = modelreg::Registry::open_local(&cli.registry).await.unwrap();
        reg.acting_as(modelreg::Actor::new("admin").unwrap())
            .set_gates(
                "fraud",
                modelreg::Stage::Production,
                vec![modelreg::GateSpec::Approvals {
                    required: 1,
                    from: Default::default(),
                }],
            )
            .await
            .unwrap();
    });
    cli.run(&["stage", "transition", "fraud/1", "validation"]);
    cli.run(&["stage", "promote", "fraud/1"])
        .fails(5, "refused");
    let approved = cli.run(&[
        "--actor",
        "bob@example.com",
        "stage",
        "approve",
        "fraud/1",
        "production",
    ]);
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    let promoted = cli.run(&["stage", "promote", "fraud/1"]);
    assert_eq!(promoted.code, 0, "{}", promoted.stderr);
    // …and by a production version's fixed tags and metrics.
    cli.run(&["version", "tag", "fraud/1", "team=x"])
        .fails(5, "fraud/1 is in production: its tags cannot be changed");
    cli.run(&["version", "metrics", "fraud@production", "f1=0.1"])
        .fails(
            5,
            "its metrics cannot be changed without an explicit override (add --override REASON",
        );
    let overridden = cli.json(&[
        "version",
        "tag",
        "fraud/1",
        "team=x",
        "--override",
        "missed at promotion",
    ]);
    assert_eq!(overridden["tags"]["team"], "x");
    cli.run(&["version", "describe", "fraud/1", "the fraud scorer"])
        .fails(
            5,
            "fraud/1 is in production: its description cannot be changed",
        );
    let described = cli.json(&[
        "version",
        "describe",
        "fraud@production",
        "the fraud scorer",
        "--override",
        "described after promotion",
    ]);
    assert_eq!(described["description"], "the fraud scorer");
    let human = cli.run(&[
        "version",
        "describe",
        "fraud/1",
        "",
        "--override",
        "cleared again",
    ]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stderr.contains("fraud/1 description: (cleared)"),
        "{}",
        human.stderr
    );
    let trail = cli.json(&["history", "fraud", "--kind", "version_description_set"]);
    assert_eq!(trail["items"].as_array().unwrap().len(), 2, "{trail}");
    assert_eq!(
        trail["items"][1]["event"]["overridden"], "described after promotion",
        "{trail}"
    );
    assert_eq!(trail["items"][0]["actor"], trail["items"][1]["actor"]);
    // A scan: `weights.bin` is named as a pickle but its bytes are none.
    let scan = cli.json(&["version", "scan", "fraud/1"]);
    assert_eq!(scan["data_files"], 2, "{scan}");
    assert_eq!(scan["files"][0]["path"], "weights.bin", "{scan}");
    assert_eq!(
        scan["files"][0]["refused"]["kind"], "unknown_opcode",
        "{scan}"
    );
    // 6: integrity. Flip a byte of the weights' blob in the store.
    let digest =
        cli.json(&["version", "show", "fraud/1", "--files"])["manifest"]["files"][2]["digest"]
            .as_str()
            .unwrap()
            .to_owned();
    let blob = find_blob(
        Path::new(&cli.registry),
        digest.trim_start_matches("blake3:"),
    );
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    make_writable(&blob);
    std::fs::write(&blob, bytes).unwrap();
    cli.run(&["version", "verify", "fraud/1"])
        .fails(6, "weights.bin");
    let dest = cli.path("out");
    cli.run(&["version", "fetch", "fraud/1", dest.to_str().unwrap()])
        .fails(6, "weights.bin");
    assert!(!dest.exists(), "a failed fetch left {}", dest.display());
    let check = cli.run(&["check"]);
    assert_eq!(check.code, 6, "{}", check.stderr);
    assert!(check.stdout.contains("problem:"), "{}", check.stdout);
    let check = cli.run(&["--json", "check"]);
    assert_eq!(check.code, 6);
    let report: Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 1);
}

/// The file holding blob `hex` below a local registry.
fn find_blob(root: &Path, hex: &str) -> PathBuf {
    let mut stack = vec![root.join("artifacts")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()) == Some(hex) {
                return p;
            }
        }
    }
    panic!("no blob {hex} below {}", root.display());
}

fn make_writable(p: &Path) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm).unwrap();
}

#[test]
fn json_errors_are_one_object_on_stderr() {
    let cli = one_version();
    let r = cli.run(&["--json", "version", "show", "fraud/9"]);
    assert_eq!(r.code, 3);
    assert_eq!(r.stdout, "");
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["error"]["kind"], "not_found");
    assert_eq!(e["error"]["exit_code"], 3);
    assert!(e["error"]["message"].as_str().unwrap().contains("fraud"));
}

#[test]
fn hostile_input_is_one_line_and_writes_nothing() {
    let cli = one_version();
    let before = cli.events("fraud");
    let src = cli.artifact("src2", 100, 9);
    let outside = cli.path("secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    std::os::unix::fs::symlink(&outside, Path::new(&src).join("escape")).unwrap();
    let clean = cli.artifact("clean", 100, 10);
    for (args, needle) in [
        (vec!["model", "create", "../etc"], "invalid"),
        (vec!["model", "create", "Fraud"], "invalid"),
        (vec!["model", "create", ""], "invalid"),
        (vec!["version", "show", "fraud/0"], "invalid"),
        (vec!["version", "show", "fraud@@x"], "invalid"),
        (vec!["version", "show", "fraud/1/2"], "invalid"),
        (
            vec!["version", "register", "fraud", &clean, "-m", "auc"],
            "KEY=VALUE",
        ),
        (
            vec!["version", "register", "fraud", &clean, "-m", "auc=high"],
            "not a number",
        ),
        (
            vec!["version", "register", "fraud", &clean, "-m", "auc=NaN"],
            "finite",
        ),
        (
            vec!["version", "register", "fraud", &clean, "-m", "a uc=1"],
            "invalid",
        ),
        (
            vec!["version", "register", "fraud", &clean, "--semver", "one"],
            "semver",
        ),
        (
            vec![
                "version",
                "register",
                "fraud",
                &clean,
                "--parent",
                "fraud/1=cousin",
            ],
            "relation",
        ),
        (
            vec!["version", "register", "fraud", &clean, "--tag", "=x"],
            "KEY=VALUE",
        ),
        (
            vec!["version", "register", "fraud", &src, "--no-env"],
            "outside the source directory",
        ),
        (
            vec!["version", "register", "fraud", "/no/such/dir"],
            "/no/such/dir",
        ),
        (vec!["stage", "transition", "fraud/1", "prod"], "stage"),
        (
            vec!["split", "set", "fraud", "@production=ninety"],
            "weight",
        ),
        (vec!["split", "set", "fraud", "nonsense=1"], "invalid"),
        (vec!["history", "fraud", "--since", "yesterday"], "--since"),
        (vec!["gc", "--grace", "1y"], "--grace"),
        (vec!["alias", "set", "fraud/1", "Champ"], "invalid"),
    ] {
        let r = cli.run(&args);
        assert!(
            r.code == 2 || r.code == 1,
            "{args:?}: exit {} ({})",
            r.code,
            r.stderr
        );
        r.fails(r.code, needle);
        assert!(r.stderr.starts_with("modelreg: "), "{args:?}: {}", r.stderr);
    }
    assert_eq!(cli.events("fraud"), before, "hostile input wrote an event");
    // A URL of an unknown scheme, and no registry at all.
    let r = Run::of(
        bin()
            .args(["--registry", "ftp://host/x", "model", "list"])
            .output()
            .unwrap(),
    );
    r.fails(2, "ftp://host/x");
    let r = Run::of(bin().args(["model", "list"]).output().unwrap());
    r.fails(2, "MODELREG_REGISTRY");
    // A read on a directory that holds no registry creates nothing there.
    let empty = cli.path("empty");
    let r = Run::of(
        bin()
            .args(["--registry", empty.to_str().unwrap(), "model", "list"])
            .output()
            .unwrap(),
    );
    r.fails(3, "no such directory");
    // Nor does a write that needs an existing model.
    let r = Run::of(
        bin()
            .env("MODELREG_ACTOR", "alice")
            .args([
                "--registry",
                empty.to_str().unwrap(),
                "stage",
                "rollback",
                "fraud",
            ])
            .output()
            .unwrap(),
    );
    r.fails(3, "no such directory");
    assert!(!empty.exists());
}

// ----- tables ----------------------------------------------------------------------

/// Replaces times (`2026-12-03 14:05:09Z`) with `YYYY-MM-DD hh:mm:ssZ`, which
/// has the same width, so a snapshot still shows the alignment.
fn normalize(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    let is_time = |w: &[u8]| {
        w.len() == 20
            && w.iter().enumerate().all(|(j, c)| match j {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
    };
    while i < b.len() {
        if i + 20 <= b.len() && is_time(&b[i..i + 20]) {
            out.push_str("YYYY-MM-DD hh:mm:ssZ");
            i += 20;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[test]
fn tables_match_their_snapshots() {
    let cli = one_version();
    let src = cli.artifact("v2", 2048, 8);
    cli.run(&[
        "version", "register", "fraud", &src, "-m", "auc=0.95", "--semver", "2.0.0", "--no-env",
    ]);
    cli.run(&["alias", "set", "fraud/2", "champion"]);
    cli.run(&[
        "stage",
        "transition",
        "fraud/2",
        "staging",
        "-r",
        "candidate",
    ]);
    let list = cli.run(&["version", "list", "fraud"]);
    assert_eq!(
        normalize(&list.stdout),
        "\
VERSION  SEMVER  STAGE    CREATED               BY                 SIZE     METRICS
1                none     YYYY-MM-DD hh:mm:ssZ  alice@example.com  1014 B   auc=0.9
2        2.0.0   staging  YYYY-MM-DD hh:mm:ssZ  alice@example.com  2.0 KiB  auc=0.95
"
    );
    let models = cli.run(&["model", "list"]);
    assert_eq!(
        normalize(&models.stdout),
        "\
MODEL  VERSIONS  PRODUCTION  LATEST  ALIASES     UPDATED
fraud  2                     2       champion=2  YYYY-MM-DD hh:mm:ssZ
"
    );
    let aliases = cli.run(&["alias", "list", "fraud"]);
    assert_eq!(
        normalize(&aliases.stdout),
        "\
ALIAS     VERSION  PROTECTED  SET                   BY
champion  2        no         YYYY-MM-DD hh:mm:ssZ  alice@example.com
"
    );
    let history = cli.run(&["history", "fraud", "--limit", "2"]);
    assert_eq!(
        normalize(&history.stdout),
        "\
SEQ  TIME                  ACTOR              EVENT          DETAIL
5    YYYY-MM-DD hh:mm:ssZ  alice@example.com  stage_changed  fraud/2 none → staging (candidate)
4    YYYY-MM-DD hh:mm:ssZ  alice@example.com  alias_set      fraud/2 alias champion
"
    );
    let shown = cli.run(&["version", "show", "fraud/2"]);
    let shown = normalize(&shown.stdout);
    for line in [
        "version:  fraud/2\n",
        "semver:   2.0.0\n",
        "stage:    staging since YYYY-MM-DD hh:mm:ssZ\n",
        "created:  YYYY-MM-DD hh:mm:ssZ by alice@example.com\n",
        "size:     2.0 KiB in 3 files\n",
        "metrics:  auc=0.95\n",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }
    // Production, a split, routing, the model, a diff and a file listing.
    assert_eq!(cli.run(&["stage", "promote", "fraud/1"]).code, 0);
    let split = cli.run(&[
        "split",
        "set",
        "fraud",
        "@production=90",
        "/2=10",
        "--salt",
        "s1",
    ]);
    assert_eq!(split.code, 0, "{}", split.stderr);
    assert_eq!(
        cli.run(&["split", "show", "fraud"]).stdout,
        "\
TARGET       WEIGHT  SHARE  VERSION
@production  90      90.0%  1
/2           10      10.0%  2
"
    );
    assert_eq!(
        cli.run(&["route", "fraud", "user-1"]).stdout,
        "fraud/2\t/2 (traffic split)\n"
    );
    assert_eq!(
        normalize(&cli.run(&["model", "show", "fraud"]).stdout),
        "\
model:         fraud
created:       YYYY-MM-DD hh:mm:ssZ by alice@example.com
updated:       YYYY-MM-DD hh:mm:ssZ
versions:      2
production:    1
aliases:       champion=2
in staging:    2
in production: 1
traffic split: @production=90, /2=10
"
    );
    assert_eq!(
        cli.run(&["version", "diff", "fraud/1", "fraud/2"]).stdout,
        "\
a: fraud/1  blake3:091119cbf5693e7c2a9d743f57d6b9d96644ea8739129e885cc6a104229b5603
b: fraud/2 (2.0.0)  blake3:8d0b4e25ef64926c9cd56d1c535a2a940f549644d6dd2091baf86f93bd0ed300
verdict: inconclusive (0 improved, 0 regressed, 0 unchanged, 1 other)

  metric    a     b  change  relative  verdict  goal
  auc     0.9  0.95   +0.05     +5.6%  changed  -

files: 1 unchanged, 2 changed, 0 added, 0 removed; b shares 4 B of its 2.0 KiB with a, 0.2%
     file              a        b
  ~  config.json    10 B     10 B
  ~  weights.bin  1000 B  2.0 KiB
"
    );
    assert_eq!(
        normalize(&cli.run(&["version", "show", "fraud/1", "--files"]).stdout),
        "\
version:  fraud/1
stage:    production since YYYY-MM-DD hh:mm:ssZ
created:  YYYY-MM-DD hh:mm:ssZ by alice@example.com
artifact: blake3:091119cbf5693e7c2a9d743f57d6b9d96644ea8739129e885cc6a104229b5603
size:     1014 B in 3 files
metrics:  auc=0.9
reached:  staging, validation, production

PATH                 SIZE    DIGEST
config.json          10 B    blake3:cef77336ecbdef469f389269b8327f8b2c6357763a3e4a1f18515dea612b4754
tokenizer/vocab.txt  4 B     blake3:41153ec5e22e7e1d208eec929ef45dcd31fd71283799b0615bb8753491715e5b
weights.bin          1000 B  blake3:2ef9db18179dbd2d06aed9a7749032b5a6fdf2234779a70be5be94690b45067d
"
    );
}

// ----- actor, help, completions, Ctrl-C --------------------------------------------

#[test]
fn the_actor_defaults_to_git_then_the_os_user() {
    let cli = Cli::local();
    let gitconfig = cli.path("gitconfig");
    std::fs::write(&gitconfig, "[user]\n\temail = ops@example.com\n").unwrap();
    let create = |model: &str, git: &Path, user: &str| -> Value {
        let r = Run::of(
            bin()
                .env("MODELREG_REGISTRY", &cli.registry)
                .env("GIT_CONFIG_GLOBAL", git)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("USER", user)
                .current_dir(cli.tmp.path())
                .args(["--json", "model", "create", model])
                .output()
                .unwrap(),
        );
        r.json()
    };
    assert_eq!(
        create("a", &gitconfig, "os-user")["created_by"],
        "ops@example.com"
    );
    assert_eq!(
        create("b", Path::new("/dev/null"), "os-user")["created_by"],
        "os-user"
    );
    // --actor wins over the environment.
    let r = cli.run(&["--json", "--actor", "ci: nightly", "model", "create", "c"]);
    assert_eq!(r.json()["created_by"], "ci: nightly");
}

#[test]
fn help_documents_exit_codes_and_completions_are_generated() {
    let help = Run::of(bin().arg("--help").output().unwrap());
    assert_eq!(help.code, 0);
    for needle in [
        "Exit codes:",
        "130",
        "MODELREG_REGISTRY",
        "version",
        "stage",
        "gc",
    ] {
        assert!(help.stdout.contains(needle), "--help lacks {needle:?}");
    }
    let sub = Run::of(
        bin()
            .args(["version", "register", "--help"])
            .output()
            .unwrap(),
    );
    assert!(sub.stdout.contains("--metric"), "{}", sub.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let c = Run::of(bin().args(["completions", shell]).output().unwrap());
        assert_eq!(c.code, 0, "{}", c.stderr);
        assert!(c.stdout.contains("modelreg"), "{shell}");
    }
}

/// `big/`: 48 files of 4 MiB, long enough to copy that a Ctrl-C lands mid-way.
fn big_source(cli: &Cli) -> PathBuf {
    let src = cli.path("big");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..48u8 {
        let data: Vec<u8> = (0..4 << 20).map(|j: u32| (j as u8) ^ i).collect();
        std::fs::write(src.join(format!("shard-{i:02}.bin")), data).unwrap();
    }
    src
}

/// Sends SIGINT (a Ctrl-C) to `child` and waits for it.
fn interrupt(child: std::process::Child) -> Run {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    Run::of(child.wait_with_output().unwrap())
}

#[test]
fn ctrl_c_during_a_fetch_leaves_nothing() {
    let cli = Cli::local();
    let src = big_source(&cli);
    let r = cli.run(&[
        "version",
        "register",
        "big",
        src.to_str().unwrap(),
        "--no-env",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let parent = cli.path("out");
    std::fs::create_dir_all(&parent).unwrap();
    let dest = parent.join("model");
    let child = bin()
        .env("MODELREG_REGISTRY", &cli.registry)
        .args(["version", "fetch", "big/1", dest.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the fetch is under way: its staging directory exists.
    let started = std::time::Instant::now();
    while std::fs::read_dir(&parent).unwrap().next().is_none() {
        assert!(started.elapsed().as_secs() < 30, "the fetch never started");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let r = interrupt(child);
    if r.code == 0 {
        // The fetch won the race: then it must be whole.
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 48);
        return;
    }
    r.fails(130, "nothing was written");
    let left: Vec<_> = std::fs::read_dir(&parent).unwrap().collect();
    assert!(left.is_empty(), "Ctrl-C left {left:?}");
}

#[test]
fn ctrl_c_during_a_register_registers_nothing_and_says_so() {
    let cli = Cli::local();
    let src = big_source(&cli);
    cli.run(&["model", "create", "big"]);
    let child = bin()
        .env("MODELREG_REGISTRY", &cli.registry)
        .env("MODELREG_ACTOR", "alice@example.com")
        .args([
            "version",
            "register",
            "big",
            src.to_str().unwrap(),
            "--no-env",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once blobs are being written: the store's blob directory fills.
    let blobs = Path::new(&cli.registry).join("artifacts");
    let started = std::time::Instant::now();
    while count_files(&blobs) < 2 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the register never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let r = interrupt(child);
    let versions = cli.json(&["version", "list", "big"])["total"]
        .as_u64()
        .unwrap();
    if r.code == 0 {
        // The register won the race: then the version is whole.
        assert_eq!(versions, 1);
        return;
    }
    r.fails(130, "no version of big was registered");
    assert_eq!(versions, 0);
    assert_eq!(r.stdout, "");
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

/// On a terminal (a pty from util-linux `script`, in Debian's essential
/// `bsdutils`) a register of one 24 MiB file draws a bar that moves through
/// intermediate byte counts; through a pipe, stderr carries no bar at all.
#[test]
fn a_terminal_gets_a_moving_progress_bar_and_a_pipe_gets_none() {
    let cli = Cli::local();
    let src = cli.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("weights.bin"), data).unwrap();
    let command = format!(
        "'{}' version register m '{}' --no-env",
        env!("CARGO_BIN_EXE_modelreg"),
        src.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("MODELREG_REGISTRY", &cli.registry)
        .env("MODELREG_ACTOR", "alice")
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs the binary on a pty");
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert!(out.status.success(), "{screen}");
    let mut shown: Vec<&str> = screen
        .split('\n')
        .filter(|l| l.contains("registering"))
        .filter_map(|l| {
            // `… [=====>   ] 10.00 MiB/24.00 MiB 85 MiB/s eta 0s`: the bytes done.
            let end = l.find(" MiB/24.00 MiB")?;
            l[..end].split_whitespace().last()
        })
        .collect();
    shown.sort();
    shown.dedup();
    assert!(
        shown.len() >= 3 && shown.contains(&"24.00"),
        "the bar did not move through the file: {shown:?}\n{screen}"
    );
    // The same on a pipe: the reference on stdout, one message, no bar.
    let piped = cli.run(&[
        "version",
        "register",
        "m",
        src.to_str().unwrap(),
        "--no-env",
    ]);
    assert_eq!((piped.code, piped.stdout.as_str()), (0, "m/2\n"));
    assert!(!piped.stderr.contains("registering"), "{}", piped.stderr);
    assert_eq!(piped.stderr.lines().count(), 1, "{}", piped.stderr);
}

/// `version push` and `version pull` against the real OCI registry of
/// tests/oci.rs: the digest on stdout, `--json` reports, a pulled version whose
/// files are the pushed ones, and the exit codes of an unreachable registry (7)
/// and a tag that does not exist (3).
#[cfg(feature = "oci")]
#[test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
fn version_push_and_pull_through_an_oci_registry() {
    let cli = one_version();
    let host = std::env::var("MODELREG_TEST_OCI_REGISTRY").unwrap();
    let reference = format!("{host}/modelreg-cli/{}:v1", common::servers::unique_name());
    let r = cli.run(&["version", "push", "fraud", "1", &reference, "--plain-http"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let digest = r.stdout.trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let pushed = cli.json(&[
        "version",
        "push",
        "fraud",
        "@latest",
        &reference,
        "--plain-http",
    ]);
    assert_eq!(pushed["digest"], digest.as_str());
    assert_eq!(pushed["layers"], 3);
    assert_eq!(pushed["layers_present"], 3);

    let other = Cli::local();
    let pulled = other.json(&["version", "pull", &reference, "copy", "--plain-http"]);
    assert_eq!(pulled["digest"], digest.as_str());
    assert_eq!(pulled["version"]["model"], "copy");
    assert_eq!(pulled["version"]["tags"]["oci.source"], reference.as_str());
    let src = cli.json(&["version", "show", "fraud/1"]);
    assert_eq!(pulled["version"]["artifact"], src["artifact"]);
    let r = other.run(&["version", "pull", &reference, "copy", "--plain-http"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "copy/2");

    other
        .run(&[
            "version",
            "pull",
            "127.0.0.1:9/modelreg/fraud:v1",
            "copy",
            "--plain-http",
        ])
        .fails(7, "unreachable");
    let missing = reference.replace(":v1", ":missing");
    other
        .run(&["version", "pull", &missing, "copy", "--plain-http"])
        .fails(3, "not found");
    let e = other.run(&[
        "--json",
        "version",
        "pull",
        &missing,
        "copy",
        "--plain-http",
    ]);
    assert_eq!(e.code, 3);
    assert!(e.stderr.contains("\"kind\":\"not_found\""), "{}", e.stderr);
}

/// `version purge` and `model retain`: a dry run by default that writes
/// nothing, `--apply` that purges with one event each, protected versions kept
/// and named, a purged version's fetch failing with exit 8, and `gc` then
/// freeing the bytes.
#[test]
fn purge_and_retain_from_the_shell() {
    let cli = Cli::local();
    for seed in 1..=5u8 {
        let src = cli.artifact(&format!("src{seed}"), 4000, seed);
        let r = cli.run(&["version", "register", "fraud", &src, "--no-env"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = cli.run(&["stage", "promote", "fraud/1", "--reason", "first"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // By hand: a reason is required; a protected version is refused (exit 5).
    let r = cli.run(&["version", "purge", "fraud/2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    cli.run(&["version", "purge", "fraud/1", "--reason", "tidy"])
        .fails(5, "protected");
    let v = cli.json(&["version", "purge", "fraud/2", "--reason", "diverged"]);
    assert_eq!(v["number"], 2);
    assert_eq!(v["purged"]["reason"], "diverged");
    assert_eq!(v["purged"]["by"], "alice@example.com");
    cli.run(&["version", "fetch", "fraud/2", "out"])
        .fails(8, "purged");
    assert!(!cli.path("out").exists());
    let shown = cli.run(&["version", "show", "fraud/2"]);
    assert!(shown.stdout.contains("purged"), "{}", shown.stdout);

    // By policy: a dry run unless --apply; the limits are required.
    cli.run(&["model", "retain", "fraud"])
        .fails(2, "--keep-last");
    let events = cli.events("fraud");
    let dry = cli.json(&["model", "retain", "fraud", "--keep-last", "2"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["purged"], serde_json::json!([3]));
    assert_eq!(dry["protected"][0]["version"], 1);
    assert_eq!(dry["protected"][0]["protections"][0]["kind"], "stage");
    assert_eq!(cli.events("fraud"), events, "a dry run writes nothing");
    let table = cli.run(&["model", "retain", "fraud", "--keep-last", "2"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("would purge"), "{}", table.stdout);
    assert!(
        table.stdout.contains("kept: it is in production"),
        "{}",
        table.stdout
    );
    assert!(table.stderr.contains("--apply"), "{}", table.stderr);
    let done = cli.json(&[
        "model",
        "retain",
        "fraud",
        "--keep-last",
        "2",
        "--older-than",
        "0s",
        "--apply",
    ]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["purged"], serde_json::json!([3]));
    assert_eq!(cli.events("fraud"), events + 1);
    let young = cli.json(&[
        "model",
        "retain",
        "fraud",
        "--keep-last",
        "0",
        "--older-than",
        "30d",
    ]);
    assert_eq!(young["purged"], serde_json::json!([]));

    // gc frees what only versions 2 and 3 used: two manifests and two weights
    // files (their config.json differ too); vocab.txt is shared and stays.
    let gc = cli.json(&["gc", "--grace", "0s"]);
    assert_eq!(gc["deleted"].as_array().unwrap().len(), 6, "{gc}");
    assert!(gc["bytes_freed"].as_u64().unwrap() > 8000);
    let r = cli.run(&["check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli.run(&["version", "fetch", "fraud/4", "out4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let help = Run::of(bin().args(["model", "retain", "--help"]).output().unwrap());
    for needle in ["--keep-last", "--older-than", "--apply", "dry run", "keep"] {
        assert!(
            help.stdout.contains(needle),
            "retain --help lacks {needle:?}"
        );
    }
    let help = Run::of(bin().arg("--help").output().unwrap());
    assert!(help.stdout.contains("8    purged"), "{}", help.stdout);
}

/// `version sign`, `attach`, `signatures` and `verify --key`: signatures are
/// recorded with the actor, listed and exported, counted against the keys
/// given, and a policy not met exits 9 after printing what was found.
#[test]
fn signing_and_verifying_from_the_command_line() {
    use modelreg::signing::SigningKey;
    let cli = one_version();
    let (trainer, outsider) = (SigningKey::generate(), SigningKey::generate());
    for (name, key) in [("trainer", &trainer), ("outsider", &outsider)] {
        std::fs::write(cli.path(&format!("{name}.pem")), key.to_pem()).unwrap();
        std::fs::write(
            cli.path(&format!("{name}.pub.pem")),
            key.public_key().to_pem(),
        )
        .unwrap();
    }
    // Unsigned: a policy of one key is not met.
    cli.run(&["version", "verify", "fraud/1", "--key", "trainer.pub.pem"])
        .fails(9, "0 trusted key(s) signed, 1 required");
    let before = cli.events("fraud");
    let signed = cli.json(&[
        "version",
        "sign",
        "fraud/1",
        "--key",
        "trainer.pem",
        "--reason",
        "trained",
    ]);
    assert_eq!(signed["key"], trainer.id().as_str());
    assert_eq!(signed["by"], "alice@example.com");
    assert_eq!(signed["reason"], "trained");
    assert_eq!(cli.events("fraud"), before + 1);

    // Listed, and exported as files model_signing reads.
    let list = cli.json(&["version", "signatures", "fraud/1", "--export", "sigs"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let exported = cli.path(&format!("sigs/{}.sig.json", trainer.id()));
    let bundle = std::fs::read(&exported).unwrap();
    assert!(
        String::from_utf8_lossy(&bundle).contains("application/vnd.dev.sigstore.bundle.v0.3+json")
    );
    let table = cli.run(&["version", "signatures", "fraud/1"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains(trainer.id().short()),
        "{}",
        table.stdout
    );

    // Verified by file or by key id; two keys required but one signed: 7.
    let ok = cli.json(&["version", "verify", "fraud/1", "--key", "trainer.pub.pem"]);
    assert_eq!(ok["signatures"]["trusted"][0], trainer.id().as_str());
    assert_eq!(ok["files"]["files"], 3);
    cli.run(&[
        "version",
        "verify",
        "fraud/1",
        "--key",
        trainer.id().as_str(),
    ]);
    let r = cli.run(&[
        "version",
        "verify",
        "fraud/1",
        "--key",
        "trainer.pub.pem",
        "--key",
        "outsider.pub.pem",
        "--min",
        "2",
    ]);
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(r.stdout.contains("valid, trusted"), "{}", r.stdout);
    // A bundle attached with the wrong key: 7, nothing recorded; with its key:
    // the same bundle again is a conflict (4).
    let before = cli.events("fraud");
    let exported = exported.display().to_string();
    cli.run(&[
        "version",
        "attach",
        "fraud/1",
        &exported,
        "--key",
        "outsider.pub.pem",
    ])
    .fails(9, "not among the keys given");
    cli.run(&[
        "version",
        "attach",
        "fraud/1",
        &exported,
        "--key",
        "trainer.pub.pem",
    ])
    .fails(4, "already exists");
    assert_eq!(cli.events("fraud"), before);
    // Not a key: usage.
    cli.run(&["version", "verify", "fraud/1", "--key", "nope"])
        .fails(2, "neither a readable PEM file nor a key id");
    cli.run(&["version", "sign", "fraud/1", "--key", "trainer.pub.pem"])
        .fails(2, "private key");
}
