//! Configuration errors that name the key and the file or variable it came from, and the two
//! questions every part of the configuration asks figment: where was a key set, and what does a
//! relative path set there mean.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use figment::Figment;

/// A configuration problem, with the key and the file or variable it came from.
#[derive(Debug, Clone)]
pub struct ConfigError {
    messages: Vec<String>,
}

impl ConfigError {
    /// A single message; include the key and the source.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            messages: vec![message.into()],
        }
    }

    /// Several problems at once, one per entry.
    pub fn messages_of(messages: Vec<String>) -> Self {
        Self { messages }
    }

    /// Every problem found, one per entry.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        // figment's Display already says "for key `x` in <file>"; each error in the chain is one
        // problem.
        Self {
            messages: error.into_iter().map(describe).collect(),
        }
    }
}

/// Words in a key name that mark its value as a credential.
const SECRET_WORDS: [&str; 8] = [
    "secret",
    "password",
    "passphrase",
    "passwd",
    "token",
    "key",
    "auth",
    "credential",
];

/// Whether the value of a configuration key is a credential, by its name.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// figment's message, with the value left out when the key holds a credential: a secret of the
/// wrong type must not end up in a terminal or a log.
fn describe(error: figment::Error) -> String {
    let message = error.to_string();
    if !error.path.last().is_some_and(|k| is_secret_key(k)) {
        return message;
    }
    use figment::error::Kind;
    match &error.kind {
        Kind::InvalidType(actual, _)
        | Kind::InvalidValue(actual, _)
        | Kind::Unsupported(actual) => {
            message.replace(&actual.to_string(), "a value (not shown: it is a secret)")
        }
        _ => message,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.messages.as_slice() {
            [one] => write!(f, "configuration error: {one}"),
            many => {
                write!(f, "{} configuration errors:", many.len())?;
                for m in many {
                    write!(f, "\n  - {m}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where `key` was set: `TOML file /etc/postbud.toml`, `environment variable POSTBUD_X`, or
/// `defaults`.
pub fn source_of(figment: &Figment, key: &str) -> String {
    figment
        .find_metadata(key)
        .map(|md| match &md.source {
            Some(source) => format!("{} {source}", md.name),
            None => md.name.to_string(),
        })
        .unwrap_or_else(|| "defaults".into())
}

/// `raw`, a path set at `key`, as the process must open it: a relative path written in a
/// configuration file is relative to that file's directory (so `postbud status` run from
/// another directory reads the same store); one from the environment, or absolute, is kept.
pub fn resolve_path(figment: &Figment, key: &str, raw: &str) -> PathBuf {
    let path = PathBuf::from(raw);
    if path.is_absolute() {
        return path;
    }
    let file = figment
        .find_metadata(key)
        .and_then(|md| md.source.as_ref())
        .and_then(|source| source.file_path())
        .and_then(Path::parent);
    match file {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}
