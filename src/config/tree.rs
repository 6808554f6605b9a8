//! A TOML document as an owned tree that remembers where every key and value came from, so
//! that validation errors can name the file, line, column and key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A configuration error: where it is and what is wrong. Exit code 2.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column; `None` when the problem has no single place (e.g. an empty file).
    pub position: Option<(usize, usize)>,
    /// The dotted key the problem is about, when there is one.
    pub key: Option<String>,
    pub message: String,
    /// The offending source line, for a caret display.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(src), Some((_, col))) = (&self.source_line, self.position) {
            let caret_pad: String = src
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n    | {src}\n    | {caret_pad}^")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The source text of a config file, used to turn byte spans into positions.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: &Path, text: String) -> Self {
        Self {
            path: path.to_path_buf(),
            text,
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize, String) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = self.text[line_start..offset].chars().count() + 1;
        let line_text = self.text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        (line, col, line_text)
    }

    /// An error at a span (or at no particular place when `span` is `None`).
    pub fn error(
        &self,
        span: Option<&Range<usize>>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (position, source_line) = match span {
            Some(span) => {
                let (line, col, text) = self.line_col(span.start);
                (Some((line, col)), Some(text))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.path.clone(),
            position,
            key: key.map(str::to_string),
            message: message.into(),
            source_line,
        }
    }
}

/// A key as written, with its span.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub span: Range<usize>,
}

/// A value with its span.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

/// An ordered table (file order is kept: grid axes and labels are named in that order).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub entries: Vec<(Key, Node)>,
}

impl Table {
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    pub(crate) fn get_entry(&self, name: &str) -> Option<&(Key, Node)> {
        self.entries.iter().find(|(k, _)| k.name == name)
    }

    /// Inserts or replaces `name`, keeping the position of an existing entry.
    pub fn set(&mut self, key: Key, node: Node) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| k.name == key.name) {
            *slot = (key, node);
        } else {
            self.entries.push((key, node));
        }
    }

    /// Sets a dotted path (`train.lr`), creating intermediate tables. Fails (returning the
    /// prefix) when an intermediate key holds a non-table value.
    pub(crate) fn set_path(&mut self, path: &[&str], key: Key, node: Node) -> Result<(), String> {
        match path {
            [] => Ok(()),
            [last] => {
                self.set(
                    Key {
                        name: last.to_string(),
                        span: key.span,
                    },
                    node,
                );
                Ok(())
            }
            [first, rest @ ..] => {
                if self.get(first).is_none() {
                    self.set(
                        Key {
                            name: first.to_string(),
                            span: key.span.clone(),
                        },
                        Node {
                            value: Value::Table(Table::default()),
                            span: key.span.clone(),
                        },
                    );
                }
                let slot = self
                    .entries
                    .iter_mut()
                    .find(|(k, _)| k.name == *first)
                    .map(|(_, v)| v)
                    .expect("inserted above");
                match &mut slot.value {
                    Value::Table(t) => t.set_path(rest, key, node),
                    _ => Err(first.to_string()),
                }
            }
        }
    }
}

impl Value {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    /// A short human label for a value, used to name grid variants (`mse`, `0.001`, `3_6_12`).
    pub fn label(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f}"),
            Value::Bool(b) => b.to_string(),
            Value::Datetime(d) => d.clone(),
            Value::Array(items) => items
                .iter()
                .map(|n| n.value.label())
                .collect::<Vec<_>>()
                .join("_"),
            Value::Table(_) => "table".to_string(),
        }
    }
}

/// Parses TOML text into a spanned tree; syntax errors carry their position.
pub fn parse(source: &Source) -> Result<Table, ConfigError> {
    let doc = DeTable::parse(&source.text).map_err(|e| {
        let span = e.span();
        let message = e.message().trim().to_string();
        source.error(span.as_ref(), None, format!("TOML syntax error: {message}"))
    })?;
    convert_table(source, doc.get_ref())
}

fn convert_table(source: &Source, table: &DeTable<'_>) -> Result<Table, ConfigError> {
    let mut out = Table::default();
    for (key, value) in table.iter() {
        let key = Key {
            name: key.get_ref().to_string(),
            span: key.span(),
        };
        let node = convert_value(source, value.get_ref(), value.span(), &key.name)?;
        out.entries.push((key, node));
    }
    Ok(out)
}

fn convert_value(
    source: &Source,
    value: &DeValue<'_>,
    span: Range<usize>,
    key: &str,
) -> Result<Node, ConfigError> {
    let value = match value {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str();
            match i64::from_str_radix(digits, i.radix()) {
                Ok(v) => Value::Int(v),
                Err(_) => {
                    return Err(source.error(
                        Some(&span),
                        Some(key),
                        "integer is out of range (it must fit in a signed 64-bit integer)",
                    ));
                }
            }
        }
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(v) => Value::Float(v),
            Err(_) => {
                return Err(source.error(Some(&span), Some(key), "float could not be read"));
            }
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| convert_value(source, item.get_ref(), item.span(), key))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => Value::Table(convert_table(source, t)?),
    };
    Ok(Node { value, span })
}
