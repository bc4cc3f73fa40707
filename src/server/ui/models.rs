//! `/ui/`: every model, searchable by name and tag.

use axum::extract::State as S;
use maud::html;
use serde::Deserialize;

use super::{Q, UiResult, Viewer, href, model_href, ok, shell, tags, time, version_href};
use crate::server::State;
use crate::{HistoryFilter, ModelSummary};

#[derive(Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    q: String,
}

/// Whether `m` matches the search: its name, a tag key or value, or a whole
/// `key=value`, case-insensitively.
fn matches(m: &ModelSummary, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return true;
    }
    m.name.as_str().contains(&q)
        || m.tags.iter().any(|(k, v)| {
            let (k, v) = (k.as_str().to_lowercase(), v.to_lowercase());
            k.contains(&q) || v.contains(&q) || format!("{k}={v}") == q
        })
}

pub(super) async fn page(S(s): S<State>, viewer: Viewer, Q(search): Q<Search>) -> UiResult {
    let all = s.registry.model_summaries().await?;
    let total = all.len();
    let shown: Vec<_> = all.into_iter().filter(|m| matches(m, &search.q)).collect();
    // Who made each model's last change: its newest event, one record read.
    let mut last = Vec::with_capacity(shown.len());
    for m in &shown {
        let page = s
            .registry
            .history_page(&m.name, &HistoryFilter::new(), None, 1)
            .await?;
        last.push(page.items.into_iter().next().map(|e| e.actor));
    }
    let body = html! {
        h1 { "Models" }
        form.filters method="get" action="/ui/" role="search" {
            div.field {
                label for="q" { "Search by name or tag" }
                input #q type="search" name="q" value=(search.q) placeholder="fraud, team=risk";
            }
            button type="submit" { "Search" }
            @if !search.q.is_empty() { a.reset href="/ui/" { "Clear" } }
        }
        p.muted {
            @if search.q.is_empty() { (total) " models" }
            @else { (shown.len()) " of " (total) " models match" }
        }
        @if shown.is_empty() {
            p.empty { "No model matches." }
        } @else {
            table.data {
                thead { tr {
                    th scope="col" { "Model" }
                    th scope="col" { "Production" }
                    th scope="col" { "Aliases" }
                    th scope="col" { "Latest" }
                    th scope="col" .num { "Versions" }
                    th scope="col" .num { "Changes" }
                    th scope="col" { "Last change" }
                } }
                tbody {
                    @for (m, who) in shown.iter().zip(&last) {
                        tr {
                            td {
                                a.name href=(model_href(m.name.as_str())) { (m.name) }
                                @if !m.description.is_empty() { div.muted { (m.description) } }
                                (tags(&m.tags))
                            }
                            td {
                                @if let Some(p) = m.production {
                                    a.badge.stage-production href=(version_href(m.name.as_str(), p)) { "v" (p) }
                                } @else { span.muted { "none" } }
                            }
                            td {
                                @for (a, n) in &m.aliases {
                                    span.alias { (a) " → " a href=(version_href(m.name.as_str(), n)) { "v" (n) } } " "
                                }
                            }
                            td {
                                @if let Some(l) = m.latest {
                                    a href=(version_href(m.name.as_str(), l)) { "v" (l) }
                                }
                            }
                            td.num { (m.versions) }
                            td.num {
                                a href=(href(&format!("{}/history", model_href(m.name.as_str())), &[])) { (m.events) }
                            }
                            td {
                                @if let Some(who) = who { (who) br; }
                                span.muted { (time(m.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(shell("Models", Some(&viewer), &[], body))
}
