//! Command-line overrides — `--set KEY=VALUE`, `--grid KEY=V1,V2`, `--epochs N` — as edits of
//! the experiment file's TOML, made before the file is checked: the same schema types them,
//! and the edited text is the study (its tasks' config hashes, its `experiment.toml`).
//!
//! An edited study gets its own name (`mse_adam+train.lr=1e-4`) and so its own directory: an
//! override never writes into the results of the file it started from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value as TomlValue};

use super::tree::ConfigError;
use crate::util::hash::fnv1a64;

/// Which flag an edit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EditFlag {
    /// `--set KEY=VALUE`: one key, in the base and in every `[[variant]]` that sets it.
    Set,
    /// `--grid KEY=V1,V2`: a grid axis (added, or its levels replaced).
    Grid,
    /// `--epochs N`: `--set train.epochs=N`.
    Epochs,
}

/// One override, as typed after its flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub flag: EditFlag,
    pub arg: String,
}

impl Edit {
    pub fn set(arg: impl Into<String>) -> Edit {
        Edit {
            flag: EditFlag::Set,
            arg: arg.into(),
        }
    }

    pub fn grid(arg: impl Into<String>) -> Edit {
        Edit {
            flag: EditFlag::Grid,
            arg: arg.into(),
        }
    }

    pub fn epochs(n: u64) -> Edit {
        Edit {
            flag: EditFlag::Epochs,
            arg: n.to_string(),
        }
    }

    pub fn flag_name(&self) -> &'static str {
        match self.flag {
            EditFlag::Set => "--set",
            EditFlag::Grid => "--grid",
            EditFlag::Epochs => "--epochs",
        }
    }

    /// The flag and its argument, as typed: `--set train.lr=1e-4`.
    pub fn display(&self) -> String {
        format!("{} {}", self.flag_name(), self.arg)
    }

    /// The key it edits and its value(s), as written.
    fn key_values(&self) -> Result<(String, Vec<String>), String> {
        if self.flag == EditFlag::Epochs {
            return Ok(("train.epochs".into(), vec![self.arg.clone()]));
        }
        let (key, value) = split_assignment(&self.arg)?;
        let values = match self.flag {
            EditFlag::Grid => split_levels(value),
            _ => vec![value.to_string()],
        };
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err("a value is empty".into());
        }
        Ok((key.to_string(), values))
    }

    /// The edit in a study's name: `train.lr=1e-4`.
    fn name_part(&self) -> String {
        match self.flag {
            EditFlag::Epochs => format!("train.epochs={}", self.arg),
            _ => self.arg.clone(),
        }
    }
}

/// `KEY=VALUE` → (KEY, VALUE), the key checked: the form clap's parser accepts too.
pub fn split_assignment(arg: &str) -> Result<(&str, &str), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE, e.g. train.lr=1e-4".to_string())?;
    let key = key.trim();
    let well_formed = !key.is_empty()
        && key.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !well_formed {
        return Err(format!(
            "\"{key}\" is not a key: write it as in the file, dotted (train.lr, model.widths, seeds)"
        ));
    }
    Ok((key, value.trim()))
}

/// `a,b,[1,2],"x,y"` → its levels: commas inside brackets, braces or quotes do not split.
fn split_levels(text: &str) -> Vec<String> {
    let mut levels = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut current = String::new();
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                levels.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    levels.push(current.trim().to_string());
    levels
}

/// A value as TOML (`1e-4`, `[3, 6]`, `true`, `"x"`), or else as a string (`adam`).
fn toml_value(text: &str) -> TomlValue {
    let mut value = text
        .parse::<TomlValue>()
        .unwrap_or_else(|_| TomlValue::from(text));
    // Laid out as toml_edit lays out a new value (`key = value`), whatever the flag's spaces.
    value.decor_mut().clear();
    value
}

/// An error about one flag (or several, when the schema cannot tell which).
fn flag_error(flags: &str, key: Option<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::from(flags),
        position: None,
        key,
        message: message.into(),
        source_line: None,
    }
}

/// The file's text with the edits made, the study renamed after them (unless an edit sets
/// `name`) and a comment saying where it came from.
pub fn apply(path: &Path, text: &str, name: &str, edits: &[Edit]) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        flag_error(&path.display().to_string(), None, e.message().to_string())
    })?;
    for edit in edits {
        let (key, values) = edit
            .key_values()
            .map_err(|m| flag_error(&edit.display(), None, m))?;
        let fail = |m: String| flag_error(&edit.display(), Some(key.clone()), m);
        match edit.flag {
            EditFlag::Grid => set_grid_axis(&mut doc, &key, &values).map_err(fail)?,
            _ => set_everywhere(&mut doc, &key, toml_value(&values[0])).map_err(fail)?,
        }
    }
    if !edits
        .iter()
        .any(|e| e.key_values().is_ok_and(|(k, _)| k == "name"))
    {
        doc.insert("name", Item::Value(TomlValue::from(renamed(name, edits))));
    }
    let flags = clean_line(
        &edits
            .iter()
            .map(Edit::display)
            .collect::<Vec<_>>()
            .join(" "),
    );
    Ok(format!(
        "# {} {flags}\n# (unet-lab's command-line overrides; the study is named after them)\n{doc}",
        clean_line(&path.display().to_string())
    ))
}

/// A line of a comment: control characters would end it.
fn clean_line(text: &str) -> String {
    text.replace(|c: char| c.is_control(), " ")
}

