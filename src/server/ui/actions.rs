//! `POST /ui/models/{model}/actions`: the changes a signed-in browser may ask
//! for, and the forms on the version and model pages that ask.
//!
//! Every change takes two posts of the same form. The first (without
//! `confirm`) changes nothing: it answers with a confirmation page that says
//! what will happen — the move, who is in production now and what happens to
//! it, and each gate that will run with its verdict now
//! ([`Session::check_transition`](crate::Session::check_transition)). The
//! second (with `confirm`) makes the change through the same
//! [`Session`](crate::Session) call as the REST API, as the session token's
//! identity, then redirects (303) to the page showing the result with a
//! notice naming the event. A refusal renders the confirmation page again with
//! the error and the refusing gates' verdicts, with the status the REST API
//! answers the same error with (409 for a gate or the transition table).
//!
//! Before anything, [`act`] refuses a cross-site request, a missing or wrong
//! CSRF token, and a token whose role does not allow the action (see the
//! module documentation of `ui` for why these suffice).

use std::fmt::Write as _;

use axum::extract::State as S;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::{
    P, Viewer, csrf_token, error_response, history, href, html_response, model_href, same_origin,
    segment, shell, stage_badge, version_href,
};
use crate::server::State;
use crate::server::auth::{self, Caller, Role};
use crate::server::error::ApiError;
use crate::server::rest::version_ref;
use crate::{
    AliasName, Error, Event, EventKind, GateSpec, GateVerdict, HistoryFilter, ModelName,
    ModelState, Session, SetAlias, Stage, TrafficSplit, VersionRecord,
};

/// The longest reason or comment taken from a form (the audit trail is for
/// sentences, not documents).
const MAX_REASON: usize = 2000;

/// Where a model's action forms post.
fn actions_href(model: &str) -> String {
    format!("/ui/models/{}/actions", segment(model))
}

/// The fields an action form posts, as sent.
#[derive(Default)]
struct Fields {
    action: String,
    version: String,
    to: String,
    stage: String,
    alias: String,
    protected: String,
    split: String,
    reason: String,
    csrf: String,
    confirm: bool,
}

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        let mut f = Fields::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let slot = match &*k {
                "action" => &mut f.action,
                "version" => &mut f.version,
                "to" => &mut f.to,
                "stage" => &mut f.stage,
                "alias" => &mut f.alias,
                "protected" => &mut f.protected,
                "split" => &mut f.split,
                "reason" => &mut f.reason,
                "csrf" => &mut f.csrf,
                "confirm" => {
                    f.confirm = !v.is_empty();
                    continue;
                }
                _ => continue,
            };
            *slot = v.into_owned();
        }
        f
    }

    /// The fields as hidden inputs, for the confirmation page's form.
    fn hidden(&self) -> Markup {
        html! {
            @for (name, value) in [
                ("action", &self.action), ("version", &self.version), ("to", &self.to),
                ("stage", &self.stage), ("alias", &self.alias), ("protected", &self.protected),
                ("split", &self.split), ("reason", &self.reason), ("csrf", &self.csrf),
            ] {
                @if !value.is_empty() { input type="hidden" name=(name) value=(value); }
            }
        }
    }
}

/// An action, checked.
enum Action {
    /// One stage transition.
    Move { version: String, to: Stage },
    /// An approval (or rejection) of a version for a stage.
    Decide {
        version: String,
        stage: Stage,
        approve: bool,
    },
    /// Production back to the version before.
    Rollback,
    /// An alias pointed at a version.
    Alias {
        version: String,
        alias: AliasName,
        protected: Option<bool>,
    },
    /// An alias removed.
    Unalias { alias: AliasName },
    /// A new traffic split; `None` removes it.
    Split { split: Option<TrafficSplit> },
}

