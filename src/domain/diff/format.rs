//! The comparison as text: `Display` for verdicts, summaries and whole diffs,
//! and the aligned table and number formatting behind them.

use std::fmt::{self, Write as _};

use super::{MapDiff, MetricVerdict, OverallVerdict, VersionDiff, VersionSummary};
use crate::domain::record::{CodeRef, DatasetRef, Goal, HyperValue};

impl fmt::Display for MetricVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for OverallVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for VersionSummary {
    /// `fraud/3`, or `fraud/3 (1.4.0)` with a semver label.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match &self.semver {
            Some(v) => format!("{}/{} ({v})", self.model, self.number),
            None => format!("{}/{}", self.model, self.number),
        };
        f.pad(&s)
    }
}

/// A number with up to 6 significant digits, trailing zeros trimmed; scientific
/// outside `[1e-4, 1e9)`.
pub(crate) fn num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-4..1e9).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = (5 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

pub(crate) fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub(crate) fn hyper(v: &HyperValue) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn dataset_label(d: &DatasetRef) -> String {
    let mut s = d.version.clone().unwrap_or_else(|| "-".into());
    if let Some(g) = &d.digest {
        let _ = write!(s, " {}", &g.to_string()[..19]);
    }
    s
}

fn code_label(c: Option<&CodeRef>, with_repository: bool) -> String {
    match c {
        None => "-".into(),
        Some(c) => {
            let mut s = c.commit.clone();
            if c.dirty {
                s.push_str(" (dirty)");
            }
            if let (true, Some(r)) = (with_repository, &c.repository) {
                let _ = write!(s, " in {r}");
            }
            s
        }
    }
}

/// Right-aligned columns, by index.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<usize>,
}

impl Table {
    fn new(header: &[&str], right: &[usize]) -> Self {
        Table {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
            right: right.to_vec(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let cols = self.header.len();
        // Tabs and newlines in user text would break the columns.
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        let rows: Vec<Vec<String>> = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|r| r.iter().map(|c| clean(c)).collect())
            .collect();
        let width: Vec<usize> = (0..cols)
            .map(|i| {
                rows.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &rows {
            let mut line = String::from("  ");
            for (i, cell) in r.iter().enumerate() {
                let pad = width[i] - cell.chars().count();
                if self.right.contains(&i) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

impl VersionDiff {
    /// The comparison as an aligned text table for a terminal (what `Display`
    /// prints). Sections without differences are left out; changed lines are
    /// marked `~`, added `+`, removed `-`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "a: {}  {}", self.a, self.a.artifact);
        let _ = writeln!(out, "b: {}  {}", self.b, self.b.artifact);
        let count = |v: MetricVerdict| self.metrics.iter().filter(|m| m.verdict == v).count();
        let _ = writeln!(
            out,
            "verdict: {} ({} improved, {} regressed, {} unchanged, {} other)",
            self.verdict,
            count(MetricVerdict::Improved),
            count(MetricVerdict::Regressed),
            count(MetricVerdict::Unchanged),
            self.metrics.len()
                - count(MetricVerdict::Improved)
                - count(MetricVerdict::Regressed)
                - count(MetricVerdict::Unchanged),
        );

        if !self.metrics.is_empty() {
            out.push('\n');
            let mut t = Table::new(
                &["metric", "a", "b", "change", "relative", "verdict", "goal"],
                &[1, 2, 3, 4],
            );
            for m in &self.metrics {
                let goal = match m.spec {
                    None => "-".to_owned(),
                    Some(s) => {
                        let g = match s.goal {
                            Goal::Maximize => "maximize",
                            Goal::Minimize => "minimize",
                        };
                        match s.tolerance {
                            Some(t) => format!("{g} ±{}", num(t)),
                            None => g.to_owned(),
                        }
                    }
                };
                t.row(vec![
                    m.name.to_string(),
                    opt(m.a.map(num)),
                    opt(m.b.map(num)),
                    opt(m.change.map(signed)),
                    opt(m.relative.map(|r| format!("{:+.1}%", r * 100.0))),
                    m.verdict.to_string(),
                    goal,
                ]);
            }
            t.render(&mut out);
        }

        map_section(&mut out, "hyperparameter", &self.hyperparameters, hyper);
        map_section(&mut out, "environment", &self.environment, |s| s.clone());

        if !self.datasets.is_empty() || self.code.is_some() {
            out.push('\n');
            let mut t = Table::new(&["", "dataset", "role", "a", "b"], &[]);
            for c in &self.datasets.changed {
                t.row(vec![
                    "~".into(),
                    c.a.name.clone(),
                    c.a.role.as_str().into(),
                    dataset_label(&c.a),
                    dataset_label(&c.b),
                ]);
            }
            for d in &self.datasets.added {
                t.row(vec![
                    "+".into(),
                    d.name.clone(),
                    d.role.as_str().into(),
                    "-".into(),
                    dataset_label(d),
                ]);
            }
            for d in &self.datasets.removed {
                t.row(vec![
                    "-".into(),
                    d.name.clone(),
                    d.role.as_str().into(),
                    dataset_label(d),
                    "-".into(),
                ]);
            }
            if let Some(c) = &self.code {
                // The repository is shown only when it is what changed.
                let repo = |r: &Option<CodeRef>| r.as_ref().map(|c| c.repository.clone());
                let with_repo = repo(&c.a) != repo(&c.b);
                t.row(vec![
                    "~".into(),
                    "(code)".into(),
                    "".into(),
                    code_label(c.a.as_ref(), with_repo),
                    code_label(c.b.as_ref(), with_repo),
                ]);
            }
            t.render(&mut out);
        }

        if let Some(f) = &self.artifact {
            out.push('\n');
            let share = if f.b_bytes == 0 {
                String::new()
            } else {
                format!(", {:.1}%", f.shared_bytes as f64 * 100.0 / f.b_bytes as f64)
            };
            let _ = writeln!(
                out,
                "files: {} unchanged, {} changed, {} added, {} removed; b shares {} of its {} with a{share}",
                f.unchanged,
                f.changed.len(),
                f.added.len(),
                f.removed.len(),
                bytes(f.shared_bytes),
                bytes(f.b_bytes),
            );
            if !f.is_empty() {
                let mut t = Table::new(&["", "file", "a", "b"], &[2, 3]);
                for c in &f.changed {
                    t.row(vec![
                        "~".into(),
                        c.path.to_string(),
                        bytes(c.a_size),
                        bytes(c.b_size),
                    ]);
                }
                for e in &f.added {
                    t.row(vec![
                        "+".into(),
                        e.path.to_string(),
                        "-".into(),
                        bytes(e.size),
                    ]);
                }
                for e in &f.removed {
                    t.row(vec![
                        "-".into(),
                        e.path.to_string(),
                        bytes(e.size),
                        "-".into(),
                    ]);
                }
                t.render(&mut out);
            }
        }
        out
    }
}

fn map_section<T>(out: &mut String, what: &str, d: &MapDiff<T>, show: impl Fn(&T) -> String) {
    if d.is_empty() {
        return;
    }
    out.push('\n');
    let mut t = Table::new(&["", what, "a", "b"], &[]);
    for c in &d.changed {
        t.row(vec!["~".into(), c.key.clone(), show(&c.a), show(&c.b)]);
    }
    for c in &d.added {
        t.row(vec!["+".into(), c.key.clone(), "-".into(), show(&c.value)]);
    }
    for c in &d.removed {
        t.row(vec!["-".into(), c.key.clone(), show(&c.value), "-".into()]);
    }
    t.render(out);
}

impl fmt::Display for VersionDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table())
    }
}
