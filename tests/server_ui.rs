//! The web UI (`/ui/`) over a real socket: each page and what matters on it,
//! filters and paging, escaping of hostile text, sign-in, and (with
//! `MODELREG_TEST_CHROMIUM`, `MODELREG_TEST_PYTHON` and `MODELREG_TEST_AXE`,
//! set by `.ci/run`) every page in headless Chromium driven by Playwright:
//! HTML validity, axe-core's accessibility rules, keyboard use, no sideways
//! scrolling at a laptop and a phone width, and a screenshot of each.
//!
//! The page checks run on a local registry and, with `MODELREG_TEST_S3_URL`
//! (moto in CI), on the same registry built on S3: one set of checks, one
//! test per backend (`local::…`, `s3::…`), see [`on_each_backend`].

mod common;

use std::path::{Path, PathBuf};

use common::http::{Reply, Running, request, screenshot_dir, start};
use common::rest::{ADMIN, APPROVER, READER, WRITER, get, payload, server};
use modelreg::server::ServerOptions;
use modelreg::{
    Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, GateSpec, MetricSpec, NewVersion,
    Registry, Relation, SetAlias, Stage, Tags,
};

/// A dataset name longer than a lineage node is wide, with wide letters.
const LONG_DATASET: &str = "Customer-Transactions-With-Chargebacks-WWW-Full-Export";

/// Text the pages must show as text, never as markup.
const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";

/// Where a test's registry is stored.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// A local directory (a temp dir).
    Local,
    /// A fresh prefix on the S3 server of `MODELREG_TEST_S3_URL`.
    S3,
}

/// An empty registry on `backend`, and the temp dir that holds it (if local).
async fn open(backend: Backend) -> (Option<tempfile::TempDir>, Registry) {
    match backend {
        Backend::Local => {
            let dir = tempfile::tempdir().expect("a temp dir");
            let registry = Registry::open_local(dir.path().join("reg"))
                .await
                .expect("open");
            (Some(dir), registry)
        }
        Backend::S3 => {
            let url = common::servers::Server::S3.unique_url();
            let registry = Registry::open_url(&url)
                .await
                .unwrap_or_else(|e| panic!("open {url}: {e}"));
            (None, registry)
        }
    }
}

