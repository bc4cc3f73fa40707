//! Lineage pictures, drawn on the server as SVG:
//!
//! - `/ui/models/{model}/versions/{version}/lineage`: what a version was
//!   built from (left) and what was built from it (right);
//! - `/ui/lineage/dataset?name=…&version=…&digest=…`: every version a dataset
//!   affects, by model and stage, and the picture of it.
//!
//! Both build the registry's [`LineageGraph`](crate::LineageGraph) once and
//! walk it ([`Registry::lineage`](crate::Registry::lineage): every model is
//! read, as `downstream` must). A picture has at most [`MAX_NODES`] nodes,
//! nearest first, and walks at most `depth` edges ([`DEFAULT_DEPTH`], at most
//! [`MAX_DEPTH`]); what is left out is counted on the page.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State as S;
use maud::{Markup, html};
use serde::Deserialize;

use super::version::At;
use super::{P, Q, UiResult, Viewer, href, model_href, ok, shell, stage_badge, time, version_href};
use crate::server::State;
use crate::server::error::ApiError;
use crate::server::rest::version_ref;
use crate::{
    DatasetKey, Digest, LineageEdgeKind, LineageNode, LineageSubgraph, ModelName, Stage,
    VersionKey, VersionNumber, VersionRecord,
};

/// Edges walked when the page does not say.
const DEFAULT_DEPTH: usize = 3;
/// Edges walked at most.
const MAX_DEPTH: usize = 12;
/// Nodes drawn at most; the nearest are kept.
const MAX_NODES: usize = 40;
/// Affected versions listed at most on the dataset page.
const MAX_ROWS: usize = 100;

#[derive(Deserialize, Default)]
pub(super) struct Depth {
    #[serde(default)]
    depth: Option<usize>,
}

impl Depth {
    fn get(&self) -> usize {
        self.depth.unwrap_or(DEFAULT_DEPTH).clamp(1, MAX_DEPTH)
    }
}

/// A dataset, as the version page links to it.
#[derive(Deserialize)]
pub(super) struct DatasetQuery {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    depth: Option<usize>,
}

/// The link to what the dataset `d` affects.
pub(super) fn dataset_href(d: &DatasetKey) -> String {
    let digest = d.digest.map(|x| x.to_string()).unwrap_or_default();
    href(
        "/ui/lineage/dataset",
        &[
            ("name", &d.name),
            ("version", d.version.as_deref().unwrap_or("")),
            ("digest", &digest),
        ],
    )
}

/// The link to a version's lineage picture.
pub(super) fn lineage_href(model: &str, n: VersionNumber) -> String {
    format!("{}/lineage", version_href(model, n))
}

// ----- the pages -------------------------------------------------------------------

pub(super) async fn version_page(
    S(s): S<State>,
    viewer: Viewer,
    P(at): P<At>,
    Q(q): Q<Depth>,
) -> UiResult {
    let model = ModelName::new(&at.model)?;
    let name = model.as_str();
    let v = s.registry.resolve(version_ref(name, &at.version)?).await?;
    let depth = q.get();
    let key = VersionKey::new(model.clone(), v.number);
    let graph = s.registry.lineage().await?;
    // One edge further than shown, to say whether there is more beyond.
    let up = graph.upstream(&key, Some(depth + 1))?;
    let down = graph.downstream(&LineageNode::Version(key.clone()), Some(depth + 1))?;
    let picture = Picture::new(&[&up, &down], depth);
    let parents = up.versions().filter(|n| n.depth == 1).count();
    let children = down.versions().filter(|n| n.depth == 1).count();
    let here = lineage_href(name, v.number);
    let title = format!("Lineage of {name} v{}", v.number);
    let body = html! {
        h1 { "Lineage of " (name) " " span.v { "v" (v.number) } " " (stage_badge(v.stage)) }
        p.lead {
            "What this version was built from (to its left) and what was built from it (to its right): "
            (parents) " parent" @if parents != 1 { "s" } ", "
            (children) " child" @if children != 1 { "ren" } ", "
            @let own = up.datasets().filter(|(_, d)| *d == 1).count();
            (own) " dataset" @if own != 1 { "s" } " of its own."
        }
        (depth_form(&here, depth))
        (picture.draw(&format!("Lineage of {name} v{}", v.number)))
        (picture.notes(&here, depth))
        (picture.edge_table())
    };
    ok(shell(
        &title,
        Some(&viewer),
        &[
            (name.to_owned(), model_href(name)),
            (format!("v{}", v.number), version_href(name, v.number)),
            ("lineage".to_owned(), here.clone()),
        ],
        body,
    ))
}

