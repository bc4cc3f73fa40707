//! How results reach the user: aligned tables and `key: value` blocks for a
//! person, the records' serde shape for `--json`; sizes, times and ages.

use std::io::{self, Write};

use modelreg::chrono::{DateTime, Utc};
use serde::Serialize;

/// Prints `value` as one pretty JSON document on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}

/// Prints `value` as one line of JSON on stdout (for streams: `watch`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// A table whose columns are padded to their widest cell. The last column is
/// not padded, so lines carry no trailing spaces.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Renders the table, header first.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len() - 1;
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i == last {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
                }
            }
            // An empty last cell leaves the padding of the one before it.
            out.truncate(out.trim_end_matches(' ').len());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> io::Result<()> {
        io::stdout().lock().write_all(self.render().as_bytes())
    }
}

/// `key: value` lines, keys padded to the longest one; empty values are skipped.
#[derive(Default)]
pub struct Fields {
    lines: Vec<(String, String)>,
}

impl Fields {
    /// Adds a line unless `value` is empty.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if !value.is_empty() {
            self.lines.push((key.into(), value));
        }
        self
    }

    /// Renders the lines.
    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.lines {
            out.push_str(k);
            out.push(':');
            out.extend(std::iter::repeat_n(' ', width - k.chars().count() + 1));
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    /// Prints the lines on stdout.
    pub fn print(&self) -> io::Result<()> {
        io::stdout().lock().write_all(self.render().as_bytes())
    }
}

/// `1.5 GiB`, `512 B`: binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `1 file`, `3 files`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A time as `2026-12-03 14:05:09Z` (UTC, to the second).
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A metric or a float: as Rust prints it shortest (`0.93`, `1e-5`).
pub fn float(v: f64) -> String {
    format!("{v}")
}

/// `name=value` pairs joined by `, `.
pub fn pairs<'a, K: std::fmt::Display + 'a, V: std::fmt::Display + 'a>(
    items: impl IntoIterator<Item = (K, V)>,
) -> String {
    items
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A message for a person on stderr, unless `--quiet`.
pub fn note(quiet: bool, message: impl std::fmt::Display) {
    if !quiet {
        eprintln!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_every_column_but_the_last() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\n");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn fields_skip_empty_values_and_align() {
        let mut f = Fields::default();
        f.add("a", "1").add("long key", "2").add("empty", "");
        assert_eq!(f.render(), "a:        1\nlong key: 2\n");
    }
}