/// A registry on `backend`: `fraud` (description, tags, actors, reasons and a
/// dataset carrying the payloads) with v1 in production, v2 better in
/// staging, v3 worse; `student` v1 distilled from fraud v2 (and evaluated on
/// fraud's payload dataset), v2 fine-tuned from it; `many` with 120
/// versions; `empty` with none.
async fn seeded(backend: Backend) -> (Option<tempfile::TempDir>, Registry) {
    let (dir, registry) = open(backend).await;
    let ci = registry.acting_as(Actor::new("ci@example.com").expect("actor"));
    let mut model_tags = Tags::new();
    model_tags.insert("team".parse().expect("key"), "risk".to_owned());
    model_tags.insert("note".parse().expect("key"), SCRIPT.to_owned());
    let mut create = CreateModel::new()
        .description(format!("Card fraud {IMG}"))
        .metric("auc", MetricSpec::maximize().with_tolerance(0.005))
        .metric("eval/loss", MetricSpec::minimize());
    for (k, v) in &model_tags {
        create = create.tag(k.as_str(), v.clone());
    }
    ci.create_model("fraud", create).await.expect("create");
    for (i, (auc, loss)) in [(0.90, 0.30), (0.93, 0.28), (0.85, 0.35)]
        .into_iter()
        .enumerate()
    {
        let files = ArtifactSource::files([
            ("model.bin", payload(64 << 10, i as u8)),
            (
                "config.json",
                format!(r#"{{"layers":{}}}"#, i + 2).into_bytes(),
            ),
        ])
        .expect("files");
        let v = NewVersion::new()
            .semver(format!("1.{i}.0").as_str())
            .metric("auc", auc)
            .metric("eval/loss", loss)
            .metric("f1@0.5", 0.7 + i as f64 / 100.0)
            .param("lr", 0.001 * (i + 1) as f64)
            .param("optimizer", format!("adam {SCRIPT}"))
            .code_commit(format!("{:040x}", i + 1))
            .dataset(
                DatasetRef::new(format!("cards {IMG}"), DatasetRole::Train)
                    .version(format!("2026-0{}", i + 1)),
            )
            .tag("run", format!("r{i} {SCRIPT}"))
            .description(format!("candidate {i} {IMG}"));
        ci.register("fraud", files, v).await.expect("register");
    }
    // v3 is signed, scanned and described again by people whose names and
    // reasons carry the payloads.
    let signer = registry.acting_as(Actor::new(format!("signer {IMG}")).expect("any actor text"));
    signer
        .sign_version(
            "fraud/3",
            &modelreg::signing::SigningKey::generate(),
            format!("evaluated {SCRIPT}"),
        )
        .await
        .expect("sign");
    signer.scan_formats("fraud/3").await.expect("scan");
    ci.set_version_description("fraud/3", format!("retrained candidate {IMG}"))
        .await
        .expect("describe");
    let hostile = registry.acting_as(Actor::new(SCRIPT).expect("any actor text"));
    hostile
        .promote_to("fraud/1", Stage::Production, format!("ship it {IMG}"))
        .await
        .expect("promote");
    ci.transition("fraud/2", Stage::Staging, "try")
        .await
        .expect("stage");
    ci.set_alias("fraud/1", "champion", SetAlias::new())
        .await
        .expect("alias");
    ci.create_model("student", CreateModel::new())
        .await
        .expect("create");
    let distilled = NewVersion::new()
        .parent("fraud/2", Relation::DistilledFrom)
        .dataset(DatasetRef::new(format!("cards {IMG}"), DatasetRole::Eval).version("2026-02"));
    ci.register(
        "student",
        ArtifactSource::bytes("s.bin", "s1").expect("bytes"),
        distilled,
    )
    .await
    .expect("register");
    let tuned = NewVersion::new()
        .parent("student/1", Relation::FineTunedFrom)
        .dataset(DatasetRef::new(LONG_DATASET, DatasetRole::Train).version("2026-03"));
    ci.register(
        "student",
        ArtifactSource::bytes("s.bin", "s2").expect("bytes"),
        tuned,
    )
    .await
    .expect("register");
    ci.create_model(
        "many",
        CreateModel::new().metric("acc", MetricSpec::maximize()),
    )
    .await
    .expect("create");
    for i in 0..120u32 {
        let files = ArtifactSource::bytes("m.bin", i.to_le_bytes().to_vec()).expect("bytes");
        let v = NewVersion::new()
            .metric("acc", 0.5 + f64::from(i % 10) / 100.0)
            .tag("parity", if i % 2 == 0 { "even" } else { "odd" });
        ci.register("many", files, v).await.expect("register");
    }
    ci.create_model("empty", CreateModel::new())
        .await
        .expect("create");
    (dir, registry)
}

/// A page as the reader sees it; panics unless it is 200 HTML.
fn page(s: &Running, path: &str) -> String {
    let r = get(s, path, Some(READER));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{path}"
    );
    let html = r.text();
    assert_escaped(path, &html);
    html
}

/// The payloads never appear as markup.
fn assert_escaped(path: &str, html: &str) {
    for raw in ["<script", "<img", "onerror=alert(1)>"] {
        assert!(!html.contains(raw), "{path} has raw {raw:?}:\n{html}");
    }
}

/// How many rows the first table body of `html` has.
fn rows(html: &str) -> usize {
    let body = html
        .split_once("<tbody>")
        .and_then(|(_, rest)| rest.split_once("</tbody>"))
        .map(|(b, _)| b)
        .unwrap_or_default();
    body.matches("<tr").count()
}

/// The `href` of the link whose `rel` is `next`, unescaped.
fn next_link(html: &str) -> Option<String> {
    let (_, rest) = html.split_once("rel=\"next\" href=\"")?;
    Some(rest.split_once('"')?.0.replace("&amp;", "&"))
}

async fn the_models_page_lists_each_model_with_production_and_searches_name_and_tag(
    registry: Registry,
) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let html = page(&s, "/ui/");
        for name in ["fraud", "many", "empty"] {
            assert!(
                html.contains(&format!("href=\"/ui/models/{name}\"")),
                "{name}"
            );
        }
        assert!(html.contains("href=\"/ui/models/fraud/versions/1\">v1</a>"));
        assert!(html.contains("champion"));
        // The payloads are shown, as text.
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        let found = page(&s, "/ui/?q=team%3Drisk");
        assert!(found.contains("/ui/models/fraud\"") && !found.contains("/ui/models/many\""));
        let found = page(&s, "/ui/?q=man");
        assert!(found.contains("/ui/models/many\"") && !found.contains("/ui/models/fraud\""));
        assert!(page(&s, "/ui/?q=nothing-like-it").contains("No model matches."));
        // `/` leads to the UI.
        let r = get(&s, "/", Some(READER));
        assert!(matches!(r.status, 303 | 307 | 308), "{}", r.status);
        assert_eq!(r.header("location"), Some("/ui/"));
    })
    .await
    .expect("requests");
}

