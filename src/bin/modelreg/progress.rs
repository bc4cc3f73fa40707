//! Progress bars on stderr, fed by the library's [`Progress`] callbacks; drawn
//! only when stderr is a terminal and `--quiet` is off.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modelreg::{Progress, ProgressEvent};

/// What a bar counts.
#[derive(Clone, Copy)]
enum Unit {
    /// Bytes, with the rate and the time left (register, fetch, verify, check).
    Bytes,
    /// Files (or manifests), for work that moves no bytes (gc's mark phase).
    Files(&'static str),
}

/// A bar on stderr, hidden until the library says how much there is (an empty
/// bar would draw full), or for good when stderr is not a terminal.
pub struct Bar {
    bar: ProgressBar,
    visible: bool,
    unit: Unit,
}

impl Bar {
    /// A bar counting bytes, labelled `what`.
    pub fn new(quiet: bool, what: &'static str) -> Self {
        Self::with(
            quiet,
            what,
            Unit::Bytes,
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
    }

    /// A bar counting files, each called `unit` (plural) on screen.
    pub fn files(quiet: bool, what: &'static str, unit: &'static str) -> Self {
        Self::with(
            quiet,
            what,
            Unit::Files(unit),
            "{msg:12} [{bar:30}] {pos}/{len} {prefix} {rate} eta {eta}",
        )
    }

    fn with(quiet: bool, what: &'static str, unit: Unit, template: &str) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what);
        if let Unit::Files(name) = unit {
            bar.set_prefix(name);
        }
        Bar { bar, visible, unit }
    }

    /// The callback to hand the library.
    pub fn progress(&self) -> Progress {
        let (bar, visible, unit) = (self.bar.clone(), self.visible, self.unit);
        Progress::new(move |e| match (e, unit) {
            (ProgressEvent::Started { bytes, files }, _) => {
                bar.set_length(match unit {
                    Unit::Bytes => *bytes,
                    Unit::Files(_) => *files,
                });
                bar.reset_eta();
                if visible {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
            }
            // A bytes bar counts the deltas as bytes move, so one large file
            // moves it too; the `File` sizes add up to the same total and are
            // not counted again.
            (ProgressEvent::Bytes { bytes }, Unit::Bytes) => bar.inc(*bytes),
            (ProgressEvent::File { .. }, Unit::Files(_)) => bar.inc(1),
            _ => {}
        })
    }

    /// Removes the bar (the outcome is printed by the command).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Leaves the bar where it stopped (on Ctrl-C).
    pub fn abandon(&self) {
        self.bar.abandon();
    }
}