pub(super) async fn dataset_page(
    S(s): S<State>,
    viewer: Viewer,
    Q(q): Q<DatasetQuery>,
) -> UiResult {
    let mut key = DatasetKey::new(q.name.clone());
    if !q.version.is_empty() {
        key = key.version(q.version.clone());
    }
    if !q.digest.trim().is_empty() {
        key = key.digest(q.digest.trim().parse::<Digest>()?);
    }
    let depth = Depth { depth: q.depth }.get();
    let node = LineageNode::Dataset(key.clone());
    let graph = s.registry.lineage().await?;
    if !graph.contains(&node) {
        return Err(ApiError::not_found(format!("no version was built with dataset {key}")).into());
    }
    let affected = graph.downstream(&node, None)?;
    let picture = Picture::new(&[&affected], depth);
    let others: Vec<&DatasetKey> = {
        let mut v: Vec<_> = graph
            .datasets_named(&key.name)
            .filter(|k| **k != key)
            .collect();
        v.sort();
        v
    };
    let here = dataset_href(&key);
    let title = format!("Dataset {key}");
    let body = html! {
        h1 { "Dataset " span.v { (key) } }
        (impact(&affected))
        @if !others.is_empty() {
            p.muted { "Other versions of " (key.name) ": "
                @for o in &others { a href=(dataset_href(o)) { (o) } " " } }
        }
        h2 { "Picture" }
        (depth_form(&here, depth))
        (picture.draw(&format!("Versions built on dataset {key}")))
        (picture.notes(&here, depth))
        (picture.edge_table())
    };
    ok(shell(
        &title,
        Some(&viewer),
        &[(format!("dataset {}", key.name), here.clone())],
        body,
    ))
}

fn depth_form(action: &str, depth: usize) -> Markup {
    // `action` may carry a query (the dataset's): a form's GET would drop it,
    // so its pairs go along as hidden fields.
    let (path, query) = action.split_once('?').unwrap_or((action, ""));
    html! {
        form.filters method="get" action=(path) {
            @for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                input type="hidden" name=(k) value=(v);
            }
            div.field {
                label for="depth" { "Depth (edges)" }
                input #depth type="number" name="depth" min="1" max=(MAX_DEPTH) value=(depth) size="3";
            }
            button type="submit" { "Show" }
        }
    }
}

