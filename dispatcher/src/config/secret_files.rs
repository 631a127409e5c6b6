//! `<key>_file`: every secret key can be read from a file instead, as container secrets are
//! mounted (`client_secret_file = "/run/secrets/dintero"`,
//! `POSTBUD_CHANNELS__MAIL__PASSWORD_FILE`).
//!
//! After the file and the environment are merged, every `K_file` whose `K` names a secret
//! ([`is_secret_key`]) in any table, however deep, is replaced by `K`, holding the file's
//! content with one trailing newline trimmed. A relative path is relative to the directory of
//! the configuration file that set it; one from the environment, to the current directory.
//! Errors name the key, where it was set and the path, never the content.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider,
    value::{Dict, Map, Tag, Value},
};

use super::{ConfigError, is_secret_key};

const SUFFIX: &str = "_file";

/// `K` when `key` is `K_file` and `K` names a secret. (`K_file` itself always looks secret:
/// it contains the secret word; what matters is the stem.)
fn secret_stem(key: &str) -> Option<&str> {
    key.strip_suffix(SUFFIX)
        .filter(|stem| !stem.is_empty() && is_secret_key(stem))
}

/// `figment` with every secret `K_file` replaced by `K`; the same figment when there is none.
pub(super) fn resolve(figment: Figment) -> Result<Figment, ConfigError> {
    // A figment that does not even parse is reported by the extraction that follows.
    let Ok(mut data) = figment.data() else {
        return Ok(figment);
    };
    let mut errors = Vec::new();
    let mut changed = false;
    for dict in data.values_mut() {
        changed |= walk(&figment, dict, &mut Vec::new(), &mut errors);
    }
    if !errors.is_empty() {
        return Err(ConfigError::messages_of(errors));
    }
    if !changed {
        return Ok(figment);
    }
    Ok(rebuild(&figment, data))
}

