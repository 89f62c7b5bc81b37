//! Training recipes in TOML. A recipe is an overlay: the built-in defaults (a preset's model,
//! the reference hyper-parameters), then the user's `--config` file, then the flags, merged key
//! by key and only then read into the trainer's config types, which refuse unknown keys and
//! wrong types by name.

use std::path::Path;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

/// Reads a TOML file into a table, errors naming the file (and line, from the parser).
pub fn read_table(path: &Path) -> anyhow::Result<Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_table(&text, &path.display().to_string())
}

pub fn parse_table(text: &str, name: &str) -> anyhow::Result<Table> {
    text.parse::<Table>()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// Merges `overlay` into `base`: tables key by key, anything else replaced.
pub fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets `a.b.c = value` in `table`, creating the tables on the way.
pub fn set(table: &mut Table, dotted: &str, value: impl Into<Value>) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().expect("a key");
    let mut current = table;
    for part in parts {
        current = current
            .entry(part)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("recipe keys are tables on the way down");
    }
    current.insert(last.to_string(), value.into());
}

/// The flags a user gave, as recipe keys (the last layer of the overlay).
#[derive(Debug, Default)]
pub struct Overlay(Table);

impl Overlay {
    /// Sets `key` (dotted, e.g. `train.max_steps`) when the flag was given.
    pub fn set<T: FlagValue>(mut self, key: &str, value: Option<T>) -> Self {
        if let Some(value) = value {
            set(&mut self.0, key, value.into_toml());
        }
        self
    }

    pub fn into_table(self) -> Table {
        self.0
    }
}

/// A flag's value as TOML.
pub trait FlagValue {
    fn into_toml(self) -> Value;
}

impl FlagValue for u64 {
    fn into_toml(self) -> Value {
        Value::Integer(self as i64)
    }
}

impl FlagValue for usize {
    fn into_toml(self) -> Value {
        Value::Integer(self as i64)
    }
}

impl FlagValue for f64 {
    fn into_toml(self) -> Value {
        Value::Float(self)
    }
}

impl FlagValue for bool {
    fn into_toml(self) -> Value {
        Value::Boolean(self)
    }
}

impl FlagValue for &str {
    fn into_toml(self) -> Value {
        Value::String(self.to_string())
    }
}

impl FlagValue for &std::path::Path {
    fn into_toml(self) -> Value {
        Value::String(self.display().to_string())
    }
}

/// The leaves of `table` as (dotted key, value), tables descended into.
pub fn flatten(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => flatten(&key, inner, out),
            leaf => out.push((key, leaf.clone())),
        }
    }
}

/// The value at a dotted key.
pub fn lookup<'a>(table: &'a Table, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// The TOML form of a config's defaults.
pub fn to_table<T: Serialize>(value: &T) -> anyhow::Result<Table> {
    let text = toml::to_string(value).context("turning the defaults into TOML")?;
    parse_table(&text, "defaults")
}

/// Reads the merged table as `T`; `source` names where the keys came from in errors.
pub fn from_table<T: DeserializeOwned>(table: Table, source: &str) -> anyhow::Result<T> {
    T::deserialize(Value::Table(table)).map_err(|e| anyhow::anyhow!("{source}: {e}"))
}

/// `[model]` overrides must be fields the model has: the model config keeps unknown fields of
/// a Hugging Face config.json on purpose, but in a recipe an unknown key is a typo.
pub fn check_model_keys(
    extra: &serde_json::Map<String, serde_json::Value>,
    source: &str,
) -> anyhow::Result<()> {
    if let Some(key) = extra.keys().next() {
        bail!("{source}: unknown key `model.{key}` (see `berthash info --preset nano --json` for the model fields)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_merge_tables_key_by_key() {
        let mut base = parse_table("[a]\nx = 1\ny = 2\n[b]\nz = 3\n", "base").unwrap();
        merge(&mut base, parse_table("[a]\ny = 20\n", "file").unwrap());
        set(&mut base, "b.z", 30);
        set(&mut base, "c.d.e", "new");
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(20));
        assert_eq!(base["b"]["z"].as_integer(), Some(30));
        assert_eq!(base["c"]["d"]["e"].as_str(), Some("new"));
    }
}