/// Every affected version, by model: how many, which is in production, and
/// the first [`MAX_ROWS`] by stage (production first), newest first.
fn impact(affected: &LineageSubgraph) -> Markup {
    let versions: Vec<(&VersionKey, Option<&Arc<VersionRecord>>, usize)> = affected
        .versions()
        .filter_map(|n| n.version().map(|k| (k, n.record.as_ref(), n.depth)))
        .collect();
    let mut by_model: BTreeMap<&ModelName, (usize, Option<VersionNumber>, usize)> = BTreeMap::new();
    for (k, r, d) in &versions {
        let e = by_model.entry(&k.model).or_insert((0, None, 0));
        e.0 += 1;
        if r.is_some_and(|r| r.stage == Stage::Production) {
            e.1 = Some(k.version);
        }
        if *d == 1 {
            e.2 += 1;
        }
    }
    let rank = |r: Option<&Arc<VersionRecord>>| match r.map(|r| r.stage) {
        Some(Stage::Production) => 0,
        Some(Stage::Validation) => 1,
        Some(Stage::Staging) => 2,
        Some(Stage::None) => 3,
        _ => 4,
    };
    let order = |a: &(&VersionKey, Option<&Arc<VersionRecord>>, usize),
                 b: &(&VersionKey, Option<&Arc<VersionRecord>>, usize)| {
        rank(a.1)
            .cmp(&rank(b.1))
            .then(b.0.version.cmp(&a.0.version))
            .then(a.0.model.cmp(&b.0.model))
    };
    // Only the first MAX_ROWS are listed: select them, then sort those (a full
    // sort of 100,000 affected versions was most of this page's time).
    let mut rows = versions.clone();
    if rows.len() > MAX_ROWS {
        rows.select_nth_unstable_by(MAX_ROWS, order);
    }
    let listed = rows.len().min(MAX_ROWS);
    rows[..listed].sort_by(order);
    let in_production = by_model.values().filter(|e| e.1.is_some()).count();
    html! {
        section aria-labelledby="affected" {
            h2 #affected { "What it affects" }
            @if versions.is_empty() {
                p.muted { "No version was built with it." }
            } @else {
                p class={ "verdict " (if in_production > 0 { "bad" } else { "same" }) } {
                    strong { (versions.len()) " version" @if versions.len() != 1 { "s" } }
                    " in " (by_model.len()) " model" @if by_model.len() != 1 { "s" }
                    " were built with it, directly or from a version that was; "
                    @if in_production > 0 { strong { (in_production) " in production" } "." }
                    @else { "none is in production." }
                }
                table.data.narrow {
                    thead { tr {
                        th scope="col" { "Model" } th scope="col" .num { "Affected" }
                        th scope="col" .num { "Directly" } th scope="col" { "Production" }
                    } }
                    tbody { @for (m, (n, prod, direct)) in &by_model { tr {
                        td { a href=(model_href(m.as_str())) { (m) } }
                        td.num { (n) } td.num { (direct) }
                        td { @if let Some(p) = prod { span.verdict.bad { "▼ " a href=(version_href(m.as_str(), *p)) { "v" (p) } " is affected" } }
                             @else { span.muted { "not affected" } } }
                    } } }
                }
                table.data {
                    caption { "Affected versions, production first"
                        @if rows.len() > MAX_ROWS { " (the first " (MAX_ROWS) " of " (rows.len()) ")" } }
                    thead { tr {
                        th scope="col" { "Version" } th scope="col" { "Stage" }
                        th scope="col" .num { "Edges away" } th scope="col" { "Created" }
                    } }
                    tbody { @for (k, r, d) in rows.iter().take(MAX_ROWS) { tr {
                        td { a href=(version_href(k.model.as_str(), k.version)) { (k.model) " v" (k.version) } }
                        td { @if let Some(r) = r { (stage_badge(r.stage)) } }
                        td.num { (d) }
                        td { @if let Some(r) = r { (time(r.created_at)) } }
                    } } }
                }
                @if rows.len() > MAX_ROWS {
                    p.muted { (rows.len() - MAX_ROWS) " more not listed: the REST API lists them all ("
                        code { "GET /api/v1/lineage?of=dataset:…&direction=downstream" } ")." }
                }
            }
        }
    }
}

// ----- the picture -----------------------------------------------------------------

/// A node to draw.
struct Node {
    node: LineageNode,
    record: Option<Arc<VersionRecord>>,
    origin: bool,
}

/// The nodes and edges to draw, with what was left out counted.
struct Picture {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize, LineageEdgeKind)>,
    /// Within the depth but over [`MAX_NODES`].
    hidden: usize,
    /// One edge beyond the depth.
    beyond: usize,
}

impl Picture {
    /// The union of `walks` (all from one origin), up to `depth` edges away,
    /// nearest first, at most [`MAX_NODES`].
    fn new(walks: &[&LineageSubgraph], depth: usize) -> Picture {
        let mut candidates: Vec<(usize, usize, usize)> = Vec::new(); // (depth, walk, index)
        for (w, walk) in walks.iter().enumerate() {
            for (i, n) in walk.nodes().iter().enumerate() {
                candidates.push((n.depth, w, i));
            }
        }
        // Stable: within a depth, each walk's breadth-first order.
        candidates.sort_by_key(|c| c.0);
        let mut index: HashMap<&LineageNode, usize> = HashMap::new();
        let mut nodes = Vec::new();
        let (mut hidden, mut beyond) = (0, 0);
        for (d, w, i) in candidates {
            let n = &walks[w].nodes()[i];
            if index.contains_key(&n.node) {
                continue;
            }
            if d > depth {
                beyond += 1;
            } else if nodes.len() >= MAX_NODES {
                hidden += 1;
            } else {
                index.insert(&n.node, nodes.len());
                nodes.push(Node {
                    node: n.node.clone(),
                    record: n.record.clone(),
                    origin: d == 0,
                });
            }
        }
        let mut edges = Vec::new();
        for walk in walks {
            for e in walk.edges() {
                let from = index.get(&walk.nodes()[e.from].node);
                let to = index.get(&walk.nodes()[e.to].node);
                if let (Some(&from), Some(&to)) = (from, to)
                    && !edges.contains(&(from, to, e.kind))
                {
                    edges.push((from, to, e.kind));
                }
            }
        }
        Picture {
            nodes,
            edges,
            hidden,
            beyond,
        }
    }

