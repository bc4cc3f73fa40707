//! `/ui/models/{model}`: a model's versions, a page at a time, and the trend
//! of each goal metric; with `?at=`, the same page as the model was then.

use axum::extract::State as S;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::html;
use serde::Deserialize;

use super::{
    P, PAGE_SIZE, Q, UiResult, Viewer, chart, href, model_href, num, ok, shell, stage_badge, tags,
    time, version_href,
};
use crate::server::State;
use crate::server::error::ApiError;
use crate::{
    Goal, HistoryFilter, MetricName, ModelName, Stage, VersionFilter, VersionPage, metric_history,
};

/// What the versions table shows: filters, order and page.
#[derive(Deserialize, Default)]
pub(super) struct Listing {
    /// A stage, or empty for any.
    #[serde(default)]
    stage: String,
    /// `key` or `key=value`.
    #[serde(default)]
    tag: String,
    /// A metric that must be present, within `min`/`max` when given.
    #[serde(default)]
    metric: String,
    #[serde(default)]
    min: String,
    #[serde(default)]
    max: String,
    /// A metric to order by; empty: by number.
    #[serde(default)]
    sort: String,
    /// `asc` or `desc` (default: newest, or best, first).
    #[serde(default)]
    order: String,
    /// The page token of the previous page's last version.
    #[serde(default)]
    after: String,
    /// Time travel: the model as it was at this time (RFC 3339, or a
    /// `datetime-local` value read as UTC); empty for now.
    #[serde(default)]
    at: String,
    /// The event a change made from this page's forms appended.
    done: Option<u64>,
}

impl Listing {
    fn descending(&self) -> bool {
        self.order != "asc"
    }

    /// The query string of this listing with `changes` applied.
    fn with(&self, changes: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> = vec![
            ("stage", self.stage.clone()),
            ("tag", self.tag.clone()),
            ("metric", self.metric.clone()),
            ("min", self.min.clone()),
            ("max", self.max.clone()),
            ("sort", self.sort.clone()),
            ("order", self.order.clone()),
            ("at", self.at.clone()),
        ];
        for (k, v) in changes {
            match pairs.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = (*v).to_owned(),
                None if *k == "after" => pairs.push(("after", (*v).to_owned())),
                None => {}
            }
        }
        pairs
    }

    fn href(&self, model: &str, changes: &[(&str, &str)]) -> String {
        let pairs = self.with(changes);
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        href(&model_href(model), &borrowed)
    }

    fn filter(&self) -> Result<VersionFilter, ApiError> {
        let mut f = VersionFilter::new();
        if !self.stage.is_empty() {
            f = f.stage(self.stage.parse::<Stage>()?);
        }
        let tag = self.tag.trim();
        if !tag.is_empty() {
            f = match tag.split_once('=') {
                Some((k, v)) => f.tag_value(k.trim(), v.trim()),
                None => f.tag(tag),
            };
        }
        let bound = |s: &str, which: &str| -> Result<Option<f64>, ApiError> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("{which} {s:?} is not a number")))
        };
        let metric = self.metric.trim();
        if !metric.is_empty() {
            f = f.metric(metric, bound(&self.min, "min")?, bound(&self.max, "max")?);
        }
        Ok(f)
    }

    /// The time asked for, if any.
    fn at(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        parse_time(&self.at)
    }
}

/// A time as a link or a form gives it: RFC 3339 (`2026-03-01T12:30:00Z`), or
/// what `<input type="datetime-local">` sends (`2026-03-01T12:30`, seconds
/// optional), read as UTC since the pages show UTC.
pub(super) fn parse_time(s: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| Some(t.and_utc()))
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "{s:?} is not a time: use 2026-03-01T12:30 (UTC) or RFC 3339"
        ))
    })
}

