//! `<key>_file`: every secret key can be read from a file instead, as container secrets are
//! mounted (`client_secret_file = "/run/secrets/dintero"`,
//! `POSTBUD_CHANNELS__MAIL__PASSWORD_FILE`).
//!
//! After the file and the environment are merged, every `K_file` whose `K` names a secret
//! ([`is_secret_key`]) in any table, however deep, is replaced by `K`, holding the file's
//! content with one trailing newline trimmed. A relative path is relative to the directory of
//! the configuration file that set it; one from the environment, to the current directory.
//! Errors name the key, where it was set and the path, never the content.
//!
//! The file must be a regular file (a FIFO would block the start for ever, a device such as
//! `/dev/zero` be read until memory runs out) of at most [`LIMIT`] bytes. One its group or
//! others may read is accepted with a warning: it is logged, and kept for `postbud check`.

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

/// The largest secret file read, in bytes: far more than any key, token or PEM, far less than
/// a mistaken path to a log or an archive.
pub(super) const LIMIT: u64 = 64 * 1024;

/// `K` when `key` is `K_file` and `K` names a secret. (`K_file` itself always looks secret:
/// it contains the secret word; what matters is the stem.)
fn secret_stem(key: &str) -> Option<&str> {
    key.strip_suffix(SUFFIX)
        .filter(|stem| !stem.is_empty() && is_secret_key(stem))
}

/// `figment` with every secret `K_file` replaced by `K` (the same figment when there is none),
/// and the warnings about the files read (each already logged).
pub(super) fn resolve(figment: Figment) -> Result<(Figment, Vec<String>), ConfigError> {
    // A figment that does not even parse is reported by the extraction that follows.
    let Ok(mut data) = figment.data() else {
        return Ok((figment, Vec::new()));
    };
    let mut found = Found::default();
    let mut changed = false;
    for dict in data.values_mut() {
        changed |= walk(&figment, dict, &mut Vec::new(), &mut found);
    }
    if !found.errors.is_empty() {
        return Err(ConfigError::messages_of(found.errors));
    }
    if !changed {
        return Ok((figment, found.warnings));
    }
    Ok((rebuild(&figment, data), found.warnings))
}

/// What reading the secret files found besides their contents.
#[derive(Default)]
struct Found {
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Replaces the secret `K_file` keys of `dict` (at `path`) and of every table below it.
fn walk(figment: &Figment, dict: &mut Dict, path: &mut Vec<String>, found: &mut Found) -> bool {
    let mut changed = false;
    for (key, value) in dict.iter_mut() {
        path.push(key.clone());
        match value {
            Value::Dict(_, inner) => changed |= walk(figment, inner, path, found),
            Value::Array(_, items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let Value::Dict(_, inner) = item {
                        path.push(index.to_string());
                        changed |= walk(figment, inner, path, found);
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
            found.errors.push(format!(
                "{} (in {}) and {} (in {file_origin}) are both set: set one of them",
                stem_key.join("."),
                origin(figment, inline.tag(), &stem_key),
                file_key.join("."),
            ));
            continue;
        }
        match read(figment, &value) {
            Ok(Secret {
                content,
                path,
                mode,
            }) => {
                // Tagged as the `K_file` was: `K` is then reported as set where `K_file` was.
                dict.insert(stem, Value::String(value.tag(), content));
                if let Some(mode) = mode.filter(|m| m & 0o077 != 0) {
                    let key = file_key.join(".");
                    let mode = format!("{mode:04o}");
                    tracing::warn!(
                        key = %key,
                        path = %path.display(),
                        mode = %mode,
                        "a secret file is readable by users other than its owner"
                    );
                    found.warnings.push(format!(
                        "{key} (in {file_origin}): `{}` holds a secret and is readable by its group or others (mode {mode}): make it readable by the service's user alone (chmod 600, or 400)",
                        path.display()
                    ));
                }
            }
            Err(problem) => found.errors.push(format!(
                "{} (in {file_origin}): {problem}",
                file_key.join(".")
            )),
        }
    }
    changed
}

/// A secret file read: its content, where it was, and its permissions (on Unix).
struct Secret {
    content: String,
    path: PathBuf,
    mode: Option<u32>,
}

/// The content of the file `value` names, one trailing newline trimmed. The problem, if any,
/// names the path and never the content.
fn read(figment: &Figment, value: &Value) -> Result<Secret, String> {
    use std::io::Read as _;

    let raw = value
        .deserialize::<String>()
        .map_err(|_| "expected the path of a file (a string)".to_owned())?;
    if raw.is_empty() {
        return Err("names no file (the path is empty)".into());
    }
    let path = resolve_path(figment, value.tag(), &raw);
    let cannot_read = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => format!("`{}` does not exist", path.display()),
        _ => format!("cannot read `{}`: {e}", path.display()),
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer; without blocking it opens at once and is
    // refused below. A regular file ignores the flag.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    // What is checked is the file opened (a symlink's target, as mounted secrets are), not a
    // name that could be replaced between a look and the open.
    let file = options.open(&path).map_err(cannot_read)?;
    let metadata = file.metadata().map_err(cannot_read)?;
    if !metadata.is_file() {
        return Err(format!(
            "`{}` is not a regular file ({}): a secret file must be one",
            path.display(),
            file_type(&metadata.file_type())
        ));
    }
    if metadata.len() > LIMIT {
        return Err(too_large(&path));
    }
    // Bounded even when the size said otherwise (a file growing, or one of /proc).
    let mut bytes = Vec::new();
    file.take(LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > LIMIT {
        return Err(too_large(&path));
    }
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        Some(metadata.permissions().mode() & 0o777)
    };
    #[cfg(not(unix))]
    let mode = None;
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
    Ok(Secret {
        content,
        path,
        mode,
    })
}

fn too_large(path: &Path) -> String {
    format!(
        "`{}` is larger than {} KiB: a secret file holds a key, a token or a password",
        path.display(),
        LIMIT / 1024
    )
}

/// What a file that is not a regular one is, for the error.
fn file_type(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
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