async fn the_model_page_charts_goal_metrics_and_filters_sorts_and_pages_versions(
    registry: Registry,
) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let html = page(&s, "/ui/models/fraud");
        assert_eq!(html.matches("<svg").count(), 2, "one chart per goal metric");
        assert!(html.contains("production v1 = 0.9"), "production marked");
        assert!(html.contains("auc ↑") && html.contains("eval/loss ↓"));
        assert!(
            html.contains("by ci@example.com (alias_set)"),
            "the last change names who made it and what it was"
        );
        assert_eq!(rows(&html), 3);
        let staging = page(&s, "/ui/models/fraud?stage=staging");
        assert_eq!(rows(&staging), 1);
        assert!(staging.contains("href=\"/ui/models/fraud/versions/2\""));
        let good = page(&s, "/ui/models/fraud?metric=auc&min=0.9");
        assert_eq!(rows(&good), 2, "auc ≥ 0.9: v1 and v2");
        let sorted = page(&s, "/ui/models/fraud?sort=auc&order=desc");
        let table = sorted.split_once("<tbody>").expect("a table").1;
        let order: Vec<usize> = ["v2<", "v1<", "v3<"]
            .iter()
            .map(|v| table.find(v).expect("each version"))
            .collect();
        assert!(order.is_sorted(), "best auc first");
        let odd = page(&s, "/ui/models/many?tag=parity%3Dodd");
        assert!(odd.contains("60 versions match"));
        // 120 versions, 50 a page: three pages, none repeated, none skipped.
        let mut seen = std::collections::BTreeSet::new();
        let mut path = "/ui/models/many".to_owned();
        let mut pages = 0;
        loop {
            let html = page(&s, &path);
            pages += 1;
            for chunk in html.split("href=\"/ui/models/many/versions/").skip(1) {
                let n: u64 = chunk
                    .split('"')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("n");
                if chunk.contains("</a></td>") {
                    seen.insert(n);
                }
            }
            match next_link(&html) {
                Some(next) => path = next,
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen.len(), 120);
        assert!(get(&s, "/ui/models/fraud?stage=bogus", Some(READER)).status == 400);
    })
    .await
    .expect("requests");
}

async fn the_version_page_compares_with_production_and_shows_a_regression_as_one(
    registry: Registry,
) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let worse = page(&s, "/ui/models/fraud/versions/3");
        assert!(worse.contains("▼ regressed"), "{worse}");
        assert!(worse.contains("class=\"verdict bad\""));
        assert!(worse.contains("<strong>worse</strong>"));
        assert!(!worse.contains("▲ improved"));
        let better = page(&s, "/ui/models/fraud/versions/2");
        assert!(better.contains("▲ improved") && better.contains("<strong>better</strong>"));
        // Provenance, hyperparameter differences, files with download links.
        assert!(better.contains("0000000000000000000000000000000000000002"));
        assert!(better.contains("Hyperparameters") && better.contains("lr"));
        let link = "/api/v1/models/fraud/versions/2/files/config.json";
        assert!(better.contains(&format!("href=\"{link}\"")));
        let file = get(&s, link, Some(READER));
        assert_eq!(file.status, 200);
        assert_eq!(file.body, br#"{"layers":3}"#);
        // Against a version picked; production itself has nothing to compare by default.
        let picked = page(&s, "/ui/models/fraud/versions/3?against=2");
        assert!(picked.contains("Against <a href=\"/ui/models/fraud/versions/2\">v2</a>"));
        assert!(page(&s, "/ui/models/fraud/versions/production").contains("pick another version"));
        assert!(page(&s, "/ui/models/fraud/versions/1.2.0").contains("v3"));
        // Signatures: the signer, key, hash, reason as text, and the bundle
        // the link names is the one REST serves; an unsigned version says so.
        assert!(worse.contains("Signatures (1)"), "{worse}");
        assert!(worse.contains("signer &quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(worse.contains("evaluated &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(worse.contains("<td>sha256</td>"), "{worse}");
        let (_, rest) = worse
            .split_once("/api/v1/models/fraud/versions/3/signatures/")
            .expect("a bundle link");
        let bundle = rest.split_once('"').expect("quoted").0;
        assert!(bundle.starts_with("blake3%3A"), "{bundle}");
        let r = get(
            &s,
            &format!("/api/v1/models/fraud/versions/3/signatures/{bundle}"),
            Some(READER),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("bundle json");
        assert_eq!(
            json["mediaType"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        assert!(better.contains("Signatures (0)") && better.contains("Not signed."));
        // The description as edited, and the scan's verdict.
        assert!(worse.contains("retrained candidate &quot;&gt;&lt;img"));
        assert!(worse.contains("Format scan") && worse.contains("model.bin"));
        assert!(better.contains("Not scanned."));
    })
    .await
    .expect("requests");
}

async fn the_history_page_filters_and_pages_the_audit_trail(registry: Registry) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let html = page(&s, "/ui/models/fraud/history");
        assert!(html.contains("stage changed") && html.contains("alias set"));
        assert!(
            html.contains("ship it &quot;&gt;&lt;img"),
            "reasons shown as text"
        );
        let moves = page(&s, "/ui/models/fraud/history?kind=stage_changed");
        assert!(rows(&moves) >= 2);
        assert_eq!(
            rows(&moves),
            moves.matches("<span class=\"kind\">stage changed").count()
        );
        let by = page(
            &s,
            "/ui/models/fraud/history?actor=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        );
        assert_eq!(rows(&by), 3, "the hostile actor's three moves: {by}");
        assert!(
            !by.contains("<span class=\"kind\">alias set"),
            "only that actor's events"
        );
        let v2 = page(&s, "/ui/models/fraud/history?version=2");
        assert_eq!(rows(&v2), 2, "registered, staged: {v2}");
        let first = page(&s, "/ui/models/many/history");
        assert_eq!(rows(&first), 50);
        let older = page(&s, &next_link(&first).expect("an older page"));
        assert_eq!(rows(&older), 50);
        assert!(older.contains("← Newest"));
        assert_eq!(
            get(&s, "/ui/models/fraud/history?kind=nope", Some(READER)).status,
            400
        );
        let described = page(&s, "/ui/models/fraud/history?kind=version_description_set");
        assert_eq!(rows(&described), 1, "{described}");
        assert!(described.contains("description set: "), "{described}");
        assert!(described.contains("retrained candidate &quot;&gt;&lt;img"));
    })
    .await
    .expect("requests");
}

async fn unknown_models_and_versions_are_404_pages(registry: Registry) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        for path in [
            "/ui/models/nope",
            "/ui/models/nope/history",
            "/ui/models/fraud/versions/99",
            "/ui/models/empty/versions/latest",
        ] {
            let r = get(&s, path, Some(READER));
            assert_eq!(r.status, 404, "{path}");
            assert!(
                r.header("content-type")
                    .is_some_and(|t| t.starts_with("text/html"))
            );
            assert!(r.text().contains("Not Found"), "{path}");
        }
        let r = get(&s, "/ui/models/Bad%20Name", Some(READER));
        assert_eq!(r.status, 400);
    })
    .await
    .expect("requests");
}

