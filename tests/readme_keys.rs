//! docs/experiments.md's "All keys" table against the code: every documented key is one the parser
//! accepts, every accepted key is documented, and every documented default is the one the
//! `Default` impls hold (`—` meaning none).

use std::path::Path;

use serde_json::Value;
use unet_lab::config::{RunConfig, SECTIONS, parse_str};

/// A documented key and its default as written between backticks (`None` for `—`).
#[derive(Debug)]
struct Row {
    key: String,
    default: Option<String>,
}

/// Splits a cell at the commas outside backticks, each part trimmed.
fn split_cell(cell: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in cell.char_indices() {
        match c {
            '`' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(cell[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(cell[start..].trim());
    parts
}

/// The text between the backticks of `` `x` ``.
fn code(part: &str, line: &str) -> String {
    part.strip_prefix('`')
        .and_then(|p| p.strip_suffix('`'))
        .filter(|p| !p.is_empty() && !p.contains('`'))
        .unwrap_or_else(|| {
            panic!("`{part}` is not one `code` span, in docs/experiments.md row: {line}")
        })
        .to_string()
}

/// The rows of the docs/experiments.md's key table; a row may list several keys and as many defaults.
fn readme_rows() -> Vec<Row> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/experiments.md"))
            .expect("docs/experiments.md is readable");
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != "| key | default | meaning |")
        .skip(1);
    assert_eq!(
        lines.next().map(str::trim),
        Some("|---|---|---|"),
        "docs/experiments.md has no `| key | default | meaning |` table"
    );
    let mut rows = Vec::new();
    for line in lines.take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.splitn(4, '|').collect();
        assert_eq!(
            cells.len(),
            4,
            "docs/experiments.md row without three cells: {line}"
        );
        let keys: Vec<String> = split_cell(cells[1])
            .into_iter()
            .map(|k| code(k, line))
            .collect();
        let defaults: Vec<Option<String>> = if cells[2].trim() == "—" {
            vec![None; keys.len()]
        } else {
            split_cell(cells[2])
                .into_iter()
                .map(|d| Some(code(d, line)))
                .collect()
        };
        assert_eq!(
            keys.len(),
            defaults.len(),
            "docs/experiments.md row lists {} keys but {} defaults: {line}",
            keys.len(),
            defaults.len()
        );
        rows.extend(
            keys.into_iter()
                .zip(defaults)
                .map(|(key, default)| Row { key, default }),
        );
    }
    assert!(
        rows.len() > 10,
        "docs/experiments.md's key table has only {rows:?}"
    );
    rows
}

/// The value of `section.key` in a config as JSON (its serde names are the file's). Keys
/// added after studies were run are left out of the JSON at their defaults (the config hash
/// is taken of it): they read as null, and the decode check below still compares the whole
/// config with the defaults.
fn value_of(config: &RunConfig, key: &str) -> Value {
    let (section, name) = key.split_once('.').expect("keys are section.key");
    let json = serde_json::to_value(config).expect("config serializes");
    assert!(
        json.get(section).is_some(),
        "RunConfig has no section `{section}`"
    );
    json[section].get(name).cloned().unwrap_or(Value::Null)
}

#[test]
fn readme_documents_every_key_with_its_default() {
    let rows = readme_rows();
    let known = RunConfig::known_keys();
    let documented: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    for (i, key) in documented.iter().enumerate() {
        assert!(
            !documented[..i].contains(key),
            "docs/experiments.md documents `{key}` twice"
        );
        assert!(
            known.iter().any(|k| k == key),
            "docs/experiments.md documents `{key}`, which the parser does not accept; it accepts {known:?}"
        );
    }
    for key in &known {
        assert!(
            documented.contains(&key.as_str()),
            "`{key}` is accepted but missing from docs/experiments.md's key table"
        );
    }

    let defaults = RunConfig::default();
    for Row { key, default } in &rows {
        let actual = value_of(&defaults, key);
        let Some(text) = default else {
            assert_eq!(
                actual,
                Value::Null,
                "docs/experiments.md says `{key}` has no default (—), but its default is {actual}"
            );
            continue;
        };
        // The documented default, written in a file, must decode to the default itself.
        let (section, name) = key.split_once('.').unwrap();
        let file = format!("[{section}]\n{name} = {text}\n");
        let config = match parse_str(Path::new("docs/experiments.md"), file) {
            Ok(exp) => exp.variants[0].config.clone(),
            Err(e) => {
                panic!("docs/experiments.md's default `{text}` for `{key}` is not accepted: {e}")
            }
        };
        assert_eq!(
            value_of(&config, key),
            actual,
            "docs/experiments.md says `{key}` defaults to `{text}`, but the default is {actual}"
        );
        assert_eq!(
            config, defaults,
            "`{key} = {text}` changes more than `{key}`"
        );
    }
}

#[test]
fn known_keys_are_the_keys_the_parser_accepts() {
    let known = RunConfig::known_keys();
    for section in SECTIONS {
        // Far from every key, so the error lists the known ones instead of a "did you mean".
        let file = format!("[{section}]\nqqqqqqqq = 1\n");
        let err = parse_str(Path::new("t.toml"), file).expect_err("an unknown key is an error");
        let (_, listed) = err
            .message
            .split_once("; known keys here: ")
            .unwrap_or_else(|| panic!("no list of known keys in: {err}"));
        let mut listed: Vec<String> = listed
            .split(", ")
            .map(|k| format!("{section}.{k}"))
            .collect();
        let mut ours: Vec<String> = known
            .iter()
            .filter(|k| k.starts_with(&format!("{section}.")))
            .cloned()
            .collect();
        listed.sort();
        ours.sort();
        assert_eq!(listed, ours, "[{section}]");
    }
}

#[test]
fn a_file_without_run_keys_decodes_to_the_defaults() {
    let exp = parse_str(Path::new("t.toml"), "name = \"x\"\n".into()).unwrap();
    assert_eq!(exp.variants.len(), 1);
    assert_eq!(exp.variants[0].config, RunConfig::default());
    let exp = parse_str(Path::new("t.toml"), "[train]\n[augment]\n".into()).unwrap();
    assert_eq!(exp.variants[0].config, RunConfig::default());
}