pub(super) async fn page(
    S(s): S<State>,
    viewer: Viewer,
    P(model): P<String>,
    Q(listing): Q<Listing>,
) -> UiResult {
    let model = ModelName::new(&model)?;
    let at = listing.at()?;
    // One copy of the state (shared records, so 100,000 versions are as many
    // reference counts): the table, the charts and the facts all come from it,
    // now or as it was at `at`.
    let state = match at {
        None => s.registry.model(&model).await?,
        Some(t) => s.registry.model_as_of(&model, t).await?,
    };
    // Who made the last change the page shows (now, or before `at`): that one
    // event, read backwards from its position.
    let last_change = s
        .registry
        .history_page(&model, &HistoryFilter::new(), Some(state.seq() + 1), 1)
        .await?
        .items
        .into_iter()
        .next();
    let specs = state.metric_specs().clone();
    let production = state.production().map(|v| v.number);
    let filter = listing.filter()?;
    filter.error.check()?;
    let mut order = VersionPage::new().limit(PAGE_SIZE);
    if !listing.sort.is_empty() {
        order = order.by_metric(&listing.sort);
    }
    if listing.descending() {
        order = order.descending();
    }
    if !listing.after.is_empty() {
        order = order.after(listing.after.clone());
    }
    let matching: Vec<_> = state
        .versions()
        .iter()
        .filter(|v| filter.matches(v))
        .cloned()
        .collect();
    let page = order.apply(matching)?;
    // The columns: the model's goal metrics, else those on this page.
    let columns: Vec<MetricName> = if specs.is_empty() {
        let mut seen: Vec<MetricName> = Vec::new();
        for v in &page.items {
            for (k, _) in v.metrics.iter() {
                if !seen.contains(k) && seen.len() < 4 {
                    seen.push(k.clone());
                }
            }
        }
        seen
    } else {
        specs.keys().cloned().collect()
    };
    let mut charts = Vec::new();
    for (metric, spec) in &specs {
        let points = metric_history(
            state.versions().iter().map(|v| &**v),
            metric.as_str(),
            |_| true,
        );
        charts.push(chart::trend(
            model.as_str(),
            metric.as_str(),
            spec,
            &points,
            production,
        ));
    }
    let name = model.as_str();
    let arrow = |m: &MetricName| match specs.get(m).map(|s| s.goal) {
        Some(Goal::Maximize) => " ↑",
        Some(Goal::Minimize) => " ↓",
        None => "",
    };
    let sort_link = |key: &str| {
        let desc = listing.sort == key && listing.descending();
        listing.href(
            name,
            &[("sort", key), ("order", if desc { "asc" } else { "desc" })],
        )
    };
    let sorted = |key: &str| -> &'static str {
        if listing.sort != key {
            "none"
        } else if listing.descending() {
            "descending"
        } else {
            "ascending"
        }
    };
    let total = page.total.unwrap_or(page.items.len() as u64);
    let now_href = listing.href(name, &[("at", ""), ("after", "")]);
    let notice = super::actions::done_notice(&s, &model, listing.done).await?;
    let body = html! {
        (notice)
        h1 { (name) @if at.is_some() { " " span.badge.past { "past view" } } }
        @if let Some(t) = at {
            div.past-banner role="status" {
                p {
                    strong { "A past view: " (name) " as it was at " (time(t)) "." }
                    " Production, aliases, stages and the versions below are as they were then (the last change before it: event #"
                    (state.seq()) ", " (time(state.updated_at())) "). Links open the versions' pages as they are now."
                }
                p { a.now href=(now_href) { "← Back to now" } }
            }
        }
        @if !state.description().is_empty() { p.lead { (state.description()) } }
        (tags(state.tags()))
        dl.facts {
            div { dt { "Production" } dd {
                @if let Some(p) = production { a.badge.stage-production href=(version_href(name, p)) { "v" (p) } }
                @else { span.muted { "none" } }
            } }
            div { dt { "Latest" } dd {
                @if let Some(l) = state.latest() { a href=(version_href(name, l.number)) { "v" (l.number) } }
            } }
            div { dt { "Aliases" } dd {
                @for (a, t) in state.aliases() {
                    span.alias { (a) " → " a href=(version_href(name, t.version)) { "v" (t.version) } } " "
                }
                @if state.aliases().is_empty() { span.muted { "none" } }
            } }
            div { dt { "Versions" } dd { (state.version_count()) } }
            div { dt { "Last change" } dd {
                (time(state.updated_at()))
                @if let Some(e) = &last_change { " by " (e.actor) " (" (e.kind.name()) ")" }
            } }
        }
        div.travel {
            @if at.is_some() {
                a href={ (model_href(name)) "/history?before=" (state.seq() + 1) } { "History up to then (" (state.seq()) " changes)" }
            } @else {
                a href={ (model_href(name)) "/history" } { "History (" (state.seq()) " changes)" }
            }
            form.inline-form method="get" action=(model_href(name)) {
                label for="at" { "View as it was at (UTC)" }
                input #at type="datetime-local" name="at" step="1" required
                    value=(at.unwrap_or(state.updated_at()).format("%Y-%m-%dT%H:%M:%S"));
                button type="submit" { "Go" }
                @if at.is_some() { a href=(now_href) { "Now" } }
            }
        }
        @if at.is_none() { (super::actions::model_forms(&viewer, name, &state)) }
        @if !charts.is_empty() {
            section aria-labelledby="trend" {
                h2 #trend { "Goal metrics across versions" }
                div.charts { @for c in &charts { (c) } }
            }
        }
        section aria-labelledby="versions" {
            h2 #versions { "Versions" }
            form.filters method="get" action=(model_href(name)) {
                div.field {
                    label for="stage" { "Stage" }
                    select #stage name="stage" {
                        option value="" selected[listing.stage.is_empty()] { "any" }
                        @for st in Stage::ALL {
                            option value=(st.as_str()) selected[listing.stage == st.as_str()] { (st) }
                        }
                    }
                }
                div.field {
                    label for="tag" { "Tag" }
                    input #tag name="tag" value=(listing.tag) placeholder="key or key=value" size="16";
                }
                div.field {
                    label for="metric" { "Metric" }
                    input #metric name="metric" value=(listing.metric) placeholder="name" size="10" list="metric-names";
                }
                div.field {
                    label for="min" { "min" }
                    input #min name="min" value=(listing.min) inputmode="decimal" size="6";
                }
                div.field {
                    label for="max" { "max" }
                    input #max name="max" value=(listing.max) inputmode="decimal" size="6";
                }
                div.field {
                    label for="sort" { "Sort by" }
                    select #sort name="sort" {
                        option value="" selected[listing.sort.is_empty()] { "number" }
                        @for m in &columns {
                            option value=(m) selected[listing.sort == m.as_str()] { (m) }
                        }
                    }
                }
                div.field {
                    label for="order" { "Order" }
                    select #order name="order" {
                        option value="desc" selected[listing.descending()] { "descending" }
                        option value="asc" selected[!listing.descending()] { "ascending" }
                    }
                }
                @if !listing.at.is_empty() { input type="hidden" name="at" value=(listing.at); }
                datalist #metric-names { @for m in &columns { option value=(m) {} } }
                button type="submit" { "Apply" }
                a.reset href=(model_href(name)) { "Reset" }
            }
            p.muted { (total) " versions match" @if !listing.after.is_empty() { " · a later page" } }
            table.data {
                thead { tr {
                    th scope="col" aria-sort=(sorted("")) { a href=(sort_link("")) { "#" } }
                    th scope="col" { "Semver" }
                    th scope="col" { "Stage" }
                    th scope="col" { "Aliases" }
                    @for m in &columns {
                        th scope="col" .num aria-sort=(sorted(m.as_str())) {
                            a href=(sort_link(m.as_str())) title="Sort by this metric" { (m) (arrow(m)) }
                        }
                    }
                    th scope="col" { "Created by" }
                    th scope="col" { "Created" }
                } }
                tbody {
                    @for v in &page.items {
                        tr.deprecated[v.deprecated.is_some()] {
                            td { a href=(version_href(name, v.number)) { "v" (v.number) } }
                            td { @if let Some(sv) = &v.semver { (sv) } }
                            td { (stage_badge(v.stage)) @if v.deprecated.is_some() { " " span.badge.deprecated { "deprecated" } } }
                            td {
                                @for (a, t) in state.aliases() {
                                    @if t.version == v.number { span.alias { (a) } " " }
                                }
                            }
                            @for m in &columns {
                                td.num { @if let Some(x) = v.metrics.get(m.as_str()) { (num(x)) } @else { span.muted { "–" } } }
                            }
                            td { (v.created_by) }
                            td { (time(v.created_at)) }
                        }
                    }
                    @if page.items.is_empty() {
                        tr { td colspan=(6 + columns.len()) .empty { "No version matches these filters." } }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if !listing.after.is_empty() { a href=(listing.href(name, &[])) { "← First page" } }
                @if let Some(next) = &page.next { a rel="next" href=(listing.href(name, &[("after", next)])) { "Next page →" } }
            }
        }
    };
    ok(shell(
        name,
        Some(&viewer),
        &[(name.to_owned(), model_href(name))],
        body,
    ))
}
