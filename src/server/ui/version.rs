//! `/ui/models/{model}/versions/{version}`: one version's record, provenance
//! and files, and its comparison with production or a version picked.

use axum::extract::State as S;
use maud::{Markup, html};
use serde::Deserialize;

use super::actions;
use super::lineage::{dataset_href, lineage_href};
use super::{
    P, Q, UiResult, Viewer, model_href, num, ok, segment, shell, stage_badge, tags, time,
    version_href,
};
use crate::domain::diff::format::{bytes, hyper, signed};
use crate::server::State;
use crate::server::rest::version_ref;
use crate::{
    DatasetKey, Goal, MapDiff, MetricVerdict, ModelName, OverallVerdict, VersionDiff,
    VersionRecord, flatten_hyperparameters,
};

#[derive(Deserialize)]
pub(super) struct Against {
    /// The version to compare with: a number, semver, alias or stage;
    /// `production` when absent.
    #[serde(default)]
    against: String,
    /// The event a change made from this page's forms appended.
    done: Option<u64>,
}

/// A version in the path: `/ui/models/{model}/versions/{version}…`.
#[derive(Deserialize)]
pub(super) struct At {
    pub(super) model: String,
    pub(super) version: String,
}

pub(super) async fn page(
    S(s): S<State>,
    viewer: Viewer,
    P(at): P<At>,
    Q(q): Q<Against>,
) -> UiResult {
    let model = ModelName::new(&at.model)?;
    let name = model.as_str();
    let v = s.registry.resolve(version_ref(name, &at.version)?).await?;
    let manifest = s.registry.manifest(&v).await?;
    let state_aliases: Vec<_> = s
        .registry
        .model_summary(&model)
        .await?
        .aliases
        .into_iter()
        .filter(|(_, n)| *n == v.number)
        .map(|(a, _)| a)
        .collect();
    let against = if q.against.trim().is_empty() {
        "production".to_owned()
    } else {
        q.against.trim().to_owned()
    };
    // The comparison: `a` is the version compared with, `b` this one.
    let other = s.registry.resolve(version_ref(name, &against)?).await;
    let comparison = match other {
        Ok(o) if o.number == v.number => Err(format!(
            "v{} is {against}: pick another version to compare with.",
            v.number
        )),
        Ok(o) => Ok(s.registry.compare(&o, &v).await?),
        Err(crate::Error::NotFound { .. }) => Err(if q.against.trim().is_empty() {
            "No version is in production: pick a version to compare with.".to_owned()
        } else {
            format!("{name} has no version {against:?}.")
        }),
        Err(e) => return Err(e.into()),
    };
    let title = format!("{name} v{}", v.number);
    let notice = actions::done_notice(&s, &model, q.done).await?;
    let body = html! {
        (notice)
        h1 { (name) " " span.v { "v" (v.number) } " " (stage_badge(v.stage))
            @if let Some(sv) = &v.semver { " " span.semver { (sv) } } }
        @if !v.description.is_empty() { p.lead { (v.description) } }
        (tags(&v.tags))
        p.actions { a href=(lineage_href(name, v.number)) { "Lineage: what it was built from, what was built from it →" } }
        (record(&v, &state_aliases))
        (actions::version_forms(&viewer, name, &v, &state_aliases))
        section aria-labelledby="compare" {
            h2 #compare { "Comparison" }
            form.filters method="get" action=(version_href(name, v.number)) {
                div.field {
                    label for="against" { "Compare with" }
                    input #against name="against" value=(against) placeholder="production, 7, 1.4.0, champion" size="24";
                }
                button type="submit" { "Compare" }
            }
            @match &comparison {
                Ok(diff) => (diff_view(name, diff)),
                Err(note) => p.muted { (note) },
            }
        }
        (metrics(&v, &comparison))
        (signatures(name, &v))
        (format_scan(&v))
        (provenance(&v))
        section aria-labelledby="files" {
            h2 #files { "Files (" (manifest.len()) ", " (bytes(manifest.total_size())) ")" }
            table.data {
                thead { tr {
                    th scope="col" { "Path" } th scope="col" .num { "Size" }
                    th scope="col" { "BLAKE3" } th scope="col" { "SHA-256" }
                } }
                tbody {
                    @for e in manifest.entries() {
                        tr {
                            td { a href={ "/api/v1/models/" (segment(name)) "/versions/" (v.number) "/files/" (segment(e.path.as_str())) } download { (e.path) } }
                            td.num title={ (e.size) " bytes" } { (bytes(e.size)) }
                            td { code.digest { (e.digest) } }
                            td { @if let Some(d) = &e.sha256 { code.digest { (d) } } @else { span.muted { "not recorded" } } }
                        }
                    }
                }
            }
        }
    };
    ok(shell(
        &title,
        Some(&viewer),
        &[
            (name.to_owned(), model_href(name)),
            (format!("v{}", v.number), version_href(name, v.number)),
        ],
        body,
    ))
}

