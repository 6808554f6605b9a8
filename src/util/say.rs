//! How much the commands say on standard error: `-q` keeps only warnings and errors, `-v` adds
//! the details (the worker processes' commands). What a command answers on
//! standard output (tables, JSON) is printed at every level.
//!
//! The level is set once from the command line; worker processes get it through
//! `UNET_LAB_VERBOSITY`, which a user may set too.

use std::sync::atomic::{AtomicI8, Ordering};

/// The environment variable worker processes read the level from (`quiet`, `normal`,
/// `verbose`).
pub const ENV: &str = "UNET_LAB_VERBOSITY";

static LEVEL: AtomicI8 = AtomicI8::new(i8::MIN);

/// −1 quiet, 0 normal, 1 verbose.
fn level() -> i8 {
    match LEVEL.load(Ordering::Relaxed) {
        i8::MIN => {
            let from_env = match std::env::var(ENV).as_deref() {
                Ok("quiet") => -1,
                Ok("verbose") => 1,
                _ => 0,
            };
            LEVEL.store(from_env, Ordering::Relaxed);
            from_env
        }
        l => l,
    }
}

/// Sets the level from `-q` and the count of `-v` (unset: the environment's, else normal).
pub fn set(quiet: bool, verbose: u8) {
    if quiet {
        LEVEL.store(-1, Ordering::Relaxed);
    } else if verbose > 0 {
        LEVEL.store(1, Ordering::Relaxed);
    }
}

pub fn quiet() -> bool {
    level() < 0
}

pub fn verbose() -> bool {
    level() > 0
}

/// The level's name, for [`ENV`] in a worker process.
pub fn name() -> &'static str {
    match level() {
        l if l < 0 => "quiet",
        0 => "normal",
        _ => "verbose",
    }
}

/// A line on standard error unless `-q`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        if !$crate::util::say::quiet() {
            eprintln!($($arg)*);
        }
    };
}

/// A line on standard error with `-v` only.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => {
        if $crate::util::say::verbose() {
            eprintln!($($arg)*);
        }
    };
}
