//! Progress bars on stderr, fed by the library's [`Progress`] callbacks; drawn
//! only when stderr is a terminal and `--quiet` is off.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modelreg::{Progress, ProgressEvent};

/// A bar (bytes done of the total, rate, time left) or a spinner.
pub struct Bar(ProgressBar, bool);

fn visible(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

impl Bar {
    /// A byte-counting bar labelled `what`; its length comes with the first event.
    pub fn new(quiet: bool, what: &'static str) -> Self {
        if !visible(quiet) {
            return Bar(ProgressBar::hidden(), false);
        }
        // Hidden until the library says how much there is: an empty bar would draw full.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what);
        Bar(bar, true)
    }

    /// A spinner labelled `what`, for work whose size is not known ahead.
    pub fn spinner(quiet: bool, what: &'static str) -> Self {
        if !visible(quiet) {
            return Bar(ProgressBar::hidden(), false);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar(bar, false)
    }

    /// The callback to hand the library.
    pub fn progress(&self) -> Progress {
        let (bar, visible) = (self.0.clone(), self.1);
        Progress::new(move |e| match e {
            ProgressEvent::Started { bytes, .. } => {
                bar.set_length(*bytes);
                bar.reset_eta();
                if visible {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
            }
            ProgressEvent::File { bytes, .. } => bar.inc(*bytes),
            _ => {}
        })
    }

    /// Removes the bar (the outcome is printed by the command).
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }

    /// Leaves the bar where it stopped (on Ctrl-C).
    pub fn abandon(&self) {
        self.0.abandon();
    }
}