async fn the_lineage_page_draws_each_parent_and_child_and_links_them(registry: Registry) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let version = page(&s, "/ui/models/fraud/versions/2");
        assert!(version.contains("href=\"/ui/models/fraud/versions/2/lineage\""));
        let html = page(&s, "/ui/models/fraud/versions/2/lineage");
        assert_eq!(html.matches("<svg").count(), 1, "one picture");
        // Its child, its grandchild (two edges away) and its own dataset, each a
        // node linking to its page; edges say how.
        for (node, link) in [
            ("student v1", "/ui/models/student/versions/1"),
            ("student v2", "/ui/models/student/versions/2"),
            ("fraud v2", "/ui/models/fraud/versions/2"),
        ] {
            assert!(
                html.contains(&format!("<a href=\"{link}\">")),
                "{node}: {html}"
            );
            assert!(html.contains(&format!(">{node}</text>")), "{node} drawn");
        }
        assert!(
            html.contains(">distilled_from</text>") && html.contains(">fine_tuned_from</text>")
        );
        assert!(html.contains(">train</text>"));
        // The dataset node, its name (a payload) as text, links to its impact.
        assert!(html.contains("cards &quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("href=\"/ui/lineage/dataset?name=cards+%22%3E%3Cimg"));
        // Upstream: the child's page shows its parent and grandparent.
        let child = page(&s, "/ui/models/student/versions/2/lineage");
        assert!(child.contains(">student v1</text>") && child.contains(">fraud v2</text>"));
        // Depth 1: the grandparent is beyond, and the page says so.
        let near = page(&s, "/ui/models/student/versions/2/lineage?depth=1");
        assert!(!near.contains(">fraud v2</text>"), "{near}");
        assert!(near.contains("More lineage lies beyond 1 edge"));
        // A long dataset name: cut with an ellipsis in its node, whole in the
        // node's title (its accessible name) and in the table of edges.
        assert!(
            child.contains(&format!("<title>{LONG_DATASET}@2026-03</title>")),
            "{child}"
        );
        let drawn = child
            .split("url(#node-text)\">Customer-")
            .nth(1)
            .and_then(|rest| rest.split_once("</text>"))
            .map(|(text, _)| format!("Customer-{text}"))
            .expect("the dataset's node");
        assert!(
            drawn.ends_with('…') && LONG_DATASET.starts_with(drawn.trim_end_matches('…')),
            "{drawn}"
        );
        assert!(!child.contains(&format!(">{LONG_DATASET}</text>")));
        assert_eq!(
            get(&s, "/ui/models/fraud/versions/99/lineage", Some(READER)).status,
            404
        );
    })
    .await
    .expect("requests");
}

