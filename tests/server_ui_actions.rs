//! Changes made from the web UI (`POST /ui/models/{model}/actions`) over a
//! real socket: each action's confirmation page and its result, refusals with
//! the gates' verdicts, and what keeps a page elsewhere from making a
//! signed-in browser change anything (CSRF token, `Origin`, role); with
//! `MODELREG_TEST_CHROMIUM` and `MODELREG_TEST_PYTHON` (set by `.ci/run`), a
//! promotion, a refusal and a rollback clicked through in headless Chromium
//! driven by Playwright.
//!
//! The registry is `common::rest::seeded`: `fraud` v1 in production, v2 in
//! staging, `champion` on v1, and production needs one approval.

mod common;

use common::http::{Reply, Running, request, screenshot_dir};
use common::rest::{ADMIN, APPROVER, READER, WRITER, bearer, seeded, server};
use modelreg::{EventKind, HistoryFilter, Registry, Stage};

const SCRIPT: &str = "<script>alert(1)</script>";

/// A browser session: its cookie, and the CSRF token its pages carry.
struct Browser<'a> {
    s: &'a Running,
    cookie: String,
    csrf: String,
}

impl<'a> Browser<'a> {
    /// Signs in with `token` and reads the CSRF token from a version page.
    fn sign_in(s: &'a Running, token: &str) -> Browser<'a> {
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let r = request(
            s.addr,
            "POST",
            "/ui/login",
            &form,
            format!("token={token}").as_bytes(),
        );
        assert_eq!(r.status, 303, "{}", r.text());
        let set = r.header("set-cookie").expect("a cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().expect("name=value").to_owned();
        let mut b = Browser {
            s,
            cookie,
            csrf: String::new(),
        };
        let page = b.get("/ui/models/fraud/versions/2");
        assert_eq!(page.status, 200);
        b.csrf = field(&page.text(), "csrf").unwrap_or_default();
        b
    }

    fn get(&self, path: &str) -> Reply {
        request(
            self.s.addr,
            "GET",
            path,
            &[("Cookie", self.cookie.as_str())],
            b"",
        )
    }

    /// Posts `pairs` (and the CSRF token, unless `pairs` has one) to the
    /// actions of `fraud`, with `extra` headers.
    fn post_with(&self, pairs: &[(&str, &str)], extra: &[(&str, &str)]) -> Reply {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        if !pairs.iter().any(|(k, _)| *k == "csrf") {
            form.append_pair("csrf", &self.csrf);
        }
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        let mut headers = vec![
            ("Cookie", self.cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        request(
            self.s.addr,
            "POST",
            "/ui/models/fraud/actions",
            &headers,
            form.finish().as_bytes(),
        )
    }

    fn post(&self, pairs: &[(&str, &str)]) -> Reply {
        self.post_with(pairs, &[])
    }

    /// The preview, then the confirmation, of `pairs`: the confirmation's reply.
    fn confirm(&self, pairs: &[(&str, &str)]) -> Reply {
        let preview = self.post(pairs);
        assert_eq!(preview.status, 200, "{}", preview.text());
        let html = preview.text();
        assert!(html.contains("Nothing has changed yet"), "{html}");
        assert!(html.contains("name=\"confirm\""), "{html}");
        let mut with = pairs.to_vec();
        with.push(("confirm", "yes"));
        self.post(&with)
    }
}

/// The value of the first hidden input named `name` in `html`.
fn field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let (_, rest) = html.split_once(&needle)?;
    Some(rest.split_once('"')?.0.to_owned())
}

/// The payloads never appear as markup.
fn assert_escaped(html: &str) {
    assert!(!html.contains("<script"), "raw script:\n{html}");
}

async fn seq(reg: &Registry) -> u64 {
    reg.model("fraud").await.expect("model").seq()
}

async fn stage(reg: &Registry, n: u64) -> Stage {
    reg.resolve(format!("fraud/{n}"))
        .await
        .expect("version")
        .stage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_moves_a_version_through_confirmation_pages_and_a_gate_refuses_with_its_verdict() {
    let (_dir, registry) = seeded().await;
    let start = seq(&registry).await;
    let s = server(registry.clone());
    let rt = tokio::runtime::Handle::current();
    let reg = registry.clone();
    tokio::task::spawn_blocking(move || {
        let wes = Browser::sign_in(&s, WRITER);
        assert_eq!(
            wes.csrf,
            csrf_of(WRITER),
            "an HMAC-SHA256 keyed by the token"
        );
        let page = wes.get("/ui/models/fraud/versions/2").text();
        assert!(page.contains("Signed in as <strong>wes@example.com</strong> (writer)"));
        assert!(page.contains("Move to another stage") && page.contains("Point an alias here"));
        assert!(
            !page.contains("Approve or reject") && page.contains("it may not approve or reject"),
            "a writer is not offered approvals"
        );

        // The preview changes nothing and says what will happen.
        let move_to = |to: &'static str, reason: &'static str| {
            [
                ("action", "move"),
                ("version", "2"),
                ("to", to),
                ("reason", reason),
            ]
        };
        let preview = wes.post(&move_to("validation", "offline eval passed"));
        assert_eq!(preview.status, 200, "{}", preview.text());
        let html = preview.text();
        for want in [
            "Move fraud v2 to validation",
            "stage-staging",
            "stage-validation",
            "v1, unchanged by this move.",
            "No gates are set for validation",
            "Confirm: move v2 to validation",
            "What confirming does: </strong>v2 moves from staging to validation. Its files, \
             metrics and aliases stay as they are. No gate runs.",
        ] {
            assert!(html.contains(want), "{want:?} in\n{html}");
        }
        assert_eq!(rt.block_on(seq(&reg)), start, "a preview records nothing");

        let done = wes.confirm(&move_to("validation", "offline eval passed"));
        assert_eq!(done.status, 303, "{}", done.text());
        let location = done.header("location").expect("a redirect").to_owned();
        assert_eq!(
            location,
            format!("/ui/models/fraud/versions/2?done={}", start + 1)
        );
        assert_eq!(rt.block_on(stage(&reg, 2)), Stage::Validation);
        let result = wes.get(&location).text();
        assert!(
            result.contains("Done: </strong>stage changed by wes@example.com"),
            "{result}"
        );
        assert!(result.contains("offline eval passed"));

        // Production needs an approval: the preview shows the refusing gate,
        // and confirming anyway is refused (409) with its verdict.
        let html = wes.post(&move_to("production", "better auc")).text();
        for want in [
            "v1: it is archived in the same event, and v2 takes its place.",
            "<code>approvals(1)</code>",
            "✘ refuses",
            "0 of 1 approvals",
            "1 of 1 gates refuse now",
            "v2 moves from validation to production, and v1 leaves production for archived in \
             the same event.",
            "The gates run again when you confirm: if one refuses then, nothing changes.",
        ] {
            assert!(html.contains(want), "{want:?} in\n{html}");
        }
        let mut confirmed = move_to("production", "better auc").to_vec();
        confirmed.push(("confirm", "yes"));
        let refused = wes.post(&confirmed);
        assert_eq!(refused.status, 409, "as the REST API answers GateRejected");
        let html = refused.text();
        assert!(
            html.contains("Refused: </strong>a gate refused the change. Nothing changed."),
            "{html}"
        );
        assert!(html.contains("Verdicts of the refusing gates"), "{html}");
        assert_eq!(
            html.matches("0 of 1 approvals").count(),
            1,
            "the verdict is shown once: {html}"
        );
        assert_eq!(html.matches("<code>approvals(1)</code>").count(), 1);
        assert_eq!(rt.block_on(seq(&reg)), start + 1, "nothing recorded");

        // An approver approves with a comment, then the promotion passes.
        let ada = Browser::sign_in(&s, APPROVER);
        let page = ada.get("/ui/models/fraud/versions/2").text();
        assert!(page.contains("Approve or reject"));
        let approve = [
            ("action", "approve"),
            ("version", "2"),
            ("stage", "production"),
            ("reason", "checked the eval report"),
        ];
        let html = ada.post(&approve).text();
        assert!(
            html.contains("Gates for production, before this decision"),
            "{html}"
        );
        assert!(html.contains("Confirm: approve v2 for production"));
        // What approving does, and that it does not move the version.
        assert!(
            html.contains(
                "Your approval of v2 for production is recorded in the audit trail, and replaces \
                 any earlier decision of yours on it. <strong>v2 does not move</strong>: it stays \
                 in validation until someone moves it to production. When that move is asked \
                 for, the approvals gate counts your approval"
            ),
            "{html}"
        );
        let mut reject = approve;
        reject[0] = ("action", "reject");
        let html = ada.post(&reject).text();
        assert!(
            html.contains("Your rejection of v2 for production")
                && html.contains("While it stands, the approvals gate refuses that move"),
            "{html}"
        );
        let html = ada
            .post(&[
                ("action", "approve"),
                ("version", "2"),
                ("stage", "staging"),
                ("reason", "fine"),
            ])
            .text();
        assert!(
            html.contains(
                "No approvals gate is set for staging, so no gate counts the decision now."
            ),
            "{html}"
        );
        let done = ada.confirm(&approve);
        assert_eq!(done.status, 303, "{}", done.text());
        let html = wes.post(&move_to("production", "better auc")).text();
        assert!(
            html.contains("✔ passes") && html.contains("approved by ada@example.com"),
            "{html}"
        );
        let done = wes.confirm(&move_to("production", "better auc"));
        assert_eq!(done.status, 303, "{}", done.text());
        let page = wes.get(done.header("location").expect("location")).text();
        assert!(page.contains("stage-production"), "{page}");
    })
    .await
    .expect("requests");
    assert_eq!(stage(&registry, 2).await, Stage::Production);
    assert_eq!(stage(&registry, 1).await, Stage::Archived);
    let history = registry
        .history("fraud", &HistoryFilter::new())
        .await
        .expect("history");
    let promoted = &history[0];
    assert_eq!(promoted.actor.as_str(), "wes@example.com");
    assert!(
        matches!(&promoted.kind, EventKind::StageChanged { reason, to: Stage::Production, gates, archived, .. }
            if reason == "better auc" && gates.len() == 1 && gates[0].passed && archived.is_some_and(|a| a.get() == 1)),
        "{promoted:?}"
    );
    let approval = &history[1];
    assert_eq!(approval.actor.as_str(), "ada@example.com");
    assert!(
        matches!(&approval.kind, EventKind::ApprovalRecorded { comment, stage: Stage::Production, .. } if comment == "checked the eval report"),
        "{approval:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_alias_and_split_go_through_their_confirmation_pages() {
    let (_dir, registry) = seeded().await;
    // v2 in production (approved), so v1 can come back.
    let ada = registry.acting_as(modelreg::Actor::new("ada@example.com").expect("actor"));
    ada.approve("fraud/2", Stage::Production, "ok")
        .await
        .expect("approve");
    registry
        .acting_as(modelreg::Actor::new("ops@example.com").expect("actor"))
        .promote_to("fraud/2", Stage::Production, "ship")
        .await
        .expect("promote");
    let s = server(registry.clone());
    let rt = tokio::runtime::Handle::current();
    let reg = registry.clone();
    tokio::task::spawn_blocking(move || {
        let wes = Browser::sign_in(&s, WRITER);
        let page = wes.get("/ui/models/fraud").text();
        assert!(page.contains("Production returns from v2 to v1"), "{page}");
        let rollback = [("action", "rollback"), ("reason", "latency regression")];
        let html = wes.post(&rollback).text();
        assert!(
            html.contains("v2: it is archived.")
                && html.contains("v1, the version that held it before.")
        );
        assert!(html.contains("Confirm: roll back from v2 to v1"));
        assert!(
            html.contains("Production returns to v1 and v2 is archived, in one event. No gate runs."),
            "{html}"
        );
        let done = wes.confirm(&rollback);
        assert_eq!(done.status, 303);
        let location = done.header("location").expect("location");
        assert!(location.starts_with("/ui/models/fraud?done="), "{location}");
        let page = wes.get(location).text();
        assert!(
            page.contains("Done: </strong>rolled back by wes@example.com"),
            "{page}"
        );
        assert_eq!(
            rt.block_on(reg.resolve("fraud@production"))
                .expect("production")
                .number
                .get(),
            1
        );

        // An alias, with a reason carrying markup: shown as text.
        let alias = [
            ("action", "alias"),
            ("version", "2"),
            ("alias", "challenger"),
            ("protected", "unchanged"),
            ("reason", SCRIPT),
        ];
        let html = wes.post(&alias).text();
        assert_escaped(&html);
        assert!(
            html.contains("new → v2") && html.contains("no gate runs"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains(
                "<code>fraud@challenger</code> resolves to v2 (a new alias). No version changes \
                 stage. No gate runs."
            ),
            "{html}"
        );
        assert_eq!(wes.confirm(&alias).status, 303);
        let page = wes.get("/ui/models/fraud/versions/2?done=999").text();
        assert!(
            !page.contains("Done:"),
            "an event that does not exist shows no notice"
        );

        // A protected alias shows the production gates that will run, judged now.
        let protect = [
            ("action", "alias"),
            ("version", "2"),
            ("alias", "champion"),
            ("protected", "yes"),
            ("reason", "guard it"),
        ];
        let html = wes.post(&protect).text();
        assert!(
            html.contains("<code>approvals(1)</code>") && html.contains("no → yes"),
            "{html}"
        );
        assert!(
            html.contains("<code>fraud@champion</code> resolves to v2 instead of v1.")
                && html.contains("The gates run again when you confirm"),
            "{html}"
        );
        assert!(
            html.contains("✔ passes") && html.contains("approved by ada@example.com"),
            "the production gates' verdicts now, v2 as the candidate: {html}"
        );

        // A split: its shares and what each target serves now.
        let split = [
            ("action", "split"),
            ("split", "@champion=90, @challenger=10"),
            ("reason", "canary"),
        ];
        let html = wes.post(&split).text();
        for want in [
            "90.0 %",
            "10.0 %",
            "<td>v1</td>",
            "<td>v2</td>",
            "Confirm: set the split",
            "sends each request to a target by the weights below",
            "No version changes stage, and no gate runs.",
        ] {
            assert!(html.contains(want), "{want:?} in\n{html}");
        }
        assert_eq!(wes.confirm(&split).status, 303);
        // Removing an alias the split routes to warns about it; the page offers
        // a removal form for each alias on the version.
        let page = wes.get("/ui/models/fraud/versions/2").text();
        assert!(
            page.contains("Remove <span class=\"alias\">challenger</span>"),
            "{page}"
        );
        let unalias = [
            ("action", "unalias"),
            ("alias", "challenger"),
            ("reason", "done"),
        ];
        let html = wes.post(&unalias).text();
        assert!(html.contains("challenger</span>: v2 → removed."), "{html}");
        assert!(
            html.contains("The traffic split routes to @challenger"),
            "{html}"
        );
        assert!(html.contains("Confirm: remove challenger"));
        assert!(
            html.contains(
                "<code>fraud@challenger</code> stops resolving; v2 itself is unchanged. No gate runs."
            ),
            "{html}"
        );
        let bad = wes.post(&[
            ("action", "split"),
            ("split", "@champion=ninety"),
            ("reason", "x"),
        ]);
        assert_eq!(bad.status, 400);
        assert!(bad.text().contains("not a positive whole number"));
        let no_reason = wes.post(&[("action", "rollback"), ("reason", "  ")]);
        assert_eq!(no_reason.status, 400);
        assert!(no_reason.text().contains("a reason is required"));
    })
    .await
    .expect("requests");
    let state = registry.model("fraud").await.expect("model");
    let split = state.traffic_split().expect("a split");
    assert_eq!(split.routes().len(), 2);
    let challenger = state
        .alias(&modelreg::AliasName::new("challenger").expect("alias"))
        .expect("challenger");
    assert_eq!(challenger.version.get(), 2);
    let history = registry
        .history("fraud", &HistoryFilter::new())
        .await
        .expect("history");
    assert!(
        matches!(&history[0].kind, EventKind::TrafficSplitSet { reason, .. } if reason == "canary")
    );
    assert!(matches!(&history[1].kind, EventKind::AliasSet { reason, .. } if reason == SCRIPT));
    assert!(
        matches!(&history[2].kind, EventKind::RolledBack { reason, .. } if reason == "latency regression")
    );
    assert!(
        history[..3]
            .iter()
            .all(|e| e.actor.as_str() == "wes@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_posts_without_the_csrf_token_or_the_role_or_from_another_site_change_nothing() {
    let (_dir, registry) = seeded().await;
    let start = seq(&registry).await;
    let s = server(registry.clone());
    tokio::task::spawn_blocking(move || {
        let wes = Browser::sign_in(&s, WRITER);
        let rita = Browser::sign_in(&s, READER);
        let move_it = [
            ("action", "move"),
            ("version", "2"),
            ("to", "validation"),
            ("reason", "csrf"),
            ("confirm", "yes"),
        ];
        // Without the CSRF token, or with another session's or a made-up one.
        let mut without = move_it.to_vec();
        without.push(("csrf", ""));
        let r = wes.post(&without);
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("CSRF token is missing or wrong"));
        let mut wrong = move_it.to_vec();
        wrong.push(("csrf", rita.csrf.as_str()));
        assert_eq!(wes.post(&wrong).status, 403, "a token of another session");
        let made_up = "0".repeat(64);
        let mut made = move_it.to_vec();
        made.push(("csrf", made_up.as_str()));
        assert_eq!(wes.post(&made).status, 403);
        // From another site, even with the right token.
        for (name, value) in [
            ("Origin", "https://evil.example"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Site", "same-site"),
        ] {
            let r = wes.post_with(&move_it, &[(name, value)]);
            assert_eq!(r.status, 403, "{name}: {value}");
            assert!(r.text().contains("cross-site"), "{}", r.text());
        }
        let own = format!("http://{}", s.addr);
        let preview = [("action", "rollback"), ("reason", "same origin")];
        assert_eq!(
            wes.post_with(
                &preview,
                &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")]
            )
            .status,
            200,
            "the server's own pages may post"
        );
        // A reader's session, with its own valid token: offered nothing, refused.
        let page = rita.get("/ui/models/fraud/versions/2").text();
        assert!(page.contains("Your token has the reader role"), "{page}");
        assert!(!page.contains("name=\"csrf\""), "no form for a reader");
        assert_eq!(rita.csrf, "", "no form, no token");
        let mut as_reader = move_it.to_vec();
        let reader_csrf = csrf_of(READER);
        as_reader.push(("csrf", reader_csrf.as_str()));
        let r = rita.post(&as_reader);
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("has the reader role; this needs writer"));
        // A writer may not approve.
        let approve = [
            ("action", "approve"),
            ("version", "2"),
            ("stage", "production"),
            ("reason", "me"),
        ];
        assert_eq!(wes.post(&approve).status, 403);
        // No session: the sign-in page, whatever the bearer header says.
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let r = request(
            s.addr,
            "POST",
            "/ui/models/fraud/actions",
            &form,
            b"action=rollback&reason=x",
        );
        assert_eq!(r.status, 401);
        let auth = bearer(ADMIN);
        let r = request(
            s.addr,
            "POST",
            "/ui/models/fraud/actions",
            &[("Authorization", auth.as_str()), form[0]],
            b"action=rollback&reason=x&confirm=yes",
        );
        assert_eq!(r.status, 401, "{}", r.text());
        // The REST API still takes the cookie for reads only, CSRF token or not.
        let r = request(
            s.addr,
            "POST",
            "/api/v1/models/fraud/versions/2/transition",
            &[
                ("Cookie", wes.cookie.as_str()),
                ("Content-Type", "application/json"),
                ("X-CSRF-Token", wes.csrf.as_str()),
            ],
            br#"{"to":"validation","reason":"csrf"}"#,
        );
        assert_eq!(r.status, 401, "{}", r.text());
        // A cross-site sign-in form is refused too.
        let r = request(
            s.addr,
            "POST",
            "/ui/login",
            &[form[0], ("Origin", "https://evil.example")],
            format!("token={WRITER}").as_bytes(),
        );
        assert_eq!(r.status, 403);
        assert!(r.header("set-cookie").is_none());
    })
    .await
    .expect("requests");
    assert_eq!(seq(&registry).await, start, "nothing changed");
}

/// The CSRF token a session of `token` would carry, computed as the server
/// does (the server offers a reader no form, so none to read it from).
fn csrf_of(token: &str) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(b"modelreg web UI form token v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Playwright driving the system Chromium: sign in as the writer, move v2 to
/// validation, try production (refused by the approvals gate), sign in as the
/// approver and approve, promote, then roll back; a screenshot of each page.
const BROWSER: &str = r#"
import json, os, sys
from playwright.sync_api import sync_playwright

base, shots = os.environ["BASE"], os.environ["SHOTS"]
seen = {}

def shot(page, name):
    page.screenshot(path=os.path.join(shots, f"action-{name}.png"), full_page=True)

def sign_in(page, token):
    page.goto(base + "/ui/login")
    page.get_by_label("Access token").fill(token)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/ui/")

def review_move(page, to, reason):
    page.goto(base + "/ui/models/fraud/versions/2")
    page.get_by_label("Target stage").select_option(to)
    page.get_by_label("Reason (recorded)").first.fill(reason)
    page.get_by_role("button", name="Review the move…").click()

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ["CHROMIUM"])
    writer = browser.new_context(viewport={"width": 1366, "height": 768})
    page = writer.new_page()
    sign_in(page, os.environ["WRITER"])
    page.goto(base + "/ui/models/fraud/versions/2")
    shot(page, "version-forms")
    review_move(page, "validation", "offline eval passed")
    page.get_by_role("button", name="Confirm: move v2 to validation").click()
    seen["validated"] = page.locator(".notice").inner_text()

    # Production: the preview shows the refusing gate; confirming is refused.
    review_move(page, "production", "better auc")
    seen["preview"] = page.locator("main").inner_text()
    shot(page, "confirm-refusing")
    response = None
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        page.get_by_role("button", name="Confirm: move v2 to production").click()
    seen["refused_status"] = info.value.status
    seen["refused"] = page.locator("[role=alert]").inner_text()
    shot(page, "refused")

    # An approver approves, by keyboard: focus the comment, type, Enter.
    approver = browser.new_context(viewport={"width": 1366, "height": 768})
    apage = approver.new_page()
    sign_in(apage, os.environ["APPROVER"])
    apage.goto(base + "/ui/models/fraud/versions/2")
    apage.get_by_label("For the move to").select_option("production")
    apage.get_by_label("Comment (recorded)").fill("checked the eval report")
    apage.get_by_role("button", name="Review approval…").click()
    shot(apage, "confirm-approval")
    apage.get_by_role("button", name="Confirm: approve v2 for production").focus()
    apage.keyboard.press("Enter")
    apage.wait_for_url("**/versions/2?done=*")

    review_move(page, "production", "better auc")
    seen["preview_passing"] = page.locator("main").inner_text()
    shot(page, "confirm-promotion")
    page.get_by_role("button", name="Confirm: move v2 to production").click()
    page.wait_for_url("**/versions/2?done=*")
    seen["promoted"] = page.locator("main").inner_text()
    shot(page, "promoted")

    # A split, previewed only.
    page.goto(base + "/ui/models/fraud")
    page.get_by_label("Routes: target=weight").fill("@production=90, /1=10")
    page.get_by_label("Reason (recorded)").nth(1).fill("canary")
    page.get_by_role("button", name="Review the split…").click()
    seen["split"] = page.locator("main").inner_text()
    shot(page, "confirm-split")

    page.goto(base + "/ui/models/fraud")
    seen["model_before_rollback"] = page.locator("main").inner_text()
    page.get_by_label("Reason (recorded)").first.fill("latency regression")
    page.get_by_role("button", name="Review the rollback…").click()
    shot(page, "confirm-rollback")
    page.get_by_role("button", name="Confirm: roll back from v2 to v1").click()
    page.wait_for_url("**/models/fraud?done=*")
    seen["rolled_back"] = page.locator("main").inner_text()
    shot(page, "rolled-back")
    browser.close()
print("RESULT " + json.dumps(seen))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(modelreg_chromium, modelreg_pyclients)),
    ignore = "needs MODELREG_TEST_CHROMIUM and MODELREG_TEST_PYTHON (with playwright) at build time; .ci/run sets them"
)]
async fn a_promotion_a_refusal_and_a_rollback_clicked_in_headless_chromium() {
    let (_dir, registry) = seeded().await;
    let s = server(registry.clone());
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).expect("the screenshot directory");
    let work = tempfile::tempdir().expect("a temp dir");
    let chromium = std::env::var("MODELREG_TEST_CHROMIUM").expect("MODELREG_TEST_CHROMIUM");
    let out = tokio::task::spawn_blocking({
        let shots = shots.clone();
        let url = s.url();
        let cwd = work.path().to_owned();
        move || {
            common::http::run_python(
                BROWSER,
                &cwd,
                &[
                    ("BASE", url),
                    ("SHOTS", shots.display().to_string()),
                    ("CHROMIUM", chromium),
                    ("WRITER", WRITER.to_owned()),
                    ("APPROVER", APPROVER.to_owned()),
                ],
            )
        }
    })
    .await
    .expect("the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no RESULT line in {stdout}")),
    )
    .expect("json");
    let text = |k: &str| seen[k].as_str().unwrap_or_default().to_owned();
    assert!(
        text("validated").contains("stage changed by wes@example.com"),
        "{seen}"
    );
    assert!(text("preview").contains("0 of 1 approvals"), "{seen}");
    assert_eq!(seen["refused_status"], 409, "{seen}");
    assert!(text("refused").contains("Refused"), "{seen}");
    assert!(text("refused").contains("approvals(1)"), "{seen}");
    assert!(
        text("preview_passing").contains("approved by ada@example.com"),
        "{seen}"
    );
    assert!(
        text("promoted").contains("stage changed by wes@example.com"),
        "{seen}"
    );
    assert!(
        text("model_before_rollback").contains("Production returns from v2 to v1"),
        "{seen}"
    );
    assert!(
        text("rolled_back").contains("rolled back by wes@example.com"),
        "{seen}"
    );
    assert!(text("split").contains("90.0 %"), "{seen}");
    for name in [
        "version-forms",
        "confirm-approval",
        "confirm-split",
        "confirm-refusing",
        "refused",
        "confirm-promotion",
        "promoted",
        "confirm-rollback",
        "rolled-back",
    ] {
        let shot = shots.join(format!("action-{name}.png"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{}: {size} bytes", shot.display());
    }
    drop(s);
    // The registry as the browser left it, and who did what, why.
    assert_eq!(
        registry
            .resolve("fraud@production")
            .await
            .expect("production")
            .number
            .get(),
        1
    );
    assert_eq!(stage(&registry, 2).await, Stage::Archived);
    let history = registry
        .history("fraud", &HistoryFilter::new())
        .await
        .expect("history");
    let who_why: Vec<(String, String)> = history
        .iter()
        .take(4)
        .map(|e| {
            let why = match &e.kind {
                EventKind::RolledBack { reason, .. } | EventKind::StageChanged { reason, .. } => {
                    reason.clone()
                }
                EventKind::ApprovalRecorded { comment, .. } => comment.clone(),
                other => format!("{other:?}"),
            };
            (e.actor.to_string(), why)
        })
        .collect();
    assert_eq!(
        who_why,
        [
            (
                "wes@example.com".to_owned(),
                "latency regression".to_owned()
            ),
            ("wes@example.com".to_owned(), "better auc".to_owned()),
            (
                "ada@example.com".to_owned(),
                "checked the eval report".to_owned()
            ),
            (
                "wes@example.com".to_owned(),
                "offline eval passed".to_owned()
            ),
        ]
    );
}