impl Action {
    fn parse(f: &Fields) -> Result<Action, ApiError> {
        let version = || {
            let v = f.version.trim();
            if v.is_empty() {
                Err(ApiError::bad_request("the form names no version"))
            } else {
                Ok(v.to_owned())
            }
        };
        Ok(match f.action.as_str() {
            "move" => Action::Move {
                version: version()?,
                to: f.to.parse()?,
            },
            "approve" | "reject" => Action::Decide {
                version: version()?,
                stage: f.stage.parse()?,
                approve: f.action == "approve",
            },
            "rollback" => Action::Rollback,
            "alias" => Action::Alias {
                version: version()?,
                alias: AliasName::new(f.alias.trim())?,
                protected: match f.protected.as_str() {
                    "" | "unchanged" => None,
                    "yes" => Some(true),
                    "no" => Some(false),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "protected is {other:?}: use yes, no or unchanged"
                        )));
                    }
                },
            },
            "unalias" => Action::Unalias {
                alias: AliasName::new(f.alias.trim())?,
            },
            "split" => Action::Split {
                split: parse_split(&f.split)?,
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other:?} is not an action: use move, approve, reject, rollback, alias, unalias or split"
                )));
            }
        })
    }

    /// The role the action needs, as the REST API's route for it does.
    fn role(&self) -> Role {
        match self {
            Action::Decide { .. } => Role::Approver,
            _ => Role::Writer,
        }
    }
}

/// A split as the form writes it: `target=weight` (or `target weight`) entries
/// separated by commas or lines, targets in the route grammar (`@champion`,
/// `/7`); nothing at all removes the split.
fn parse_split(text: &str) -> Result<Option<TrafficSplit>, ApiError> {
    let mut routes = Vec::new();
    for entry in text
        .split([',', '\n', ';'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (target, weight) = entry
            .rsplit_once(['=', ' ', '\t'])
            .map(|(t, w)| (t.trim(), w.trim()))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{entry:?} is not a route: write target=weight, e.g. @champion=90"
                ))
            })?;
        let weight: u32 = weight.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "the weight of {target:?} is {weight:?}, not a positive whole number"
            ))
        })?;
        routes.push((target.to_owned(), weight));
    }
    if routes.is_empty() {
        return Ok(None);
    }
    Ok(Some(TrafficSplit::new(routes)?))
}

/// A split written back the way the form takes it.
fn split_text(split: &TrafficSplit) -> String {
    let mut out = String::new();
    for (i, r) in split.routes().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}={}", r.target, r.weight);
    }
    out
}

/// `POST /ui/models/{model}/actions`: a confirmation page, or the change.
pub(super) async fn act(
    S(s): S<State>,
    viewer: Viewer,
    P(model): P<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    match act_checked(&s, &viewer, &model, &headers, &body).await {
        Ok(r) => r,
        Err(e) => error_response(e),
    }
}

async fn act_checked(
    s: &State,
    viewer: &Viewer,
    model: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    // Nothing of the form is acted on before these checks.
    same_origin(headers)?;
    let token = auth::session_token(headers)
        .ok_or_else(|| ApiError::unauthorized("sign in to make changes from the web UI"))?;
    let fields = Fields::parse(body);
    if !auth::constant_time_eq(fields.csrf.as_bytes(), csrf_token(&token).as_bytes()) {
        return Err(ApiError::forbidden(
            "the form's CSRF token is missing or wrong (a form from another site, or from before \
             the token changed): open the page again and resubmit",
        ));
    }
    let (identity, role) = s
        .tokens
        .lookup(&token)
        .map(|(who, role)| (who.clone(), role))
        .ok_or_else(|| ApiError::unauthorized("the session's token is no longer valid"))?;
    let model = ModelName::new(model)?;
    let action = Action::parse(&fields)?;
    let caller = Caller {
        identity: Some(identity),
        role: Some(role),
    };
    let me = s
        .registry
        .acting_as(caller.require(action.role(), s.read_only())?);
    let reason = fields.reason.trim().to_owned();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "a reason is required: it is recorded in the audit trail with the change",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "the reason is longer than {MAX_REASON} characters"
        )));
    }
    if !fields.confirm {
        let page = confirmation(&me, &model, &action, &fields, viewer, None).await?;
        return Ok(html_response(StatusCode::OK, page));
    }
    match perform(&me, &model, &action, reason).await {
        Ok(event) => {
            let back = match &event.kind {
                EventKind::StageChanged { version, .. }
                | EventKind::ApprovalRecorded { version, .. }
                | EventKind::AliasSet { version, .. } => version_href(model.as_str(), *version),
                _ => model_href(model.as_str()),
            };
            let seq = event.seq.to_string();
            Ok(Redirect::to(&href(&back, &[("done", &seq)])).into_response())
        }
        Err(e) => {
            let refusal = ApiError::from(e);
            let status = refusal.status;
            let page = confirmation(&me, &model, &action, &fields, viewer, Some(&refusal)).await?;
            Ok(html_response(status, page))
        }
    }
}