/// Replaces the secret `K_file` keys of `dict` (at `path`) and of every table below it.
fn walk(
    figment: &Figment,
    dict: &mut Dict,
    path: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> bool {
    let mut changed = false;
    for (key, value) in dict.iter_mut() {
        path.push(key.clone());
        match value {
            Value::Dict(_, inner) => changed |= walk(figment, inner, path, errors),
            Value::Array(_, items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let Value::Dict(_, inner) = item {
                        path.push(index.to_string());
                        changed |= walk(figment, inner, path, errors);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
    let keys: Vec<String> = dict
        .keys()
        .filter(|k| secret_stem(k).is_some())
        .cloned()
        .collect();
    for key in keys {
        let stem = secret_stem(&key).expect("filtered").to_owned();
        let Some(value) = dict.remove(&key) else {
            continue;
        };
        changed = true;
        let at = |k: &str| -> Vec<String> { path.iter().cloned().chain([k.to_owned()]).collect() };
        let file_key = at(&key);
        let file_origin = origin(figment, value.tag(), &file_key);
        if let Some(inline) = dict.get(&stem) {
            let stem_key = at(&stem);
            errors.push(format!(
                "{} (in {}) and {} (in {file_origin}) are both set: set one of them",
                stem_key.join("."),
                origin(figment, inline.tag(), &stem_key),
                file_key.join("."),
            ));
            continue;
        }
        match read(figment, &value) {
            Ok(content) => {
                // Tagged as the `K_file` was: `K` is then reported as set where `K_file` was.
                dict.insert(stem, Value::String(value.tag(), content));
            }
            Err(problem) => errors.push(format!(
                "{} (in {file_origin}): {problem}",
                file_key.join(".")
            )),
        }
    }
    changed
}

/// The content of the file `value` names, one trailing newline trimmed. The problem, if any,
/// names the path and never the content.
fn read(figment: &Figment, value: &Value) -> Result<String, String> {
    let raw = value
        .deserialize::<String>()
        .map_err(|_| "expected the path of a file (a string)".to_owned())?;
    if raw.is_empty() {
        return Err("names no file (the path is empty)".into());
    }
    let path = resolve_path(figment, value.tag(), &raw);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("`{}` does not exist", path.display()),
        _ => format!("cannot read `{}`: {e}", path.display()),
    })?;
    let mut content =
        String::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8 text", path.display()))?;
    if content.ends_with("\r\n") {
        content.truncate(content.len() - 2);
    } else if content.ends_with('\n') {
        content.truncate(content.len() - 1);
    }
    if content.is_empty() {
        return Err(format!("`{}` is empty", path.display()));
    }
    Ok(content)
}

/// As `Settings::resolve_path`: relative to the directory of the configuration file that set
/// the value; from the environment (or absolute), as written.
fn resolve_path(figment: &Figment, tag: Tag, raw: &str) -> PathBuf {
    let path = PathBuf::from(raw);
    if path.is_absolute() {
        return path;
    }
    let dir = figment
        .get_metadata(tag)
        .and_then(|md| md.source.as_ref())
        .and_then(|source| source.file_path())
        .and_then(Path::parent);
    match dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}

/// Where the value tagged `tag` at `key` was set: the file, or the exact environment variable.
fn origin(figment: &Figment, tag: Tag, key: &[String]) -> String {
    let Some(md) = figment.get_metadata(tag) else {
        return "defaults".into();
    };
    match &md.source {
        Some(source) => format!("{} {source}", md.name),
        None if md.name.contains("POSTBUD_") => {
            format!("environment variable {}", environment_variable(key))
        }
        None => md.name.to_string(),
    }
}

/// `POSTBUD_` and the key in upper case, `__` for each dot, `_` for each `-` (a shell cannot
/// name a variable with a dash; `channels.customer-email.password_file` is
/// `POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD_FILE`).
fn environment_variable(key: &[String]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|k| k.to_ascii_uppercase().replace('-', "_"))
        .collect();
    format!("POSTBUD_{}", parts.join("__"))
}

/// One source's share of the resolved tree, under that source's metadata: figment cannot drop
/// a key, so the figment is made anew from these, each value still reported where it was set.
struct Part {
    metadata: Metadata,
    data: Map<Profile, Dict>,
}

impl Provider for Part {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(self.data.clone())
    }
}

fn rebuild(original: &Figment, data: Map<Profile, Dict>) -> Figment {
    let mut parts: BTreeMap<Tag, Map<Profile, Dict>> = BTreeMap::new();
    for (profile, dict) in data {
        split(&profile, &dict, &mut Vec::new(), &mut parts);
    }
    // In the order the sources were merged: a table's own tag is then the one it had.
    let mut figment = Figment::new().select(original.profile().clone());
    for (tag, data) in parts {
        let metadata = original
            .get_metadata(tag)
            .cloned()
            .unwrap_or_else(|| Metadata::named("configuration"));
        figment = figment.merge(Part { metadata, data });
    }
    figment
}

/// Distributes the values of `dict` (at `path`) to the parts of their tags; each table is also
/// put, empty, in the part of its own tag.
fn split(
    profile: &Profile,
    dict: &Dict,
    path: &mut Vec<String>,
    parts: &mut BTreeMap<Tag, Map<Profile, Dict>>,
) {
    for (key, value) in dict {
        path.push(key.clone());
        match value {
            Value::Dict(tag, inner) => {
                place(
                    parts,
                    *tag,
                    profile,
                    path,
                    Value::Dict(Tag::Default, Dict::new()),
                );
                split(profile, inner, path, parts);
            }
            other => place(parts, other.tag(), profile, path, untagged(other)),
        }
        path.pop();
    }
}

fn place(
    parts: &mut BTreeMap<Tag, Map<Profile, Dict>>,
    tag: Tag,
    profile: &Profile,
    path: &[String],
    value: Value,
) {
    let (last, parents) = path.split_last().expect("a key");
    let mut dict = parts
        .entry(tag)
        .or_default()
        .entry(profile.clone())
        .or_default();
    for parent in parents {
        let entry = dict
            .entry(parent.clone())
            .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
        if !matches!(entry, Value::Dict(..)) {
            // Cannot happen (a table in the merged tree is a table in every part); kept total.
            *entry = Value::Dict(Tag::Default, Dict::new());
        }
        let Value::Dict(_, inner) = entry else {
            unreachable!("made a table just above")
        };
        dict = inner;
    }
    match (dict.get_mut(last), value) {
        // A table already made by one of its values: it stays.
        (Some(Value::Dict(..)), Value::Dict(..)) => {}
        (_, value) => {
            dict.insert(last.clone(), value);
        }
    }
}

/// `value` with every tag reset, so the part that provides it tags it anew.
fn untagged(value: &Value) -> Value {
    match value {
        Value::String(_, v) => Value::String(Tag::Default, v.clone()),
        Value::Char(_, v) => Value::Char(Tag::Default, *v),
        Value::Bool(_, v) => Value::Bool(Tag::Default, *v),
        Value::Num(_, v) => Value::Num(Tag::Default, *v),
        Value::Empty(_, v) => Value::Empty(Tag::Default, *v),
        Value::Dict(_, v) => Value::Dict(
            Tag::Default,
            v.iter().map(|(k, v)| (k.clone(), untagged(v))).collect(),
        ),
        Value::Array(_, v) => Value::Array(Tag::Default, v.iter().map(untagged).collect()),
    }
}