/// `mse_adam+train.lr=1e-4`, or `mse_adam+<hash>` where that would be too long for a name.
fn renamed(name: &str, edits: &[Edit]) -> String {
    let parts: Vec<String> = edits.iter().map(Edit::name_part).collect();
    let long = format!("{name}+{}", clean_line(&parts.join("+")));
    if long.chars().count() <= 80 {
        long
    } else {
        format!("{name}+{:08x}", fnv1a64(parts.join("\n").as_bytes()) as u32)
    }
}

/// `--set`: the key in the base, and in every `[[variant]]` that sets it itself (the command
/// line changes every variant); a key the grid varies is `--grid`'s.
fn set_everywhere(doc: &mut DocumentMut, key: &str, value: TomlValue) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts[0] == "grid" {
        return Err("the grid's axes are set with --grid KEY=V1,V2".into());
    }
    if parts[0] == "variant" {
        return Err(
            "[[variant]] entries cannot be set from the command line; --set KEY changes the key \
             in every variant"
                .into(),
        );
    }
    if doc
        .get("grid")
        .and_then(Item::as_table_like)
        .is_some_and(|g| g.contains_key(key))
    {
        return Err(format!(
            "the file's [grid] varies {key}; change its levels with --grid {key}=V1,V2"
        ));
    }
    if let Some(variants) = doc
        .get_mut("variant")
        .and_then(Item::as_array_of_tables_mut)
    {
        for variant in variants.iter_mut() {
            if let Some(slot) = existing_slot(variant, &parts) {
                *slot = Item::Value(value.clone());
            }
        }
    }
    let (last, sections) = parts.split_last().expect("a key has a part");
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    for (i, part) in sections.iter().enumerate() {
        if !table.contains_key(part) {
            let mut section = Table::new();
            section.set_implicit(i + 1 < sections.len());
            table.insert(part, Item::Table(section));
        }
        table = table
            .get_mut(part)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| {
                format!(
                    "{} is a value in the file, not a section",
                    parts[..=i].join(".")
                )
            })?;
    }
    if table.get(last).is_some_and(|item| item.is_table_like()) {
        return Err(format!(
            "{key} is a section, not a key; set one of its keys"
        ));
    }
    table.insert(last, Item::Value(value));
    Ok(())
}

/// The item at `parts` in a variant's table, when the variant sets it.
fn existing_slot<'a>(table: &'a mut Table, parts: &[&str]) -> Option<&'a mut Item> {
    let (last, sections) = parts.split_last()?;
    let mut here: &mut dyn TableLike = table;
    for part in sections {
        here = here.get_mut(part)?.as_table_like_mut()?;
    }
    here.get_mut(last).filter(|item| item.is_value())
}

/// `--grid`: the axis `"section.key" = [levels]` in `[grid]`, replacing the file's levels.
fn set_grid_axis(doc: &mut DocumentMut, key: &str, levels: &[String]) -> Result<(), String> {
    let root = doc.as_table_mut();
    if !root.contains_key("grid") {
        root.insert("grid", Item::Table(Table::new()));
    }
    let grid = root
        .get_mut("grid")
        .and_then(Item::as_table_like_mut)
        .ok_or("grid is a value in the file, not a table")?;
    let mut array = Array::new();
    for level in levels {
        array.push(toml_value(level));
    }
    grid.insert(key, Item::Value(TomlValue::Array(array)));
    Ok(())
}

/// The schema's error about the edited text, told about the flag that caused it: the file
/// itself was checked first, so the edits are to blame.
pub fn blame(error: ConfigError, edits: &[Edit]) -> ConfigError {
    let culprit = error.key.as_deref().and_then(|bad| {
        edits.iter().rev().find(|e| {
            e.key_values().is_ok_and(|(k, _)| {
                bad == k || bad.ends_with(&format!(".{k}")) || bad.starts_with(&format!("{k}."))
            })
        })
    });
    let flags = match culprit {
        Some(edit) => edit.display(),
        None => edits
            .iter()
            .map(Edit::display)
            .collect::<Vec<_>>()
            .join(" "),
    };
    flag_error(&flags, error.key, error.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_split_at_top_level_commas_only() {
        assert_eq!(split_levels("adam,sgd"), ["adam", "sgd"]);
        assert_eq!(
            split_levels("[3,6],[64, 128], \"a,b\""),
            ["[3,6]", "[64, 128]", "\"a,b\""]
        );
    }

    #[test]
    fn values_are_toml_or_else_strings() {
        assert_eq!(toml_value("1e-4").as_float(), Some(1e-4));
        assert_eq!(toml_value("3").as_integer(), Some(3));
        assert_eq!(toml_value("adam").as_str(), Some("adam"));
        assert_eq!(toml_value("[3, 6]").as_array().map(Array::len), Some(2));
    }

    #[test]
    fn keys_are_checked() {
        assert!(split_assignment("train.lr").is_err());
        assert!(split_assignment("train..lr=1").is_err());
        assert!(split_assignment("=1").is_err());
        assert_eq!(split_assignment("train.lr = 1").unwrap(), ("train.lr", "1"));
    }

    #[test]
    fn a_set_reaches_the_base_and_the_variants_that_set_the_key() {
        let text = "name = \"x\"\n[train]\nlr = 0.1\n\n[[variant]]\nname = \"a\"\ntrain = { lr = 0.2 }\n\n[[variant]]\nname = \"b\"\n";
        let out = apply(
            Path::new("x.toml"),
            text,
            "x",
            &[Edit::set("train.lr=5e-4")],
        )
        .unwrap();
        assert!(out.contains("lr = 5e-4\n"), "{out}");
        assert!(out.contains("train = { lr = 5e-4 }"), "{out}");
        assert!(out.contains("name = \"x+train.lr=5e-4\""), "{out}");
    }
}