fn record(v: &VersionRecord, aliases: &[crate::AliasName]) -> Markup {
    html! {
        dl.facts {
            div { dt { "Stage" } dd { (stage_badge(v.stage)) @if let Some(t) = v.stage_since { " since " (time(t)) } } }
            div { dt { "Aliases" } dd {
                @for a in aliases { span.alias { (a) } " " }
                @if aliases.is_empty() { span.muted { "none" } }
            } }
            div { dt { "Created" } dd { (time(v.created_at)) " by " (v.created_by) } }
            div { dt { "Size" } dd { (bytes(v.size)) ", " (v.files) " files" } }
            div.wide { dt { "Artifact" } dd { code.digest { (v.artifact) } } }
            @if let Some(d) = &v.deprecated {
                div.wide { dt { "Deprecated" } dd { (time(d.at)) " by " (d.by) @if !d.reason.is_empty() { ": " (d.reason) } } }
            }
            @for (stage, by) in &v.approvals {
                div.wide { dt { "Approvals for " (stage) } dd {
                    @for (who, a) in by {
                        span { (who) ": " (a.decision.as_str()) @if !a.comment.is_empty() { " (" (a.comment) ")" } } " "
                    }
                } }
            }
        }
    }
}

/// Who signed the version's files, with which key, and a link to each
/// bundle (what `model_signing verify key` checks).
fn signatures(model: &str, v: &VersionRecord) -> Markup {
    html! {
        section aria-labelledby="signatures" {
            h2 #signatures { "Signatures (" (v.signatures.len()) ")" }
            @if v.signatures.is_empty() {
                p.muted { "Not signed. Sign with " code { "modelreg version sign" } " or "
                    code { "Session::sign_version" } "; a " code { "signed" } " gate can require it." }
            } @else {
                table.data tabindex="0" {
                    thead { tr {
                        th scope="col" { "Added by" } th scope="col" { "Key id" } th scope="col" { "Files hashed with" }
                        th scope="col" { "When" } th scope="col" { "Reason" } th scope="col" { "Bundle" }
                    } }
                    tbody {
                        @for sig in &v.signatures {
                            tr {
                                td { (sig.by) }
                                td { code.digest title=(sig.key) { (sig.key.short()) } }
                                td { (sig.hash) }
                                td { (time(sig.at)) }
                                td { @if sig.reason.is_empty() { span.muted { "–" } } @else { (sig.reason) } }
                                td { a href={ "/api/v1/models/" (segment(model)) "/versions/" (v.number) "/signatures/" (segment(&sig.bundle.to_string())) } download
                                    aria-label={ "Bundle of the signature by " (sig.by) " with key " (sig.key.short()) } { "bundle" } }
                            }
                        }
                    }
                }
                p.muted { "A signature proves that the key's holder approved exactly these files; not who holds the key, nor that the record's tags, metrics or lineage are true. Keys were checked when each signature was added." }
            }
        }
    }
}

