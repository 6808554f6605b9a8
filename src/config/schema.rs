//! Reads one section of a config tree into typed values, checking types and ranges and
//! rejecting keys that the schema does not know (with a "did you mean" hint).

use std::ops::Range;

use super::tree::{ConfigError, Key, Node, Source, Table, Value};

/// Reads the keys of one table; every key read is marked as known.
pub(crate) struct SectionReader<'a> {
    source: &'a Source,
    /// Dotted prefix for error messages (`train`), empty for the top level.
    prefix: String,
    table: &'a Table,
    /// Span of the table header, for errors about missing keys.
    span: Option<Range<usize>>,
    known: Vec<&'static str>,
}

impl<'a> SectionReader<'a> {
    pub fn new(
        source: &'a Source,
        prefix: &str,
        table: &'a Table,
        span: Option<Range<usize>>,
    ) -> Self {
        Self {
            source,
            prefix: prefix.to_string(),
            table,
            span,
            known: Vec::new(),
        }
    }

    pub(crate) fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    pub fn source(&self) -> &'a Source {
        self.source
    }

    pub(crate) fn error_at(
        &self,
        node: &Node,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.source
            .error(Some(&node.span), Some(&self.full_key(key)), message)
    }

    pub(crate) fn error_here(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.source
            .error(self.span.as_ref(), Some(&self.full_key(key)), message)
    }

    /// Declares `key` as known and returns its node, if present.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        self.known.push(key);
        self.table.get(key)
    }

    /// The node of `key`, if present, without declaring the key known.
    pub fn peek(&self, key: &str) -> Option<&'a Node> {
        self.table.get(key)
    }

    /// The keys declared known so far, in the order they were read.
    pub fn known(&self) -> &[&'static str] {
        &self.known
    }

    fn type_error(&self, node: &Node, key: &str, expected: &str) -> ConfigError {
        self.error_at(
            node,
            key,
            format!("expected {expected}, found {}", node.value.type_name()),
        )
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.node(key) {
            None => Ok(None),
            Some(node) => match &node.value {
                Value::Str(s) => Ok(Some(s.clone())),
                _ => Err(self.type_error(node, key, "a string")),
            },
        }
    }

    /// A string that must be one of `allowed`.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        allowed: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
        let Value::Str(s) = &node.value else {
            return Err(self.type_error(
                node,
                key,
                &format!("a string (one of {})", quote_list(&names)),
            ));
        };
        match allowed.iter().find(|(n, _)| n == s) {
            Some((_, v)) => Ok(Some(*v)),
            None => {
                let mut msg = format!("unknown value \"{s}\"; allowed: {}", quote_list(&names));
                if let Some(best) = did_you_mean(s, &names) {
                    msg.push_str(&format!(" (did you mean \"{best}\"?)"));
                }
                Err(self.error_at(node, key, msg))
            }
        }
    }

    pub(crate) fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.node(key) {
            None => Ok(None),
            Some(node) => match &node.value {
                Value::Bool(b) => Ok(Some(*b)),
                _ => Err(self.type_error(node, key, "a boolean (true or false)")),
            },
        }
    }

    /// An integer within `[min, max]`.
    pub(crate) fn int(
        &mut self,
        key: &'static str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ConfigError> {
        match self.node(key) {
            None => Ok(None),
            Some(node) => Ok(Some(self.int_value(node, key, min, max)?)),
        }
    }

    fn int_value(&self, node: &Node, key: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
        match &node.value {
            Value::Int(i) if (*i < min || *i > max) => Err(self.error_at(
                node,
                key,
                format!("value {i} is out of range: it must be between {min} and {max}"),
            )),
            Value::Int(i) => Ok(*i),
            _ => Err(self.type_error(node, key, "an integer")),
        }
    }

    /// A finite float (integers are accepted) checked by `check`, which returns the reason a
    /// value is out of range.
    pub fn float(
        &mut self,
        key: &'static str,
        check: impl Fn(f64) -> Option<String>,
    ) -> Result<Option<f64>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let v = match &node.value {
            Value::Float(f) => *f,
            Value::Int(i) => *i as f64,
            _ => return Err(self.type_error(node, key, "a number")),
        };
        if !v.is_finite() {
            return Err(self.error_at(node, key, format!("value {v} is not a finite number")));
        }
        if let Some(reason) = check(v) {
            return Err(self.error_at(node, key, format!("value {v} is out of range: {reason}")));
        }
        Ok(Some(v))
    }

    /// An array of integers, each within `[min, max]`, with a length in `len`.
    pub(crate) fn int_list(
        &mut self,
        key: &'static str,
        min: i64,
        max: i64,
        len: Range<usize>,
    ) -> Result<Option<Vec<i64>>, ConfigError> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let Value::Array(items) = &node.value else {
            return Err(self.type_error(node, key, "an array of integers"));
        };
        if !len.contains(&items.len()) {
            let what = if len.end == len.start + 1 {
                format!("exactly {} values", len.start)
            } else if items.is_empty() {
                "at least one value".to_string()
            } else {
                format!("between {} and {} values", len.start, len.end - 1)
            };
            return Err(self.error_at(
                node,
                key,
                format!("must have {what}, found {}", items.len()),
            ));
        }
        items
            .iter()
            .map(|item| self.int_value(item, key, min, max))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A sub-table (`[data]`); a missing one reads as empty.
    pub fn table(
        &mut self,
        key: &'static str,
    ) -> Result<Option<(&'a Key, &'a Table)>, ConfigError> {
        self.known.push(key);
        match self.table.get_entry(key) {
            None => Ok(None),
            Some((k, node)) => match &node.value {
                Value::Table(t) => Ok(Some((k, t))),
                _ => Err(self.type_error(node, key, "a table")),
            },
        }
    }

    /// Marks keys as known without reading them (read elsewhere).
    pub fn allow(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    /// Fails on the first key the schema did not ask for.
    pub fn finish(self) -> Result<(), ConfigError> {
        for (key, _) in &self.table.entries {
            if !self.known.contains(&key.name.as_str()) {
                let mut msg = format!("unknown key `{}`", key.name);
                if let Some(best) = did_you_mean(&key.name, &self.known) {
                    msg.push_str(&format!(" (did you mean `{best}`?)"));
                } else {
                    let mut known = self.known.clone();
                    known.sort();
                    known.dedup();
                    msg.push_str(&format!("; known keys here: {}", known.join(", ")));
                }
                return Err(self.source.error(
                    Some(&key.span),
                    Some(&self.full_key(&key.name)),
                    msg,
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn quote_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest known name, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'n>(given: &str, known: &[&'n str]) -> Option<&'n str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(given, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}