async fn the_dataset_page_lists_every_affected_version_and_production(registry: Registry) {
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let version = page(&s, "/ui/models/fraud/versions/2");
        let link = version
            .split("href=\"/ui/lineage/dataset?")
            .nth(1)
            .and_then(|rest| rest.split_once('"'))
            .map(|(q, _)| format!("/ui/lineage/dataset?{}", q.replace("&amp;", "&")))
            .expect("the dataset list links to what it affects");
        let html = page(&s, &link);
        // cards@2026-02 trained fraud v2 and evaluated student v1; student v2
        // descends from both.
        assert!(html.contains("3 versions</strong> in 2 models"), "{html}");
        for v in [
            "/ui/models/fraud/versions/2\"",
            "/ui/models/student/versions/1\"",
            "/ui/models/student/versions/2\"",
        ] {
            assert!(html.contains(v), "{v}");
        }
        assert!(!html.contains("/ui/models/fraud/versions/1\""), "v1 used another version");
        assert!(html.contains("none is in production"));
        // The other versions of the dataset are a click away.
        assert!(html.contains("2026-01") && html.contains("2026-03"));
        // Version 2026-01 trained the production version.
        let prod = page(
            &s,
            "/ui/lineage/dataset?name=cards+%22%3E%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E&version=2026-01",
        );
        assert!(prod.contains("1 in production"), "{prod}");
        let r = get(&s, "/ui/lineage/dataset?name=nothing", Some(READER));
        assert_eq!(r.status, 404);
        let r = get(&s, "/ui/lineage/dataset?name=x&digest=nope", Some(READER));
        assert_eq!(r.status, 400);
    })
    .await
    .expect("requests");
}

async fn time_travel_shows_the_old_production_after_a_later_promotion(registry: Registry) {
    let before = registry.model("fraud").await.expect("model").updated_at();
    let me = registry.acting_as(Actor::new("ops@example.com").expect("actor"));
    me.promote_to("fraud/2", Stage::Production, "better auc")
        .await
        .expect("promote");
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let now = page(&s, "/ui/models/fraud");
        assert!(
            now.contains("a class=\"badge stage-production\" href=\"/ui/models/fraud/versions/2\"")
        );
        assert!(!now.contains("past view"));
        let at = before.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let path = format!("/ui/models/fraud?at={}", at.replace('+', "%2B"));
        let then = page(&s, &path);
        assert!(then.contains("A past view"), "{then}");
        assert!(
            then.contains(
                "a class=\"badge stage-production\" href=\"/ui/models/fraud/versions/1\""
            ),
            "production then: v1"
        );
        assert!(then.contains("href=\"/ui/models/fraud\">← Back to now"));
        // v2 was in staging then; the table shows its stage as of then.
        let row = then
            .split("versions/2\">v2</a></td>")
            .nth(1)
            .expect("v2's row");
        assert!(
            row.split("</tr>")
                .next()
                .is_some_and(|r| r.contains("staging")),
            "{row}"
        );
        // Filters and sorting keep the time; a form time without a zone is UTC.
        assert!(then.contains("name=\"at\""));
        // A second after `before`, as `datetime-local` sends it (no zone).
        let form_time = (before + chrono::Duration::seconds(1))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let early = get(&s, "/ui/models/fraud?at=2000-01-01T00:00", Some(READER));
        assert_eq!(early.status, 404, "the model did not exist yet");
        assert_eq!(
            get(
                &s,
                &format!("/ui/models/fraud?at={form_time}"),
                Some(READER)
            )
            .status,
            200
        );
        assert_eq!(
            get(&s, "/ui/models/fraud?at=yesterday", Some(READER)).status,
            400
        );
        // The audit trail links each event to the model as of it.
        let history = page(&s, "/ui/models/fraud/history");
        assert!(history.contains("href=\"/ui/models/fraud?at="));
    })
    .await
    .expect("requests");
}

/// One test per backend for each page check (an `async fn(Registry)` above,
/// given the seeded registry): `local::<check>` always, `s3::<check>` on the
/// S3 server, ignored without one (in CI a missing server fails
/// `object_servers::servers_configured_in_ci`).
macro_rules! on_each_backend {
    ($($check:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (_dir, registry) = super::seeded(super::Backend::Local).await;
                    super::$check(registry).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(modelreg_s3),
                    ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
                )]
                async fn $check() {
                    let (_dir, registry) = super::seeded(super::Backend::S3).await;
                    super::$check(registry).await;
                }
            )*
        }
    };
}

