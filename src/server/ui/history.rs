//! `/ui/models/{model}/history`: the audit trail, newest first, a page at a
//! time, filtered by kind, actor and version.

use axum::extract::State as S;
use maud::{Markup, html};
use serde::Deserialize;

use super::{P, PAGE_SIZE, Q, UiResult, Viewer, href, model_href, num, ok, shell, version_href};
use crate::server::State;
use crate::server::error::ApiError;
use crate::{Actor, Event, EventKind, HistoryFilter, ModelName, VersionNumber};

/// Every kind of event, as [`EventKind::name`] spells it.
const KINDS: [&str; 17] = [
    "model_created",
    "version_registered",
    "metrics_added",
    "tags_set",
    "metric_specs_set",
    "version_deprecated",
    "stage_changed",
    "rolled_back",
    "approval_recorded",
    "alias_set",
    "alias_removed",
    "gates_set",
    "traffic_split_set",
    "formats_scanned",
    "version_purged",
    "signature_added",
    "version_description_set",
];

#[derive(Deserialize, Default)]
pub(super) struct Filters {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    version: String,
    /// Events before this sequence number (the previous page's end).
    before: Option<u64>,
}

impl Filters {
    fn filter(&self) -> Result<HistoryFilter, ApiError> {
        let mut f = HistoryFilter::new();
        if !self.kind.is_empty() {
            if !KINDS.contains(&self.kind.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "{:?} is not a kind of event",
                    self.kind
                )));
            }
            f = f.kind(self.kind.clone());
        }
        let actor = self.actor.trim();
        if !actor.is_empty() {
            f = f.actor(Actor::new(actor)?);
        }
        let version = self.version.trim().trim_start_matches('v');
        if !version.is_empty() {
            let n = version.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{version:?} is not a version number"))
            })?;
            f = f.version(VersionNumber::new(n)?);
        }
        Ok(f)
    }
}

