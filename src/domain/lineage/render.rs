//! DOT and Mermaid rendering of lineage graphs and subgraphs: labels, escaping,
//! and the two output formats.

use std::fmt::Write as _;

use super::LineageEdgeKind;
use super::LineageNode;
use crate::domain::record::VersionRecord;

/// The label lines of a node: its identity, then details (semver, digest).
fn label_lines(node: &LineageNode, record: Option<&VersionRecord>) -> Vec<String> {
    match node {
        LineageNode::Version(k) => {
            let mut lines = vec![k.to_string()];
            if let Some(v) = record.and_then(|r| r.semver.as_ref()) {
                lines.push(v.to_string());
            }
            lines
        }
        LineageNode::Dataset(k) => {
            let mut first = k.name.clone();
            if let Some(v) = &k.version {
                let _ = write!(first, "@{v}");
            }
            let mut lines = vec![first];
            if let Some(d) = &k.digest {
                lines.push(format!("blake3:{}", &d.to_hex()[..12]));
            }
            lines
        }
        LineageNode::Code(k) => {
            let mut lines = vec![format!("commit {}", k.commit)];
            if let Some(r) = &k.repository {
                lines.push(r.clone());
            }
            lines
        }
    }
}

/// Characters that could change how a label reads without being visible:
/// control characters and Unicode bidirectional and zero-width formatting.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Escapes text for a DOT double-quoted label.
pub(super) fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Graphviz decodes HTML entities in every label.
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("\\n"),
            c if is_hidden(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Mermaid double-quoted label.
pub(super) fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("<br/>"),
            c if is_hidden(c) => out.push_str("#65533;"),
            c if c.is_ascii_alphanumeric() || " ._-/:@+,=".contains(c) || !c.is_ascii() => {
                out.push(c)
            }
            c => {
                let _ = write!(out, "#{};", c as u32);
            }
        }
    }
    out
}

pub(super) fn render_dot<'a>(
    nodes: impl Iterator<Item = (&'a LineageNode, Option<&'a VersionRecord>)>,
    edges: impl Iterator<Item = (usize, usize, LineageEdgeKind)>,
) -> String {
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n");
    for (i, (node, record)) in nodes.enumerate() {
        let label: Vec<String> = label_lines(node, record)
            .iter()
            .map(|l| dot_escape(l))
            .collect();
        let shape = match node {
            LineageNode::Version(_) => "box",
            LineageNode::Dataset(_) => "cylinder",
            LineageNode::Code(_) => "note",
        };
        let _ = writeln!(
            out,
            "  n{i} [label=\"{}\", shape={shape}];",
            label.join("\\n")
        );
    }
    for (from, to, kind) in edges {
        let _ = writeln!(
            out,
            "  n{from} -> n{to} [label=\"{}\"];",
            dot_escape(&kind.to_string())
        );
    }
    out.push_str("}\n");
    out
}

pub(super) fn render_mermaid<'a>(
    nodes: impl Iterator<Item = (&'a LineageNode, Option<&'a VersionRecord>)>,
    edges: impl Iterator<Item = (usize, usize, LineageEdgeKind)>,
) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, (node, record)) in nodes.enumerate() {
        let label: Vec<String> = label_lines(node, record)
            .iter()
            .map(|l| mermaid_escape(l))
            .collect();
        let label = label.join("<br/>");
        let _ = match node {
            LineageNode::Version(_) => writeln!(out, "  n{i}[\"{label}\"]"),
            LineageNode::Dataset(_) => writeln!(out, "  n{i}[(\"{label}\")]"),
            LineageNode::Code(_) => writeln!(out, "  n{i}{{{{\"{label}\"}}}}"),
        };
    }
    for (from, to, kind) in edges {
        let _ = writeln!(
            out,
            "  n{from} -->|\"{}\"| n{to}",
            mermaid_escape(&kind.to_string())
        );
    }
    out
}