/// Makes the change, through the same calls as the REST API.
async fn perform(
    me: &Session,
    model: &ModelName,
    action: &Action,
    reason: String,
) -> crate::Result<Event> {
    let name = model.as_str();
    let at = |v: &str| version_ref(name, v).map_err(api_to_error);
    match action {
        Action::Move { version, to } => me.transition(at(version)?, *to, reason).await,
        Action::Decide {
            version,
            stage,
            approve: true,
        } => me.approve(at(version)?, *stage, reason).await,
        Action::Decide { version, stage, .. } => me.reject(at(version)?, *stage, reason).await,
        Action::Rollback => me.rollback(model, reason).await,
        Action::Alias {
            version,
            alias,
            protected,
        } => {
            let mut options = SetAlias::new().reason(reason);
            if let Some(p) = protected {
                options = options.protected(*p);
            }
            me.set_alias(at(version)?, alias.as_str(), options).await
        }
        Action::Unalias { alias } => me.remove_alias(model, alias.as_str(), reason).await,
        Action::Split { split: Some(split) } => {
            me.set_traffic_split(model, split.clone(), reason).await
        }
        Action::Split { split: None } => me.clear_traffic_split(model, reason).await,
    }
}

/// `version_ref` fails only with a library error; this takes it back out.
fn api_to_error(e: ApiError) -> Error {
    match e.source {
        Some(e) => *e,
        None => Error::invalid_input("version", e.message),
    }
}