pub(super) async fn page(
    S(s): S<State>,
    viewer: Viewer,
    P(model): P<String>,
    Q(q): Q<Filters>,
) -> UiResult {
    let model = ModelName::new(&model)?;
    let name = model.as_str();
    let page = s
        .registry
        .history_page(&model, &q.filter()?, q.before, PAGE_SIZE)
        .await?;
    let base = format!("{}/history", model_href(name));
    let next = page.next.map(|n| {
        href(
            &base,
            &[
                ("kind", &q.kind),
                ("actor", &q.actor),
                ("version", &q.version),
                ("before", &n.to_string()),
            ],
        )
    });
    let body = html! {
        h1 { "History of " (name) }
        form.filters method="get" action=(base) {
            div.field {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    option value="" selected[q.kind.is_empty()] { "any" }
                    @for k in KINDS { option value=(k) selected[q.kind == k] { (k.replace('_', " ")) } }
                }
            }
            div.field {
                label for="actor" { "Actor" }
                input #actor name="actor" value=(q.actor) size="18";
            }
            div.field {
                label for="version" { "Version" }
                input #version name="version" value=(q.version) inputmode="numeric" size="6";
            }
            button type="submit" { "Apply" }
            a.reset href=(base) { "Reset" }
        }
        @if page.items.is_empty() {
            p.empty { "No event matches." }
        } @else {
            table.data {
                thead { tr {
                    th scope="col" .num { "#" } th scope="col" { "When" } th scope="col" { "Who" }
                    th scope="col" { "What" } th scope="col" { "Details" }
                } }
                tbody {
                    @for e in &page.items {
                        tr {
                            td.num { (e.seq) }
                            td { a href=(as_of(name, e)) title="The model as it was right after this change" { (super::time(e.time)) } }
                            td { (e.actor) }
                            td { span.kind { (e.kind.name().replace('_', " ")) } }
                            td { (details(name, e)) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.before.is_some() {
                a href=(href(&base, &[("kind", &q.kind), ("actor", &q.actor), ("version", &q.version)])) { "← Newest" }
            }
            @if let Some(n) = &next { a rel="next" href=(n) { "Older →" } }
        }
    };
    ok(shell(
        &format!("History of {name}"),
        Some(&viewer),
        &[
            (name.to_owned(), model_href(name)),
            ("History".to_owned(), base.clone()),
        ],
        body,
    ))
}

/// The model page as of `e`'s time (to the nanosecond, so the event is in).
fn as_of(model: &str, e: &Event) -> String {
    let t = e.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    href(&model_href(model), &[("at", &t)])
}

fn v(model: &str, n: VersionNumber) -> Markup {
    html! { a href=(version_href(model, n)) { "v" (n) } }
}

fn reason(text: &str) -> Markup {
    html! { @if !text.is_empty() { " — " q { (text) } } }
}

/// What an event did, in words, every value escaped.
pub(super) fn details(model: &str, e: &Event) -> Markup {
    match &e.kind {
        EventKind::ModelCreated { description, .. } => html! { (description) },
        EventKind::VersionRegistered { version } => html! {
            (v(model, version.number))
            @if let Some(s) = &version.semver { " (" (s) ")" }
            @for (k, x) in version.metrics.iter() { " " span.kv { (k) "=" (num(x)) } }
        },
        EventKind::MetricsAdded {
            version,
            metrics,
            overridden,
        } => html! {
            (v(model, *version))
            @for (k, x) in metrics.iter() { " " span.kv { (k) "=" (num(x)) } }
            (overridden_note(overridden.as_deref()))
        },
        EventKind::TagsSet {
            version,
            set,
            removed,
            overridden,
        } => html! {
            @if let Some(n) = version { (v(model, *n)) " " } @else { "model " }
            @for (k, x) in set { span.kv { (k) "=" (x) } " " }
            @for k in removed { span.kv { "−" (k) } " " }
            (overridden_note(overridden.as_deref()))
        },
        EventKind::MetricSpecsSet { specs } => html! {
            @for (k, s) in specs { span.kv { (k) ": " (s.goal) } " " }
        },
        EventKind::VersionDeprecated { version, reason: r } => {
            html! { (v(model, *version)) (reason(r)) }
        }
        EventKind::StageChanged {
            version,
            from,
            to,
            reason: r,
            gates,
            archived,
        } => html! {
            (v(model, *version)) " " (from) " → " strong { (to) }
            @if let Some(a) = archived { " (archived " (v(model, *a)) ")" }
            (reason(r))
            @for g in gates { " " span class={ "verdict " (if g.passed { "good" } else { "bad" }) } title=(g.reason) { (g.gate) } }
        },
        EventKind::RolledBack {
            restored,
            displaced,
            reason: r,
        } => html! {
            "restored " (v(model, *restored)) ", displaced " (v(model, *displaced)) (reason(r))
        },
        EventKind::ApprovalRecorded {
            version,
            stage,
            decision,
            comment,
        } => html! {
            (v(model, *version)) " to " (stage) ": " strong { (decision.as_str()) } (reason(comment))
        },
        EventKind::AliasSet {
            alias,
            version,
            reason: r,
            ..
        } => html! {
            span.alias { (alias) } " → " (v(model, *version)) (reason(r))
        },
        EventKind::AliasRemoved {
            alias, reason: r, ..
        } => html! { span.alias { (alias) } " removed" (reason(r)) },
        EventKind::GatesSet { stage, gates } => html! { (gates.len()) " gates for " (stage) },
        EventKind::TrafficSplitSet { split, reason: r } => html! {
            @if let Some(sp) = split { (serde_json::to_string(sp).unwrap_or_default()) } @else { "cleared" }
            (reason(r))
        },
        EventKind::FormatsScanned {
            version,
            files,
            data_files,
            ..
        } => html! {
            (v(model, *version)) " "
            @for f in files {
                span class={ "verdict " (if f.passed() { "good" } else { "bad" }) } title=(f.to_string()) { (f.path) " " (f.format) } " "
            }
            @if *data_files > 0 { (data_files) " data file(s)" }
        },
        EventKind::VersionPurged { version, reason: r } => {
            html! { (v(model, *version)) " artifact purged" (reason(r)) }
        }
        EventKind::SignatureAdded {
            version,
            key,
            hash,
            reason: r,
            ..
        } => html! {
            (v(model, *version)) " signed by key " code title=(key) { (key.short()) } " (" (hash) ")" (reason(r))
        },
        EventKind::VersionDescriptionSet {
            version,
            description,
            overridden,
        } => html! {
            (v(model, *version)) " description "
            @if description.is_empty() { "cleared" } @else { "set: " q.description { (description) } }
            (overridden_note(overridden.as_deref()))
        },
    }
}

/// The note on an event that overrode a production version's immutability.
fn overridden_note(why: Option<&str>) -> Markup {
    html! { @if let Some(w) = why { " " strong { "override" } (reason(w)) } }
}
