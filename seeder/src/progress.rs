//! Progress reporting: indicatif bars when stderr is a terminal, plain log lines (every 10%)
//! otherwise, so CI logs and pipes stay readable. Each phase ends with a [`PhaseReport`] giving
//! its rate.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    /// Always bars (on stderr).
    Bars,
    /// Log lines at every tenth of a phase.
    Lines,
    /// Only the start and end of each phase.
    Quiet,
}

/// The outcome of one phase.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Phase name (`generate`, `postgres`, `redis`, …).
    pub name: &'static str,
    /// Rows (or results) handled.
    pub rows: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl PhaseReport {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The progress display of a whole run.
#[derive(Debug)]
pub struct Progress {
    bars: Option<MultiProgress>,
    lines: bool,
}

impl Progress {
    /// A display in `mode`.
    pub fn new(mode: ProgressMode) -> Self {
        let bars = match mode {
            ProgressMode::Bars => true,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Lines | ProgressMode::Quiet => false,
        };
        Self {
            bars: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            lines: matches!(mode, ProgressMode::Lines | ProgressMode::Auto) && !bars,
        }
    }

    /// Starts a phase of `total` units.
    pub fn phase(&self, name: &'static str, total: u64) -> Phase {
        let bar = self.bars.as_ref().map(|multi| {
            let style = ProgressStyle::with_template(
                "{prefix:>9} [{bar:40.cyan/blue}] {human_pos:>9}/{human_len:9} {per_sec:>14} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = multi.add(ProgressBar::new(total).with_style(style).with_prefix(name));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            tracing::info!("{name}: started ({total} to do)");
        }
        Phase { name, total, bar, lines: self.lines, state: Mutex::new((0, 1)), started: Instant::now() }
    }
}

/// One running phase.
#[derive(Debug)]
pub struct Phase {
    name: &'static str,
    total: u64,
    bar: Option<ProgressBar>,
    lines: bool,
    /// Units done and the next tenth to report.
    state: Mutex<(u64, u64)>,
    started: Instant,
}

impl Phase {
    /// Records `n` more units done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.0 += n;
        let (done, next_tenth) = *state;
        if self.lines && self.total > 0 && next_tenth < 10 && done * 10 >= next_tenth * self.total {
            state.1 = done * 10 / self.total + 1;
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!("{}: {}% ({done} of {}, {rate:.0}/s)", self.name, done * 100 / self.total, self.total);
        }
    }

    /// Ends the phase, reporting `rows` handled.
    pub fn finish(self, rows: u64) -> PhaseReport {
        let elapsed = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish();
        } else {
            tracing::info!("{}: done, {rows} in {:.2} s", self.name, elapsed.as_secs_f64());
        }
        PhaseReport { name: self.name, rows, elapsed }
    }
}
