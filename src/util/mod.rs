//! Helpers every layer may use; they use nothing of unet-lab's own.

pub mod crop;
pub mod fs;
pub mod hash;
pub mod host;
pub mod noise;
pub mod owned;
pub mod png;
pub mod raster;
pub mod time;

/// Quotes a word for a POSIX shell.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The text of a caught panic (`std::panic::catch_unwind`'s payload).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    format!("panicked: {text}")
}

/// A request refused before anything was written, because it would lose or overwrite
/// something (exit code 2, like a bad config): the message says why and the ways out.
#[derive(Debug, Clone)]
pub(crate) struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}