/// The confirmation page of `action`: what will happen, the gates that will
/// run with their verdicts now, and the form that makes the change; with
/// `refusal`, why the change was refused.
async fn confirmation(
    me: &Session,
    model: &ModelName,
    action: &Action,
    fields: &Fields,
    viewer: &Viewer,
    refusal: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let name = model.as_str();
    let state = me.model(model).await?;
    let resolve = |v: &str| -> Result<VersionRecord, ApiError> {
        let r = version_ref(name, v)?;
        Ok((*state.resolve(&r.selector)?).clone())
    };
    // A gate refusal shows the verdicts it was refused with, once: the
    // preview's table of the verdicts now would repeat them.
    let refused = refusal.and_then(refused_gates);
    let gates_now = |caption: &str, stage: Stage, gates: &[GateVerdict], warn: bool| {
        if refused.is_some() {
            html! {}
        } else {
            gates_table(caption, stage, gates, warn)
        }
    };
    let (title, confirm, effect, what) = match action {
        Action::Move { version, to } => {
            let v = resolve(version)?;
            let check = me.check_transition(v.reference(), *to).await?;
            let production = state.production().map(|p| p.number);
            let effect = html! {
                "v" (v.number) " moves from " (stage_words(check.from)) " to " (check.to)
                @if let Some(p) = check.archives { ", and v" (p) " leaves production for archived in the same event" }
                ". Its files, metrics and aliases stay as they are. "
                @if check.gates.is_empty() { "No gate runs." }
                @else { "The gates run again when you confirm: if one refuses then, nothing changes." }
            };
            let what = html! {
                dl.facts {
                    div.wide { dt { "The move" } dd {
                        (name) " v" (v.number) ": " (stage_badge(check.from)) " → " (stage_badge(check.to))
                    } }
                    div.wide { dt { "Production now" } dd {
                        @match (check.archives, production) {
                            (Some(p), _) => { "v" (p) ": it is archived in the same event, and v" (v.number) " takes its place." },
                            (None, Some(p)) => { "v" (p) ", unchanged by this move." },
                            (None, None) if *to == Stage::Production => { "none: v" (v.number) " becomes the first version in production." },
                            (None, None) => span.muted { "none" },
                        }
                    } }
                    div.wide { dt { "Recorded as" } dd { (me.actor()) ", with the reason below" } }
                }
                (gates_now(&format!("Gates for {to}"), *to, &check.gates, true))
            };
            (
                format!("Move {name} v{} to {to}", v.number),
                format!("Confirm: move v{} to {to}", v.number),
                effect,
                what,
            )
        }
        Action::Decide {
            version,
            stage,
            approve,
        } => {
            let v = resolve(version)?;
            let word = if *approve { "approve" } else { "reject" };
            let check = me.check_transition(v.reference(), *stage).await;
            let decisions = v.approvals.get(stage);
            let counted = state
                .gates()
                .get(stage)
                .is_some_and(|g| g.iter().any(|g| matches!(g, GateSpec::Approvals { .. })));
            let effect = html! {
                "Your " (if *approve { "approval" } else { "rejection" }) " of v" (v.number) " for " (stage)
                " is recorded in the audit trail, and replaces any earlier decision of yours on it. "
                strong { "v" (v.number) " does not move" } ": it stays " (in_stage(v.stage)) " until someone moves it to " (stage) ". "
                @if !counted {
                    "No approvals gate is set for " (stage) ", so no gate counts the decision now."
                } @else if *approve {
                    "When that move is asked for, the approvals gate counts your approval (unless you ask for the move yourself)."
                } @else {
                    "While it stands, the approvals gate refuses that move (unless you ask for the move yourself)."
                }
            };
            let what = html! {
                dl.facts {
                    div.wide { dt { "The decision" } dd {
                        (me.actor()) " records " strong { (word) } " for moving " (name) " v" (v.number)
                        " (now " (stage_badge(v.stage)) ") to " (stage_badge(*stage))
                        "."
                    } }
                    div.wide { dt { "Decisions so far" } dd {
                        @match decisions {
                            Some(by) if !by.is_empty() => {
                                @for (who, a) in by {
                                    span { (who) ": " (a.decision.as_str()) @if !a.comment.is_empty() { " (" (a.comment) ")" } } " "
                                }
                            },
                            _ => span.muted { "none" },
                        }
                    } }
                }
                @match &check {
                    Ok(c) => (gates_now(&format!("Gates for {stage}, before this decision"), *stage, &c.gates, false)),
                    Err(e) => p.muted { "The move itself is not possible now (" (e) "); the decision is recorded anyway." },
                }
            };
            (
                format!("{} {name} v{} for {stage}", capitalized(word), v.number),
                format!("Confirm: {word} v{} for {stage}", v.number),
                effect,
                what,
            )
        }
        Action::Rollback => {
            let current = state.production().map(|p| p.number);
            let target = state.rollback_target();
            let effect = html! {
                @match (current, target) {
                    (Some(c), Some(t)) => { "Production returns to v" (t) " and v" (c) " is archived, in one event. No gate runs." },
                    _ => { "Nothing: there is no earlier production version to return to, so confirming is refused." },
                }
            };
            let what = html! {
                dl.facts {
                    div.wide { dt { "Production now" } dd {
                        @if let Some(p) = current { "v" (p) ": it is archived." } @else { span.muted { "none: there is nothing to roll back." } }
                    } }
                    div.wide { dt { "Production after" } dd {
                        @if let Some(t) = target { "v" (t) ", the version that held it before." } @else { span.muted { "no earlier production version to return to." } }
                    } }
                }
                p.note { "A rollback is the emergency exit: it passes no gates, and is recorded as its own event with the reason below." }
            };
            let label = match (current, target) {
                (Some(c), Some(t)) => format!("Confirm: roll back from v{c} to v{t}"),
                _ => "Confirm: roll back".to_owned(),
            };
            (format!("Roll back {name}"), label, effect, what)
        }
        Action::Alias {
            version,
            alias,
            protected,
        } => {
            let v = resolve(version)?;
            let current = state.alias(alias);
            let was = current.is_some_and(|c| c.protected);
            let will = protected.unwrap_or(was);
            let gates = if was || will {
                Some(me.check_gates(v.reference(), Stage::Production).await?)
            } else {
                None
            };
            let effect = html! {
                code { (name) "@" (alias) } " resolves to v" (v.number)
                @match current { Some(c) if c.version == v.number => { ", as it does now" }, Some(c) => { " instead of v" (c.version) }, None => { " (a new alias)" } }
                ". No version changes stage. "
                @if gates.is_some() { "The gates run again when you confirm: if one refuses then, nothing changes." }
                @else { "No gate runs." }
            };
            let what = html! {
                dl.facts {
                    div.wide { dt { "The alias" } dd {
                        span.alias { (alias) } ": "
                        @match current { Some(c) => { "v" (c.version) " → " }, None => { "new → " } }
                        "v" (v.number)
                    } }
                    div.wide { dt { "Protected" } dd {
                        (if was { "yes" } else { "no" }) " → " (if will { "yes" } else { "no" })
                    } }
                }
                @match &gates {
                    Some(g) => {
                        p { "A protected alias moves only past the model's production gates, with v" (v.number) " as the candidate." }
                        (gates_now("Production gates, with this version as the candidate", Stage::Production, g, true))
                    },
                    None => p.note { "The alias is not protected: no gate runs." },
                }
            };
            (
                format!("Point {alias} of {name} at v{}", v.number),
                format!("Confirm: point {alias} at v{}", v.number),
                effect,
                what,
            )
        }
        Action::Unalias { alias } => {
            let current = state.alias(alias).ok_or_else(|| {
                ApiError::not_found(format!("model '{name}' has no alias '{alias}'"))
            })?;
            let routed = state.traffic_split().is_some_and(|sp| {
                sp.routes()
                    .iter()
                    .any(|r| r.target.to_string() == format!("@{alias}"))
            });
            let gates = if current.protected {
                Some(
                    me.check_gates(format!("{name}/{}", current.version), Stage::Production)
                        .await?,
                )
            } else {
                None
            };
            let effect = html! {
                code { (name) "@" (alias) } " stops resolving; v" (current.version) " itself is unchanged. "
                @if gates.is_some() { "The gates run again when you confirm: if one refuses then, nothing changes." }
                @else { "No gate runs." }
            };
            let what = html! {
                dl.facts {
                    div.wide { dt { "The alias" } dd {
                        span.alias { (alias) } ": v" (current.version) " → removed. "
                        "References to " code { (name) "@" (alias) } " stop resolving."
                    } }
                }
                @if routed {
                    p.verdict.bad { "The traffic split routes to @" (alias) ": those requests fail until the split changes." }
                }
                @match &gates {
                    Some(g) => {
                        p { "The alias is protected: removing it passes the model's production gates, with v" (current.version) " as the candidate." }
                        (gates_now("Production gates, with its version as the candidate", Stage::Production, g, true))
                    },
                    None => p.note { "The alias is not protected: no gate runs." },
                }
            };
            (
                format!("Remove {alias} of {name}"),
                format!("Confirm: remove {alias}"),
                effect,
                what,
            )
        }
        Action::Split { split } => {
            let mut rows = Vec::new();
            if let Some(sp) = split {
                let total = sp.total_weight().max(1);
                for r in sp.routes() {
                    let now = state
                        .resolve(r.target.selector())
                        .map(|v| format!("v{}", v.number))
                        .unwrap_or_else(|e| format!("does not resolve: {e}"));
                    rows.push((
                        r.target.to_string(),
                        r.weight,
                        u64::from(r.weight) as f64 * 100.0 / total as f64,
                        now,
                    ));
                }
            }
            let production = state.production().map(|p| p.number);
            let effect = html! {
                @if split.is_some() {
                    "Serving that routes through the split sends each request to a target by the weights below (one key, one target, while this split holds). "
                } @else {
                    "Serving that routes through the split sends every request to production. "
                }
                "No version changes stage, and no gate runs."
            };
            let what = html! {
                dl.facts {
                    div.wide { dt { "Split now" } dd {
                        @if let Some(sp) = state.traffic_split() { code { (split_text(sp)) } } @else { span.muted { "none: every request goes to production" } }
                    } }
                }
                @if split.is_some() {
                    table.data.narrow {
                        caption { "The new split" }
                        thead { tr { th scope="col" { "Target" } th scope="col" .num { "Weight" } th scope="col" .num { "Share" } th scope="col" { "Serves now" } } }
                        tbody { @for (t, w, share, now) in &rows {
                            tr { td { code { (t) } } td.num { (w) } td.num { (format!("{share:.1} %")) } td { (now) } }
                        } }
                    }
                } @else {
                    p { "The split is removed: every request goes to production ("
                        @if let Some(p) = production { "v" (p) } @else { "none now" } ")." }
                }
                p.note { "Changing the split passes no gates; each target must resolve when it is set." }
            };
            let label = if split.is_some() {
                "Confirm: set the split"
            } else {
                "Confirm: remove the split"
            };
            (
                format!("Traffic split of {name}"),
                label.to_owned(),
                effect,
                what,
            )
        }
    };
    let back = match action {
        Action::Move { version, .. }
        | Action::Decide { version, .. }
        | Action::Alias { version, .. } => resolve(version)
            .map(|v| version_href(name, v.number))
            .unwrap_or_else(|_| model_href(name)),
        _ => model_href(name),
    };
    let body = html! {
        h1 { (title) }
        @if let Some(e) = refusal {
            div.refusal role="alert" {
                @match refused {
                    Some(failed) => {
                        p.error { strong { "Refused: " } (refusal_summary(failed.len())) " Nothing changed." }
                        (gates_table("Verdicts of the refusing gates", Stage::None, failed, false))
                    },
                    None => p.error { strong { "Refused: " } (e.message) },
                }
            }
        } @else {
            p.lead { "Nothing has changed yet. Check what will happen, then confirm." }
        }
        p.effect { strong { "What confirming does: " } (effect) }
        (what)
        form.confirm method="post" action=(actions_href(name)) {
            (fields.hidden())
            p { strong { "Reason (recorded): " } q { (fields.reason.trim()) } }
            div.buttons {
                button type="submit" name="confirm" value="yes" { (confirm) }
                a.cancel href=(back) { "Cancel" }
            }
        }
    };
    Ok(shell(
        &title,
        Some(viewer),
        &[(name.to_owned(), model_href(name))],
        body,
    ))
}