on_each_backend!(
    the_models_page_lists_each_model_with_production_and_searches_name_and_tag,
    the_model_page_charts_goal_metrics_and_filters_sorts_and_pages_versions,
    the_version_page_compares_with_production_and_shows_a_regression_as_one,
    the_history_page_filters_and_pages_the_audit_trail,
    unknown_models_and_versions_are_404_pages,
    the_lineage_page_draws_each_parent_and_child_and_links_them,
    the_dataset_page_lists_every_affected_version_and_production,
    time_travel_shows_the_old_production_after_a_later_promotion,
);

fn cookie_of(r: &Reply) -> String {
    let set = r.header("set-cookie").expect("a cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().expect("name=value").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_with_a_token_and_its_cookie_only_reads() {
    let (_dir, registry) = seeded(Backend::Local).await;
    let before = registry.model("fraud").await.expect("model").seq();
    let s = server(registry.clone());
    tokio::task::spawn_blocking(move || {
        // Without credentials: the sign-in form, as a 401; the form, the
        // stylesheet and the icon themselves are open.
        let r = get(&s, "/ui/models/fraud", None);
        assert_eq!(r.status, 401);
        assert!(r.text().contains("name=\"token\""));
        assert_eq!(get(&s, "/ui/login", None).status, 200);
        assert_eq!(get(&s, "/ui/assets/style.css", None).status, 200);
        let icon = get(&s, "/ui/assets/favicon.svg", None);
        assert_eq!(icon.status, 200);
        assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
        let ico = get(&s, "/favicon.ico", None);
        assert!(matches!(ico.status, 303 | 307 | 308), "{}", ico.status);
        assert_eq!(ico.header("location"), Some("/ui/assets/favicon.svg"));
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let bad = request(
            s.addr,
            "POST",
            "/ui/login",
            &form,
            b"token=not-a-valid-token-at-all",
        );
        assert_eq!(bad.status, 401);
        assert!(bad.header("set-cookie").is_none());
        let body = format!("token={WRITER}");
        let ok = request(s.addr, "POST", "/ui/login", &form, body.as_bytes());
        assert_eq!(ok.status, 303, "{}", ok.text());
        let cookie = cookie_of(&ok);
        let with = [("Cookie", cookie.as_str())];
        let r = request(s.addr, "GET", "/ui/models/fraud", &with, b"");
        assert_eq!(r.status, 200);
        assert!(r.text().contains("wes@example.com"), "who is signed in");
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
        let file = request(
            s.addr,
            "GET",
            "/api/v1/models/fraud/versions/1/files/config.json",
            &with,
            b"",
        );
        assert_eq!(file.status, 200, "downloads linked from the pages work");
        // The writer's cookie writes nothing: writes need the bearer header.
        let mut headers = with.to_vec();
        headers.push(("Content-Type", "application/json"));
        let w = request(
            s.addr,
            "POST",
            "/api/v1/models/fraud/versions/2/transition",
            &headers,
            br#"{"to":"validation","reason":"csrf"}"#,
        );
        assert_eq!(w.status, 401, "{}", w.text());
        let out = request(s.addr, "POST", "/ui/logout", &with, b"");
        assert!(
            out.header("set-cookie")
                .is_some_and(|c| c.contains("Max-Age=0"))
        );
    })
    .await
    .expect("requests");
    assert_eq!(registry.model("fraud").await.expect("model").seq(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tokens_shows_its_pages_to_anyone() {
    let (_dir, registry) = seeded(Backend::Local).await;
    let s = start(registry, ServerOptions::new());
    tokio::task::spawn_blocking(move || {
        let r = get(&s, "/ui/models/fraud", None);
        assert_eq!(r.status, 200);
        assert!(r.text().contains("read-only server"));
        assert!(
            !r.text().contains("id=\"actions\""),
            "no actions section where nothing can change"
        );
        let version = get(&s, "/ui/models/fraud/versions/2", None).text();
        assert!(!version.contains("id=\"actions\""), "{version}");
        let login = get(&s, "/ui/login", None);
        assert_eq!(login.status, 303, "nothing to sign in to");
    })
    .await
    .expect("requests");
}

/// What the browser check needs from the environment: the browser, and
/// axe-core's `axe.min.js` (`.ci/run` installs the npm package `axe-core`).
fn browser_tools() -> (String, PathBuf) {
    let chromium = std::env::var("MODELREG_TEST_CHROMIUM").expect("MODELREG_TEST_CHROMIUM");
    let axe = std::env::var("MODELREG_TEST_AXE").unwrap_or_else(|_| {
        panic!("MODELREG_TEST_AXE (axe-core's axe.min.js) must be set; .ci/run installs it")
    });
    (chromium, PathBuf::from(axe))
}

/// A page for the browser check: its name (for the screenshot), its URL, the
/// status it must answer with and texts its DOM must contain.
fn browser_page(name: &str, url: String, status: u16, wanted: &[&str]) -> serde_json::Value {
    serde_json::json!({ "name": name, "url": url, "status": status, "wanted": wanted })
}

/// `page` seen signed in on `s` with `token`, reached from its URL by `steps`
/// (see `tests/ui/browser_check.py`).
fn signed_in(
    mut page: serde_json::Value,
    s: &Running,
    token: &str,
    steps: serde_json::Value,
) -> serde_json::Value {
    page["sign_in"] = serde_json::json!({ "url": format!("{}/ui/login", s.url()), "token": token });
    page["steps"] = steps;
    page
}

/// Every page in a real browser (`tests/ui/browser_check.py`, Playwright on
/// the system Chromium), read-only and signed in (the action forms, an
/// action's confirmation page and a refusal): the HTML the server sends parses without an error
/// and has no duplicate id; the DOM has what matters and no payload as
/// markup; axe-core finds no serious or critical violation; Tab reaches every
/// link and control in order with a visible focus; nothing scrolls sideways
/// at 1366×768 or 390×844; a screenshot of each lands in
/// `target/ui-screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(modelreg_chromium, modelreg_pyclients, modelreg_axe)),
    ignore = "needs MODELREG_TEST_CHROMIUM, MODELREG_TEST_PYTHON (with playwright and html5lib) \
              and MODELREG_TEST_AXE at build time; .ci/run sets them"
)]
async fn every_page_passes_the_browser_checks() {
    let (_dir, registry) = seeded(Backend::Local).await;
    // A later promotion, so that the past view differs from now.
    let before = registry.model("fraud").await.expect("model").updated_at();
    let ops = registry.acting_as(Actor::new("ops@example.com").expect("actor"));
    ops.promote_to("fraud/2", Stage::Production, "better auc")
        .await
        .expect("promote");
    // A gate on staging, so that moving v3 there is refused with a verdict.
    ops.set_gates(
        "fraud",
        Stage::Staging,
        vec![GateSpec::Approvals {
            required: 1,
            from: Default::default(),
        }],
    )
    .await
    .expect("gates");
    let past = format!(
        "/ui/models/fraud?at={}",
        before
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .replace('+', "%2B")
    );
    // A read-only server (a browser sends no token), and one with tokens for
    // the sign-in page.
    let s = start(registry.clone(), ServerOptions::new());
    let signed = server(registry);
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    let (chromium, axe) = browser_tools();
    let dataset = "/ui/lineage/dataset?name=cards+%22%3E%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E&version=2026-02";
    let u = |path: &str| format!("{}{path}", s.url());
    let pages = vec![
        browser_page(
            "models",
            u("/ui/"),
            200,
            &["fraud", "many", "champion", "ops@example.com"],
        ),
        browser_page(
            "models-search",
            u("/ui/?q=team%3Drisk"),
            200,
            &["1 of 4 models match"],
        ),
        browser_page(
            "model",
            u("/ui/models/fraud"),
            200,
            &["Goal metrics across versions", "production v2 = 0.93"],
        ),
        browser_page(
            "model-many",
            u("/ui/models/many?sort=acc"),
            200,
            &["120 versions match", "Next page"],
        ),
        browser_page(
            "version",
            u("/ui/models/fraud/versions/3"),
            200,
            &[
                "▼ regressed",
                "Provenance",
                "config.json",
                "Signatures (1)",
                "evaluated &lt;script&gt;alert(1)&lt;/script&gt;",
                "Format scan",
            ],
        ),
        browser_page(
            "history",
            u("/ui/models/fraud/history"),
            200,
            &["stage changed", "alias set"],
        ),
        browser_page(
            "lineage",
            u("/ui/models/student/versions/1/lineage"),
            200,
            &[
                "distilled_from",
                "fine_tuned_from",
                "fraud v2",
                "student v2",
            ],
        ),
        browser_page(
            "lineage-upstream",
            u("/ui/models/student/versions/2/lineage"),
            200,
            &[LONG_DATASET, "fraud v2"],
        ),
        browser_page(
            "dataset",
            u(dataset),
            200,
            &["What it affects", "3 versions", "student v2"],
        ),
        browser_page(
            "model-past",
            u(&past),
            200,
            &["A past view", "Back to now", "production v1 = 0.9"],
        ),
        browser_page("not-found", u("/ui/models/nope"), 404, &["Not Found"]),
        browser_page(
            "sign-in",
            format!("{}/ui/login", signed.url()),
            200,
            &["Access token"],
        ),
    ];
    let v = |path: &str| format!("{}{path}", signed.url());
    let none = serde_json::json!([]);
    let review_move = serde_json::json!([
        { "select": "#move-to", "value": "staging" },
        { "fill": "#move-reason", "value": format!("try it {SCRIPT}") },
        { "click": "Review the move…" },
    ]);
    let mut refuse = review_move.clone();
    refuse
        .as_array_mut()
        .expect("steps")
        .push(serde_json::json!({ "click": "Confirm: move v3 to staging" }));
    let pages = pages
        .into_iter()
        .chain([
            signed_in(
                browser_page(
                    "version-forms",
                    v("/ui/models/fraud/versions/1"),
                    200,
                    &[
                        "Move to another stage",
                        "Approve or reject",
                        "Point an alias here",
                        "Review the removal…",
                    ],
                ),
                &signed,
                ADMIN,
                none.clone(),
            ),
            signed_in(
                browser_page(
                    "model-forms",
                    v("/ui/models/fraud"),
                    200,
                    &["Roll back production", "Traffic split"],
                ),
                &signed,
                WRITER,
                none,
            ),
            signed_in(
                browser_page(
                    "confirm-move",
                    v("/ui/models/fraud/versions/3"),
                    200,
                    &[
                        "Nothing has changed yet",
                        "What confirming does:",
                        "v3 moves from no stage to staging.",
                        "✘ refuses",
                        "0 of 1 approvals",
                    ],
                ),
                &signed,
                WRITER,
                review_move,
            ),
            signed_in(
                browser_page(
                    "refused",
                    v("/ui/models/fraud/versions/3"),
                    409,
                    &[
                        "Refused: ",
                        "Verdicts of the refusing gates",
                        "0 of 1 approvals",
                    ],
                ),
                &signed,
                WRITER,
                refuse,
            ),
            signed_in(
                browser_page(
                    "confirm-approval",
                    v("/ui/models/fraud/versions/3"),
                    200,
                    &[
                        "Confirm: approve v3 for staging",
                        "v3 does not move",
                        "it stays without a stage until someone moves it to staging",
                    ],
                ),
                &signed,
                APPROVER,
                serde_json::json!([
                    { "select": "#decide-stage", "value": "staging" },
                    { "fill": "#decide-comment", "value": "looked at it" },
                    { "click": "Review approval…" },
                ]),
            ),
            signed_in(
                browser_page(
                    "confirm-split",
                    v("/ui/models/fraud"),
                    200,
                    &["The new split", "90.0 %"],
                ),
                &signed,
                WRITER,
                serde_json::json!([
                    { "fill": "#split-routes", "value": "@production=90, @champion=10" },
                    { "fill": "#split-reason", "value": "canary" },
                    { "click": "Review the split…" },
                ]),
            ),
            signed_in(
                browser_page(
                    "confirm-rollback",
                    v("/ui/models/fraud"),
                    200,
                    &["Confirm: roll back from v2 to v1"],
                ),
                &signed,
                WRITER,
                serde_json::json!([
                    { "fill": "#rollback-reason", "value": "latency" },
                    { "click": "Review the rollback…" },
                ]),
            ),
        ])
        .collect::<Vec<_>>();
    let plan = serde_json::json!({
        "chromium": chromium,
        "axe": axe,
        "shots": dir,
        "pages": pages,
    });
    tokio::task::spawn_blocking(move || {
        let scratch = tempfile::tempdir().expect("a temp dir");
        let plan_file = scratch.path().join("plan.json");
        std::fs::write(&plan_file, plan.to_string()).expect("write the plan");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser_check.py");
        let out = std::process::Command::new(common::http::python())
            .arg(&script)
            .arg(&plan_file)
            .output()
            .expect("run the browser check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "the browser check failed ({}):\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for name in [
            "models",
            "model",
            "version",
            "lineage",
            "version-forms",
            "confirm-move",
            "refused",
        ] {
            let shot = dir.join(format!("{name}.png"));
            let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            assert!(size > 10_000, "{}: {size} bytes", shot.display());
        }
        drop((s, signed));
    })
    .await
    .expect("pages");
}

/// In CI the browser check must run: it is ignored without its tools, which
/// must not pass unnoticed.
#[test]
fn browser_check_configured_in_ci() {
    if !common::servers::in_ci() {
        return;
    }
    for (configured, var) in [
        (cfg!(modelreg_chromium), "MODELREG_TEST_CHROMIUM"),
        (cfg!(modelreg_pyclients), "MODELREG_TEST_PYTHON"),
        (cfg!(modelreg_axe), "MODELREG_TEST_AXE"),
    ] {
        assert!(
            configured,
            "CI is set but {var} was not set when the tests were built, so the browser \
             check is ignored; .ci/run installs its tools and sets it"
        );
    }
}
