//! Helpers every layer may use; they use nothing of unet-lab's own.

pub mod crop;
pub mod fs;
pub mod hash;
pub mod host;
pub mod noise;
pub mod owned;
pub mod png;
pub mod raster;
pub mod say;
pub mod time;

#[cfg(test)]
mod table_tests {
    #[test]
    fn columns_are_padded_to_their_widest_cell() {
        let rows = vec![
            vec!["blog".to_string(), "0.55".to_string()],
            vec!["all-tricks".to_string(), "0.7".to_string()],
        ];
        assert_eq!(
            super::aligned_table(&["variant", "test Dice"], &rows),
            "variant     test Dice\nblog        0.55\nall-tricks  0.7\n"
        );
    }
}

/// Quotes a word for a POSIX shell.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A plain-text table: columns padded to their widest cell, two spaces apart, one line per row
/// (the terminal's form of the report's tables).
pub(crate) fn aligned_table<S: AsRef<str>>(heads: &[S], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = heads.iter().map(|h| h.as_ref().chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&mut heads.iter().map(|h| h.as_ref()));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
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

/// A JSON value as (dotted key, value) pairs (`train.lr` → `0.001`): objects are walked, anything
/// else — arrays included — is a value.
pub(crate) fn flatten_json(value: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// A JSON value as text: a string as itself, anything else as compact JSON (`[3,6,12]`).
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// [`flatten_json`] with each value as [`json_text`]: what a table of keys and values shows.
pub(crate) fn flatten_json_text(value: &serde_json::Value) -> Vec<(String, String)> {
    flatten_json(value)
        .into_iter()
        .map(|(key, value)| (key, json_text(&value)))
        .collect()
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncate_chars(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flattens_to_dotted_keys_with_arrays_as_values() {
        let value = serde_json::json!({"train": {"lr": 0.001, "loss": "mse"}, "widths": [3, 6]});
        let mut flat = flatten_json_text(&value);
        flat.sort();
        let expected = [
            ("train.loss", "mse"),
            ("train.lr", "0.001"),
            ("widths", "[3,6]"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(flat, expected);
    }

    #[test]
    fn truncation_stops_at_a_character_boundary() {
        // "é" is two bytes: a cut at byte 4 of "aéé" would split the second one.
        let mut text = "aéé".to_string();
        truncate_chars(&mut text, 4);
        assert_eq!(text, "aé");
        let mut short = "ab".to_string();
        truncate_chars(&mut short, 4);
        assert_eq!(short, "ab");
    }
}