/// The refusal of `failed` gates, in words (the table after it has each verdict).
fn refusal_summary(failed: usize) -> String {
    if failed == 1 {
        "a gate refused the change.".to_owned()
    } else {
        format!("{failed} gates refused the change.")
    }
}

/// A stage as the object of "from": `none` reads as no stage.
fn stage_words(stage: Stage) -> String {
    match stage {
        Stage::None => "no stage".to_owned(),
        s => s.to_string(),
    }
}

/// Where a version of `stage` stays: `in staging`, or `without a stage`.
fn in_stage(stage: Stage) -> String {
    match stage {
        Stage::None => "without a stage".to_owned(),
        s => format!("in {s}"),
    }
}

fn capitalized(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The failed verdicts in a gate refusal.
fn refused_gates(e: &ApiError) -> Option<&[GateVerdict]> {
    match e.source.as_deref() {
        Some(Error::GateRejected { failed, .. }) => Some(failed),
        _ => None,
    }
}

/// A table of gate verdicts, passed or failed, with their reasons.
fn gates_table(caption: &str, stage: Stage, gates: &[GateVerdict], warn: bool) -> Markup {
    let failed = gates.iter().filter(|g| !g.passed).count();
    html! {
        section.gates aria-label=(caption) {
            h2 { (caption) }
            @if gates.is_empty() {
                p.muted { "No gates are set for " (stage) ": the move is not checked." }
            } @else {
                table.data.narrow {
                    thead { tr { th scope="col" { "Gate" } th scope="col" { "Verdict" } th scope="col" { "Why" } } }
                    tbody { @for g in gates {
                        tr {
                            th scope="row" { code { (g.gate) } }
                            td { @if g.passed { span.verdict.good { "✔ passes" } } @else { span.verdict.bad { "✘ refuses" } } }
                            td { (g.reason) }
                        }
                    } }
                }
                @if warn && failed > 0 {
                    p.verdict.bad {
                        (failed) " of " (gates.len()) " gates refuse now: confirming will be refused unless that changes (an approval, for example)."
                    }
                }
            }
        }
    }
}

/// The notice of a change just made: event `seq` of `model`, in words. Only
/// the log's own event is shown, so a crafted link shows nothing untrue.
pub(super) async fn done_notice(
    s: &State,
    model: &ModelName,
    seq: Option<u64>,
) -> Result<Markup, ApiError> {
    let Some(seq) = seq else {
        return Ok(html! {});
    };
    let page = s
        .registry
        .history_page(model, &HistoryFilter::new(), seq.checked_add(1), 1)
        .await?;
    Ok(match page.items.first().filter(|e| e.seq == seq) {
        Some(e) => html! {
            div.notice role="status" {
                strong { "Done: " } (e.kind.name().replace('_', " ")) " by " (e.actor) " — "
                (history::details(model.as_str(), e))
            }
        },
        None => html! {},
    })
}

/// The hint shown instead of forms to someone who may not make changes.
fn hint(viewer: &Viewer, what: &str) -> Markup {
    html! {
        @if !viewer.read_only {
            @if viewer.csrf.is_none() {
                p.hint { a href="/ui/login" { "Sign in" } " with a writer or approver token to " (what) "." }
            } @else if let Some(role) = viewer.role {
                p.hint { "Your token has the " (role) " role: it may not " (what) "." }
            }
        }
    }
}

/// The action forms of the version page: move to another stage, approve or
/// reject for a stage, point an alias at it.
pub(super) fn version_forms(
    viewer: &Viewer,
    model: &str,
    v: &VersionRecord,
    aliases: &[AliasName],
) -> Markup {
    // A read-only server changes nothing: no section, not an empty one.
    if viewer.read_only {
        return html! {};
    }
    let writer = viewer.may(Role::Writer);
    let approver = viewer.may(Role::Approver);
    let targets = v.stage.allowed_targets();
    let default_to = targets
        .iter()
        .copied()
        .find(|t| *t != Stage::Archived)
        .unwrap_or(Stage::Archived);
    let default_stage = match v.stage {
        Stage::Validation | Stage::Production => Stage::Production,
        Stage::Staging => Stage::Validation,
        _ => Stage::Staging,
    };
    let action = actions_href(model);
    html! {
        section aria-labelledby="actions" {
            h2 #actions { "Actions" }
            @if writer.is_none() && approver.is_none() {
                (hint(viewer, "move this version, approve it or point an alias at it"))
            } @else {
                p.muted { "Each change is shown on a confirmation page, with the gates it will meet, before it is made." }
                div.action-forms {
                    @if let Some(csrf) = writer {
                        form.action method="post" action=(action) {
                            h3 { "Move to another stage" }
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="action" value="move";
                            input type="hidden" name="version" value=(v.number);
                            div.field {
                                label for="move-to" { "Target stage (from " (v.stage) ")" }
                                select #move-to name="to" required {
                                    @for t in targets { option value=(t.as_str()) selected[*t == default_to] { (t) } }
                                }
                            }
                            div.field {
                                label for="move-reason" { "Reason (recorded)" }
                                input #move-reason name="reason" required maxlength=(MAX_REASON) placeholder="why this move";
                            }
                            button type="submit" { "Review the move…" }
                        }
                    }
                    @if let Some(csrf) = approver {
                        form.action method="post" action=(action) {
                            h3 { "Approve or reject" }
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="version" value=(v.number);
                            div.field {
                                label for="decide-stage" { "For the move to" }
                                select #decide-stage name="stage" required {
                                    @for t in Stage::ALL.iter().filter(|t| **t != Stage::None) {
                                        option value=(t.as_str()) selected[*t == default_stage] { (t) }
                                    }
                                }
                            }
                            div.field {
                                label for="decide-comment" { "Comment (recorded)" }
                                input #decide-comment name="reason" required maxlength=(MAX_REASON) placeholder="what you checked";
                            }
                            div.buttons {
                                button type="submit" name="action" value="approve" { "Review approval…" }
                                button.danger type="submit" name="action" value="reject" { "Review rejection…" }
                            }
                        }
                    }
                    @if let Some(csrf) = writer {
                        form.action method="post" action=(action) {
                            h3 { "Point an alias here" }
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="action" value="alias";
                            input type="hidden" name="version" value=(v.number);
                            div.field {
                                label for="alias-name" { "Alias" }
                                input #alias-name name="alias" required placeholder="champion";
                            }
                            div.field {
                                label for="alias-protected" { "Protected (moves pass production's gates)" }
                                select #alias-protected name="protected" {
                                    option value="unchanged" selected { "unchanged (new: no)" }
                                    option value="yes" { "yes" }
                                    option value="no" { "no" }
                                }
                            }
                            div.field {
                                label for="alias-reason" { "Reason (recorded)" }
                                input #alias-reason name="reason" required maxlength=(MAX_REASON) placeholder="why it points here";
                            }
                            button type="submit" { "Review the alias…" }
                        }
                        @for (i, a) in aliases.iter().enumerate() {
                            form.action method="post" action=(action) {
                                h3 { "Remove " span.alias { (a) } }
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="action" value="unalias";
                                input type="hidden" name="alias" value=(a);
                                div.field {
                                    label for={ "unalias-reason-" (i) } { "Reason (recorded)" }
                                    input id={ "unalias-reason-" (i) } name="reason" required maxlength=(MAX_REASON) placeholder="why it goes";
                                }
                                button.danger type="submit" { "Review the removal…" }
                            }
                        }
                    }
                }
                @if writer.is_none() { (hint(viewer, "move this version or point an alias at it")) }
                @if approver.is_none() { (hint(viewer, "approve or reject")) }
            }
        }
    }
}