    fn notes(&self, here: &str, depth: usize) -> Markup {
        let deeper = href(here, &[("depth", &(depth + 2).min(MAX_DEPTH).to_string())]);
        html! {
            @if self.hidden > 0 {
                p.note role="note" { strong { (self.hidden) " more not shown" } ": a picture holds at most "
                    (MAX_NODES) " nodes, the nearest first; the table below lists the edges drawn." }
            }
            @if self.beyond > 0 {
                p.note role="note" { "More lineage lies beyond " (depth) " edge" @if depth != 1 { "s" } ". "
                    @if depth < MAX_DEPTH { a href=(deeper) { "Show deeper" } } }
            }
        }
    }

    /// The edges as a table: the picture's text for screen readers, and links
    /// a keyboard reaches in reading order.
    fn edge_table(&self) -> Markup {
        html! {
            @if !self.edges.is_empty() {
                table.data {
                    caption { "Edges drawn: each input, how it was used, and the version built from it" }
                    thead { tr { th scope="col" { "Input" } th scope="col" { "Used as" } th scope="col" { "Built" } } }
                    tbody { @for (from, to, kind) in &self.edges { tr {
                        td { (self.link(*from)) } td { (kind) } td { (self.link(*to)) }
                    } } }
                }
            }
        }
    }

    fn link(&self, i: usize) -> Markup {
        let n = &self.nodes[i];
        html! {
            @match node_href(&n.node) {
                Some(h) => a href=(h) { (label(&n.node)) },
                None => code { (label(&n.node)) },
            }
            @if let Some(r) = &n.record { " " (stage_badge(r.stage)) }
        }
    }

