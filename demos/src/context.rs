//! What every scenario shares: the language and time scale it runs with
//! ([`Context`]), the summary line it ends with ([`Summary`]), printing, and
//! the error type. Scenario modules import this, never the command line.

use std::fmt::Display;
use std::time::Duration;

use clap::ValueEnum;

/// Message language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// The seed lesson's own words.
    Zh,
    /// English.
    En,
}

/// What every scenario needs: the language and the time scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context {
    pub(crate) lang: Lang,
    pub(crate) speed: f64,
}

impl Context {
    /// Prints a line in the chosen language.
    pub(crate) fn say(&self, zh: impl Display, en: impl Display) {
        match self.lang {
            Lang::Zh => print_line(zh),
            Lang::En => print_line(en),
        }
    }

    /// A lesson duration scaled by `--speed`.
    pub(crate) fn scaled(&self, lesson_time: Duration) -> Duration {
        lesson_time.div_f64(self.speed)
    }
}

/// A scenario's measured outcome, printed as `summary: k=v ...`.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pairs: Vec<(&'static str, String)>,
}

impl Summary {
    pub(crate) fn with(mut self, key: &'static str, value: impl Display) -> Summary {
        self.pairs.push((key, value.to_string()));
        self
    }

    pub(crate) fn print(&self) {
        let fields: Vec<String> = self.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        print_line(format_args!("summary: {}", fields.join(" ")));
    }
}

/// Prints one line; a closed stdout (`demos all | head`) is not an error
/// worth a panic in every child process.
pub(crate) fn print_line(line: impl Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The error type of a scenario.
pub(crate) type DemoError = Box<dyn std::error::Error>;
