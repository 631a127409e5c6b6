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
    use figment::error::Kind;
    let message = error.to_string();
    if matches!(&error.kind, Kind::Message(m) if m.starts_with("TOML parse error")) {
        return without_secret_lines(&message);
    }
    if !error.path.last().is_some_and(|k| is_secret_key(k)) {
        return message;
    }
    match &error.kind {
        Kind::InvalidType(actual, _)
        | Kind::InvalidValue(actual, _)
        | Kind::Unsupported(actual) => {
            message.replace(&actual.to_string(), "a value (not shown: it is a secret)")
        }
        _ => message,
    }
}

/// A TOML parser's message with each quoted line of the file (`4 | client_secret = "abc`) kept
/// only when it cannot hold a secret: it starts a key or a table (a line inside a multi-line
/// value may be part of a secret whose key is lines above), names no secret word, and carries no
/// URL with a password. The position (`line 4, column 17`), the caret and the reason stay.
fn without_secret_lines(message: &str) -> String {
    message
        .lines()
        .map(|line| {
            let Some((number, quoted)) = line.split_once(" | ") else {
                return line.to_owned();
            };
            let number = number.trim();
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return line.to_owned();
            }
            if may_hold_a_secret(quoted) {
                format!("{number} | (this line is not shown: it may hold a secret)")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a line of a TOML file may show a secret (see [`without_secret_lines`]).
fn may_hold_a_secret(line: &str) -> bool {
    let trimmed = line.trim_start();
    let starts_a_key = trimmed.split_once('=').is_some_and(|(key, _)| {
        !key.trim().is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
    });
    let starts_a_table = trimmed.starts_with('[');
    if !(starts_a_key || starts_a_table || trimmed.is_empty() || trimmed.starts_with('#')) {
        return true;
    }
    if is_secret_key(line) {
        return true;
    }
    // `scheme://user:password@host`
    line.match_indices("://").any(|(at, _)| {
        let rest = &line[at + 3..];
        let authority = rest
            .split(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace())
            .next()
            .unwrap_or_default();
        authority
            .split_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
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