    fn draw(&self, what: &str) -> Markup {
        let pairs: Vec<(usize, usize)> = self.edges.iter().map(|(a, b, _)| (*a, *b)).collect();
        let Layout { layer, rows, via } = layout(self.nodes.len(), &pairs);
        let tallest = rows.iter().map(Vec::len).max().unwrap_or(1);
        let mut pos = vec![(0.0, 0.0); layer.len()];
        for (l, row) in rows.iter().enumerate() {
            let offset = (tallest - row.len()) as f64 * ROW_H / 2.0;
            for (r, &n) in row.iter().enumerate() {
                pos[n] = (PAD + l as f64 * COL_W, PAD + offset + r as f64 * ROW_H);
            }
        }
        let width = 2.0 * PAD + (rows.len().max(1) - 1) as f64 * COL_W + NODE_W;
        let height = 2.0 * PAD + (tallest - 1) as f64 * ROW_H + NODE_H;
        let label = format!(
            "{what}: {} nodes and {} edges, inputs to the left of what was built from them",
            self.nodes.len(),
            self.edges.len()
        );
        // An edge: a curve across each gap between columns, a straight line
        // through each waypoint's column; its label in the last gap.
        let edge = |e: usize| -> (String, (f64, f64)) {
            let (from, to, _) = self.edges[e];
            let mid = |i: usize| pos[i].1 + NODE_H / 2.0;
            let mut d = format!("M{:.1},{:.1}", pos[from].0 + NODE_W, mid(from));
            let mut at = (pos[from].0 + NODE_W, mid(from));
            let gap = |d: &mut String, at: &mut (f64, f64), x: f64, y: f64| {
                let mx = (at.0 + x) / 2.0;
                d.push_str(&format!(
                    " C{mx:.1},{:.1} {mx:.1},{y:.1} {x:.1},{y:.1}",
                    at.1
                ));
                let middle = ((at.0 + x) / 2.0, (at.1 + y) / 2.0);
                *at = (x, y);
                middle
            };
            for &w in &via[e] {
                gap(&mut d, &mut at, pos[w].0, mid(w));
                d.push_str(&format!(" L{:.1},{:.1}", pos[w].0 + NODE_W, mid(w)));
                at = (pos[w].0 + NODE_W, mid(w));
            }
            let middle = gap(&mut d, &mut at, pos[to].0, mid(to));
            (d, middle)
        };
        html! {
            figure.lineage {
                // A group, not an image: its nodes are links.
                svg viewBox={ "0 0 " (width) " " (height) } width=(width) role="group" aria-label=(label) {
                    defs {
                        marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                            path d="M 0 0 L 10 5 L 0 10 z" {}
                        }
                        // In each node's own coordinates: text never draws
                        // past its box, whatever the font (the clipping by
                        // estimated width below puts the ellipsis in view).
                        clipPath #node-text clipPathUnits="userSpaceOnUse" {
                            rect x="4" y="0" width=(NODE_W - 8.0) height=(NODE_H) {}
                        }
                    }
                    @for (e, (_, _, kind)) in self.edges.iter().enumerate() {
                        @let (d, (lx, ly)) = edge(e);
                        g.edge {
                            path d=(d) marker-end="url(#arrow)" {}
                            text x=(format!("{lx:.1}")) y=(format!("{:.1}", ly - 4.0)) text-anchor="middle" { (kind) }
                        }
                    }
                    @for (i, n) in self.nodes.iter().enumerate() {
                        @let (x, y) = pos[i];
                        (node_svg(n, x, y))
                    }
                }
            }
        }
    }
}

const NODE_W: f64 = 190.0;
const NODE_H: f64 = 44.0;
const COL_W: f64 = 310.0;
const ROW_H: f64 = 62.0;
const PAD: f64 = 12.0;
/// Where a node's text starts, and the room it has up to the box's edge.
const TEXT_X: f64 = 10.0;
const TEXT_ROOM: f64 = NODE_W - 2.0 * TEXT_X;
/// The font sizes of a node's two lines, as in `style.css`.
const FIRST_PX: f64 = 13.0;
const SECOND_PX: f64 = 11.0;

fn node_svg(n: &Node, x: f64, y: f64) -> Markup {
    let (kind, first, second) = match &n.node {
        LineageNode::Version(k) => {
            let stage = n.record.as_ref().map(|r| r.stage.as_str());
            (
                format!("version n-{}", stage.unwrap_or("missing")),
                format!("{} v{}", k.model, k.version),
                stage.unwrap_or("not in the registry").to_owned(),
            )
        }
        LineageNode::Dataset(k) => (
            "dataset".to_owned(),
            k.name.clone(),
            match &k.version {
                Some(v) => format!("dataset @ {v}"),
                None => "dataset".to_owned(),
            },
        ),
        LineageNode::Code(k) => (
            "code".to_owned(),
            format!("commit {}", k.commit.get(..10).unwrap_or(&k.commit)),
            k.repository.clone().unwrap_or_else(|| "code".to_owned()),
        ),
    };
    let class = if n.origin {
        format!("node {kind} origin")
    } else {
        format!("node {kind}")
    };
    let inner = html! {
        title { (label(&n.node)) }
        rect width=(NODE_W) height=(NODE_H) rx="6" {}
        text.first x=(TEXT_X) y="18" clip-path="url(#node-text)" { (clip(&first, TEXT_ROOM / FIRST_PX)) }
        text.second x=(TEXT_X) y="35" clip-path="url(#node-text)" { (clip(&second, TEXT_ROOM / SECOND_PX)) }
    };
    html! {
        g class=(class) transform=(format!("translate({x:.1},{y:.1})")) {
            @match node_href(&n.node) {
                Some(h) => a href=(h) { (inner) },
                None => (inner),
            }
        }
    }
}

