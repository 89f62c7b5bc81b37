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