/// The action forms of the model page: roll back, change the traffic split.
pub(super) fn model_forms(viewer: &Viewer, model: &str, state: &ModelState) -> Markup {
    if viewer.read_only {
        return html! {};
    }
    let Some(csrf) = viewer.may(Role::Writer) else {
        return html! {
            section aria-labelledby="actions" {
                h2 #actions { "Actions" }
                (hint(viewer, "roll back production or change the traffic split"))
            }
        };
    };
    let current = state.production().map(|p| p.number);
    let target = state.rollback_target();
    let split = state.traffic_split().map(split_text).unwrap_or_default();
    let action = actions_href(model);
    html! {
        section aria-labelledby="actions" {
            h2 #actions { "Actions" }
            p.muted { "Each change is shown on a confirmation page before it is made." }
            div.action-forms {
                form.action method="post" action=(action) {
                    h3 { "Roll back production" }
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="rollback";
                    @match (current, target) {
                        (Some(c), Some(t)) => {
                            p { "Production returns from v" (c) " to v" (t) "; v" (c) " is archived. No gate runs." }
                            div.field {
                                label for="rollback-reason" { "Reason (recorded)" }
                                input #rollback-reason name="reason" required maxlength=(MAX_REASON) placeholder="what went wrong";
                            }
                            button.danger type="submit" { "Review the rollback…" }
                        },
                        _ => p.muted { "Nothing to roll back to: no earlier version held production." },
                    }
                }
                form.action method="post" action=(action) {
                    h3 { "Traffic split" }
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="split";
                    div.field {
                        label for="split-routes" { "Routes: target=weight, comma-separated (empty removes the split)" }
                        input #split-routes name="split" value=(split) placeholder="@champion=90, @challenger=10" size="36";
                    }
                    div.field {
                        label for="split-reason" { "Reason (recorded)" }
                        input #split-reason name="reason" required maxlength=(MAX_REASON) placeholder="why this split";
                    }
                    button type="submit" { "Review the split…" }
                }
            }
        }
    }
}