/// `s` cut to fit `room` ems, an ellipsis marking a cut; the full text is in
/// the node's `<title>`, its accessible name.
fn clip(s: &str, room: f64) -> String {
    if s.chars().map(em_width).sum::<f64>() <= room {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut used = em_width('…');
    for c in s.chars() {
        used += em_width(c);
        if used > room {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// A generous guess at the width of `c` in ems: about the bold glyphs of
/// DejaVu Sans, the widest of the fonts `style.css` names (the browser's own
/// measure is not available to the server; a guess too small is still cut
/// off at the box by the `node-text` clip path, without its ellipsis).
fn em_width(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | 'I' | 'J' | '!' | '.' | ',' | ':' | ';' | '\'' | '|' | '`' | ' ' => 0.4,
        'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '{' | '}' | '-' | '/' | '"' => 0.55,
        'm' | 'w' | 'M' | 'W' | '@' | '%' | '…' => 1.1,
        'A'..='Z' => 0.85,
        c if c.is_ascii() => 0.72,
        // Wide scripts (CJK, Hangul, emoji…) take a full em or more.
        c if u32::from(c) >= 0x1100 => 1.2,
        _ => 0.8,
    }
}

fn label(n: &LineageNode) -> String {
    match n {
        LineageNode::Version(k) => format!("{} v{}", k.model, k.version),
        other => other.to_string(),
    }
}

/// Versions link to their pages, datasets to what they affect; commits have
/// no page.
fn node_href(n: &LineageNode) -> Option<String> {
    match n {
        LineageNode::Version(k) => Some(version_href(k.model.as_str(), k.version)),
        LineageNode::Dataset(k) => Some(dataset_href(k)),
        LineageNode::Code(_) => None,
    }
}

/// Where [`layout`] puts things.
struct Layout {
    /// Each node's layer (column), then each waypoint's.
    layer: Vec<usize>,
    /// Each layer's nodes and waypoints, top to bottom.
    rows: Vec<Vec<usize>>,
    /// For each edge, the waypoints it passes through, left to right: one in
    /// each layer it crosses, so that it runs between nodes, not behind them.
    via: Vec<Vec<usize>>,
}

/// A layered layout of `n` nodes and `edges` (from → to): each node's layer
/// (column), and each layer's nodes top to bottom.
///
/// Layers are longest paths from the inputs, so every edge points right; then
/// a node without inputs moves right up to just before its first output, so a
/// dataset sits next to the version that used it rather than in the first
/// column. Within a layer nodes start in the order given (nearest first) and
/// are then sorted a few times by the mean row of their neighbours in the
/// previous (then the next) layer, which removes most crossings of small
/// graphs. A cycle (only a hand-edited log has one) is cut where the sort
/// meets it.
fn layout(n: usize, edges: &[(usize, usize)]) -> Layout {
    let mut inputs: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut outputs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        if a != b {
            inputs[b].push(a);
            outputs[a].push(b);
        }
    }
    // Kahn's topological order; nodes on a cycle are appended in index order.
    let mut waiting: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut order: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut placed = vec![false; n];
    for &i in &order {
        placed[i] = true;
    }
    let mut at = 0;
    loop {
        while at < order.len() {
            for &o in &outputs[order[at]] {
                waiting[o] = waiting[o].saturating_sub(1);
                if waiting[o] == 0 && !placed[o] {
                    placed[o] = true;
                    order.push(o);
                }
            }
            at += 1;
        }
        match (0..n).find(|&i| !placed[i]) {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => break,
        }
    }
    let rank: Vec<usize> = {
        let mut r = vec![0; n];
        for (k, &i) in order.iter().enumerate() {
            r[i] = k;
        }
        r
    };
    let mut layer = vec![0usize; n];
    // (`layer`, `inputs` and `outputs` grow by the waypoints below.)
    for &i in &order {
        for &p in &inputs[i] {
            if rank[p] < rank[i] {
                layer[i] = layer[i].max(layer[p] + 1);
            }
        }
    }
    for &i in order.iter().rev() {
        if inputs[i].is_empty()
            && let Some(first) = outputs[i].iter().map(|&o| layer[o]).min()
        {
            layer[i] = first.saturating_sub(1).max(layer[i]);
        }
    }
    // A waypoint in every layer a long edge crosses, ordered like a node.
    let mut via = Vec::with_capacity(edges.len());
    for &(a, b) in edges {
        let mut chain = Vec::new();
        if a != b && layer[a] + 1 < layer[b] {
            let mut prev = a;
            for l in layer[a] + 1..layer[b] {
                let w = layer.len();
                layer.push(l);
                inputs.push(vec![prev]);
                outputs.push(Vec::new());
                outputs[prev].push(w);
                chain.push(w);
                prev = w;
            }
            outputs[prev].push(b);
            inputs[b].push(prev);
        }
        via.push(chain);
    }
    let total = layer.len();
    let layers = layer.iter().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for i in 0..total {
        rows[layer[i]].push(i);
    }
    let mut row_of = vec![0.0f64; total];
    let index = |rows: &Vec<Vec<usize>>, row_of: &mut Vec<f64>| {
        for row in rows {
            for (r, &i) in row.iter().enumerate() {
                row_of[i] = r as f64;
            }
        }
    };
    index(&rows, &mut row_of);
    for sweep in 0..4 {
        let forward = sweep % 2 == 0;
        let ls: Vec<usize> = if forward {
            (1..layers).collect()
        } else {
            (0..layers.saturating_sub(1)).rev().collect()
        };
        for l in ls {
            let keys: HashMap<usize, f64> = rows[l]
                .iter()
                .map(|&i| {
                    let near = if forward { &inputs[i] } else { &outputs[i] };
                    let ns: Vec<f64> = near
                        .iter()
                        .filter(|&&o| layer[o].abs_diff(l) == 1)
                        .map(|&o| row_of[o])
                        .collect();
                    let key = if ns.is_empty() {
                        row_of[i]
                    } else {
                        ns.iter().sum::<f64>() / ns.len() as f64
                    };
                    (i, key)
                })
                .collect();
            rows[l].sort_by(|a, b| keys[a].total_cmp(&keys[b]));
            for (r, &i) in rows[l].iter().enumerate() {
                row_of[i] = r as f64;
            }
        }
    }
    Layout { layer, rows, via }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge_points_right_and_inputs_sit_next_to_their_use() {
        // 0: origin; 1 its parent; 2 the parent's parent; 3 a dataset of 0;
        // 4 a child of 0; 5 a dataset of 2.
        let edges = [(1, 0), (2, 1), (3, 0), (0, 4), (5, 2)];
        let Layout { layer, rows, via } = layout(6, &edges);
        for (a, b) in edges {
            assert!(layer[a] < layer[b], "{a} → {b}: {layer:?}");
        }
        assert_eq!(layer[3], layer[0] - 1, "the dataset next to the origin");
        assert_eq!(rows.iter().map(Vec::len).sum::<usize>(), 6);
        assert!(via.iter().all(Vec::is_empty), "no edge skips a layer");
        // A dataset used two layers apart gets a waypoint between.
        let Layout { layer, via, .. } = layout(3, &[(0, 1), (1, 2), (0, 2)]);
        assert_eq!(via[2].len(), 1);
        assert_eq!(layer[via[2][0]], layer[1]);
    }

    #[test]
    fn a_cycle_is_laid_out_without_looping() {
        let Layout { layer, rows, .. } = layout(3, &[(0, 1), (1, 2), (2, 0)]);
        assert!(layer.len() >= 3);
        assert_eq!(rows.iter().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn long_labels_are_clipped_to_the_room_of_a_node() {
        assert_eq!(clip("abc", 4.0), "abc");
        let room = TEXT_ROOM / FIRST_PX;
        for long in [
            "customer-transactions-full-export-2026",
            &"W".repeat(40),
            &"数据集".repeat(10),
            &"i".repeat(80),
        ] {
            let cut = clip(long, room);
            assert!(cut.ends_with('…') && cut.chars().count() > 1, "{cut}");
            assert!(long.starts_with(cut.trim_end_matches('…')), "{cut}");
            let width: f64 = cut.chars().map(em_width).sum();
            assert!(width <= room, "{cut}: {width} ems in {room}");
        }
    }
}