/// The latest format scan's verdict: what the `format_policy` gate reads.
fn format_scan(v: &VersionRecord) -> Markup {
    html! {
        section aria-labelledby="scan" {
            h2 #scan { "Format scan" }
            @match &v.scan {
                None => p.muted { "Not scanned. Scan with " code { "modelreg version scan" } " (the " code { "format_policy" } " gate needs a scan)." },
                Some(scan) => {
                    @let refused = scan.refused().count();
                    p {
                        @if refused == 0 { span.verdict.good { "passed" } } @else { span.verdict.bad { (refused) " refused" } }
                        " — scanned " (time(scan.at)) " by " (scan.by) ", scanner " (scan.scanner)
                        @if scan.scanner != crate::scan::SCANNER_VERSION { " " strong { "(an older scanner: scan again for the gate)" } }
                        "; " (scan.data_files) " plain data file(s)."
                    }
                    @if !scan.files.is_empty() {
                        table.data.narrow tabindex="0" {
                            thead { tr { th scope="col" { "Path" } th scope="col" { "Format" } th scope="col" { "Verdict" } } }
                            tbody {
                                @for f in &scan.files {
                                    tr {
                                        td { (f.path) @if let Some(m) = &f.member { " (" (m) ")" } }
                                        td { (f.format) }
                                        td { @match &f.refused {
                                            None => span.verdict.good { "passed" },
                                            Some(why) => span.verdict.bad { "refused: " (why) },
                                        } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn metrics(v: &VersionRecord, comparison: &Result<VersionDiff, String>) -> Markup {
    let spec = |m: &str| {
        comparison
            .as_ref()
            .ok()
            .and_then(|d| d.metrics.iter().find(|x| x.name.as_str() == m))
            .and_then(|x| x.spec)
    };
    html! {
        section aria-labelledby="metrics" {
            h2 #metrics { "Metrics" }
            @if v.metrics.is_empty() { p.muted { "None recorded." } }
            @else {
                table.data.narrow tabindex="0" {
                    thead { tr { th scope="col" { "Metric" } th scope="col" .num { "Value" } th scope="col" { "Goal" } } }
                    tbody {
                        @for (m, x) in v.metrics.iter() {
                            tr {
                                td { (m) }
                                td.num { (num(x)) }
                                td { @match spec(m.as_str()) {
                                    Some(s) => {
                                        (match s.goal { Goal::Maximize => "higher is better", Goal::Minimize => "lower is better" })
                                        @if let Some(t) = s.tolerance { ", tolerance " (num(t)) }
                                    },
                                    None => span.muted { "–" },
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn provenance(v: &VersionRecord) -> Markup {
    let p = &v.provenance;
    let hyper_params = flatten_hyperparameters(&p.hyperparameters);
    let env = p.environment.flatten();
    html! {
        section aria-labelledby="provenance" {
            h2 #provenance { "Provenance" }
            dl.facts {
                div.wide { dt { "Code" } dd {
                    @if let Some(c) = &p.code {
                        @if let Some(r) = &c.repository { (r) " " }
                        code { (c.commit) }
                        @if c.dirty { " " span.badge.warn { "uncommitted changes" } }
                    } @else { span.muted { "not recorded" } }
                } }
                div.wide { dt { "Parents" } dd {
                    @for parent in &p.parents {
                        span { (parent.relation) " " a href=(version_href(parent.model.as_str(), parent.version)) { (parent.model) " v" (parent.version) } } " "
                    }
                    @if p.parents.is_empty() { span.muted { "none" } }
                } }
            }
            h3 { "Datasets" }
            @if p.datasets.is_empty() { p.muted { "None recorded." } }
            @else {
                table.data {
                    thead { tr { th scope="col" { "Role" } th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Digest" } th scope="col" { "URI" } th scope="col" { "Impact" } } }
                    tbody { @for d in &p.datasets { tr {
                        td { (d.role) }
                        td { (d.name) } td { @if let Some(x) = &d.version { (x) } }
                        td { @if let Some(x) = &d.digest { code.digest { (x) } } }
                        td { @if let Some(x) = &d.uri { code { (x) } } }
                        td { a href=(dataset_href(&DatasetKey::from(d))) { "what it affects →" } }
                    } } }
                }
            }
            div.two {
                div {
                    h3 { "Hyperparameters" }
                    @if hyper_params.is_empty() { p.muted { "None recorded." } }
                    @else { table.data.narrow tabindex="0" { tbody { @for (k, x) in &hyper_params { tr { th scope="row" { (k) } td { code { (hyper(x)) } } } } } } }
                }
                div {
                    h3 { "Environment" }
                    @if env.is_empty() { p.muted { "Not recorded." } }
                    @else { table.data.narrow tabindex="0" { tbody { @for (k, x) in &env { tr { th scope="row" { (k) } td { (x) } } } } } }
                }
            }
        }
    }
}

fn verdict_class(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Improved => "good",
        MetricVerdict::Regressed => "bad",
        MetricVerdict::Unchanged => "same",
        _ => "neutral",
    }
}

fn verdict_label(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Improved => "▲ improved",
        MetricVerdict::Regressed => "▼ regressed",
        MetricVerdict::Unchanged => "= within tolerance",
        MetricVerdict::Changed => "changed (no goal set)",
        MetricVerdict::OnlyInA => "only in the other",
        MetricVerdict::OnlyInB => "only in this one",
    }
}

fn overall(v: OverallVerdict) -> (&'static str, &'static str) {
    match v {
        OverallVerdict::Improved => ("good", "better"),
        OverallVerdict::Regressed => ("bad", "worse"),
        OverallVerdict::Mixed => ("warn", "mixed: some better, some worse"),
        OverallVerdict::Unchanged => ("same", "no change beyond tolerance"),
        OverallVerdict::Inconclusive => ("neutral", "inconclusive"),
    }
}

fn map_diff<T>(title: &str, d: &MapDiff<T>, show: impl Fn(&T) -> String) -> Markup {
    html! {
        @if !(d.changed.is_empty() && d.added.is_empty() && d.removed.is_empty()) {
            h3 { (title) }
            table.data.narrow tabindex="0" {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Other" } th scope="col" { "This" } } }
                tbody {
                    @for c in &d.changed { tr.changed { th scope="row" { (c.key) } td { code { (show(&c.a)) } } td { code { (show(&c.b)) } } } }
                    @for c in &d.added { tr.added { th scope="row" { (c.key) } td { span.muted { "absent" } } td { code { (show(&c.value)) } } } }
                    @for c in &d.removed { tr.removed { th scope="row" { (c.key) } td { code { (show(&c.value)) } } td { span.muted { "absent" } } } }
                }
            }
        }
    }
}

fn diff_view(model: &str, d: &VersionDiff) -> Markup {
    let (class, words) = overall(d.verdict);
    let other = html! { a href=(version_href(model, d.a.number)) { "v" (d.a.number) } };
    html! {
        p class={ "verdict " (class) } { "Against " (other) ": " strong { (words) } }
        @if !d.metrics.is_empty() {
            table.data tabindex="0" {
                caption { "Metrics: v" (d.a.number) " (other) → v" (d.b.number) " (this)" }
                thead { tr {
                    th scope="col" { "Metric" } th scope="col" .num { "v" (d.a.number) }
                    th scope="col" .num { "v" (d.b.number) } th scope="col" .num { "Change" }
                    th scope="col" .num { "Relative" } th scope="col" { "Verdict" }
                } }
                tbody {
                    @for m in &d.metrics {
                        tr {
                            th scope="row" { (m.name) }
                            td.num { @if let Some(x) = m.a { (num(x)) } }
                            td.num { @if let Some(x) = m.b { (num(x)) } }
                            td.num { @if let Some(x) = m.change { (signed(x)) } }
                            td.num { @if let Some(x) = m.relative { (format!("{:+.2} %", x * 100.0)) } }
                            td { span class={ "verdict " (verdict_class(m.verdict)) } { (verdict_label(m.verdict)) } }
                        }
                    }
                }
            }
        }
        (map_diff("Hyperparameters", &d.hyperparameters, hyper))
        (map_diff("Environment", &d.environment, String::clone))
        @if !(d.datasets.changed.is_empty() && d.datasets.added.is_empty() && d.datasets.removed.is_empty()) {
            h3 { "Datasets" }
            ul.changes {
                @for c in &d.datasets.changed { li.changed { (c.b.role) " " (c.b.name) ": " (c.a.version.as_deref().unwrap_or("?")) " → " (c.b.version.as_deref().unwrap_or("?")) } }
                @for x in &d.datasets.added { li.added { "added " (x.role) " " (x.name) @if let Some(v) = &x.version { " " (v) } } }
                @for x in &d.datasets.removed { li.removed { "removed " (x.role) " " (x.name) @if let Some(v) = &x.version { " " (v) } } }
            }
        }
        @if let Some(c) = &d.code {
            h3 { "Code" }
            p { code { (c.a.as_ref().map_or("none", |x| x.commit.as_str())) } " → " code { (c.b.as_ref().map_or("none", |x| x.commit.as_str())) } }
        }
        @if let Some(a) = &d.artifact {
            h3 { "Files" }
            p.muted { (a.unchanged) " unchanged; " (bytes(a.shared_bytes)) " of this version's bytes are shared with the other." }
            @if !(a.changed.is_empty() && a.added.is_empty() && a.removed.is_empty()) {
                ul.changes {
                    @for c in &a.changed { li.changed { code { (c.path) } ": " (bytes(c.a_size)) " → " (bytes(c.b_size)) } }
                    @for e in &a.added { li.added { "added " code { (e.path) } " (" (bytes(e.size)) ")" } }
                    @for e in &a.removed { li.removed { "removed " code { (e.path) } " (" (bytes(e.size)) ")" } }
                }
            }
        }
    }
}
