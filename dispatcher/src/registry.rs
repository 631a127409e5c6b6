//! The channel plugin system: factories submitted with [`crate::register_channel!`] (through
//! `inventory`) or added explicitly with each channel crate's `register(&mut Registry)`.

use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc};

use figment::{Figment, value::Value};
use serde::de::DeserializeOwned;

use crate::{
    channel::Channel,
    config::{ConfigError, Settings},
};

/// A channel kind: how to build instances of it from their `[channels.<name>]` table.
#[derive(Debug)]
pub struct ChannelFactory {
    /// The `kind` value that selects it.
    pub kind: &'static str,
    /// One line for `postbud channels`.
    pub description: &'static str,
    /// The crate that provides it, to tell operators what to link.
    pub crate_name: &'static str,
    /// An example `[channels.<name>]` table.
    pub example: &'static str,
    /// Builds an instance from its table.
    pub build: fn(BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError>,
}

/// What [`crate::register_channel!`] submits to `inventory`: a reference to the named factory,
/// so the explicit `register()` path adds the very same factory and duplicates are recognised.
#[derive(Debug)]
pub struct Registration(pub &'static ChannelFactory);

inventory::collect!(Registration);

/// What a factory gets to build one channel instance.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The instance's table, narrowed to it.
    pub config: ChannelConfig<'a>,
    /// The whole configuration, for shared facts (`server.public_url`).
    pub settings: &'a Settings,
}

/// One `[channels.<name>]` table, as its factory sees it.
#[derive(Debug, Clone, Copy)]
pub struct ChannelConfig<'a> {
    name: &'a str,
    kind: &'a str,
    settings: &'a Settings,
}

impl<'a> ChannelConfig<'a> {
    /// The instance's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Deserialises the table (without `kind`) into the factory's own type. Give the type
    /// `#[serde(deny_unknown_fields)]`: a typo is then an error naming the key and its file.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let key = format!("channels.{}", self.name);
        let figment: &Figment = self.settings.figment();
        let mut value: Value = figment.find_value(&key).map_err(ConfigError::from)?;
        if let Value::Dict(_, dict) = &mut value {
            dict.remove("kind");
        }
        value.deserialize::<T>().map_err(|error| {
            use figment::error::Kind;
            let field = match &error.kind {
                Kind::UnknownField(field, _) => Some(field.clone()),
                Kind::MissingField(field) => Some(field.to_string()),
                _ => error.path.first().cloned(),
            };
            let at = field
                .as_deref()
                .map(|f| format!("{key}.{f}"))
                .unwrap_or_else(|| key.clone());
            let source = self.settings.source_of(&format!("{key}.kind"));
            let problem = match &error.kind {
                Kind::UnknownField(field, expected) => {
                    format!(
                        "unknown key `{field}`; expected one of: {}",
                        expected.join(", ")
                    )
                }
                Kind::MissingField(field) => format!("missing key `{field}`"),
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected)
                    if error
                        .path
                        .last()
                        .is_some_and(|k| crate::config::is_secret_key(k)) =>
                {
                    let _ = actual;
                    format!("expected {expected} (the value is not shown: it is a secret)")
                }
                other => other.to_string(),
            };
            ConfigError::message(format!(
                "{at} (channel kind \"{}\", in {source}): {problem}",
                self.kind
            ))
        })
    }

    /// An error about `field` of this table, naming where it was set.
    pub fn error(&self, field: &str, message: impl fmt::Display) -> ConfigError {
        let key = format!("channels.{}.{field}", self.name);
        ConfigError::message(format!(
            "{key} (in {}): {message}",
            self.settings.source_of(&key)
        ))
    }

    /// Resolves the path `raw` set at `field` of this table: relative to the configuration
    /// file's directory when it was written there (see [`Settings::resolve_path`]).
    pub fn path(&self, field: &str, raw: &str) -> PathBuf {
        self.settings
            .resolve_path(&format!("channels.{}.{field}", self.name), raw)
    }
}

/// The known channel kinds.
pub struct Registry {
    factories: BTreeMap<&'static str, &'static ChannelFactory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

/// The first-party crates, for the "link it" hint.
const KNOWN_CRATES: [(&str, &str); 4] = [
    ("email", "postbud-email"),
    ("sms", "postbud-sms"),
    ("sftp", "postbud-sftp"),
    ("webhook", "postbud-webhook"),
];

/// Two crates claim the same kind.
#[derive(Debug, Clone, thiserror::Error)]
#[error("channel kind `{kind}` is registered twice: by `{first}` and by `{second}`")]
pub struct DuplicateKind {
    /// The kind.
    pub kind: &'static str,
    /// Crate registered first.
    pub first: &'static str,
    /// Crate registered second.
    pub second: &'static str,
}

impl Registry {
    /// The built-in `folder` kind and every kind submitted through `inventory`.
    pub fn discover() -> Result<Self, DuplicateKind> {
        let mut registry = Self::empty();
        registry.add(&crate::folder::FACTORY)?;
        for registration in inventory::iter::<Registration> {
            registry.add(registration.0)?;
        }
        Ok(registry)
    }

    /// No kinds at all.
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
        }
    }

    /// Adds a kind. Adding the same factory twice (inventory and an explicit `register()`) is
    /// fine; two different factories for one kind are an error.
    pub fn add(&mut self, factory: &'static ChannelFactory) -> Result<(), DuplicateKind> {
        match self.factories.get(factory.kind) {
            Some(existing)
                if std::ptr::eq(*existing, factory)
                    || existing.crate_name == factory.crate_name =>
            {
                Ok(())
            }
            Some(existing) => Err(DuplicateKind {
                kind: factory.kind,
                first: existing.crate_name,
                second: factory.crate_name,
            }),
            None => {
                self.factories.insert(factory.kind, factory);
                Ok(())
            }
        }
    }

    /// The registered kinds, sorted.
    pub fn factories(&self) -> impl Iterator<Item = &'static ChannelFactory> + '_ {
        self.factories.values().copied()
    }

    /// Builds every configured channel instance.
    pub fn build_all(
        &self,
        settings: &Settings,
    ) -> Result<BTreeMap<String, Arc<dyn Channel>>, ConfigError> {
        let mut channels = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, table) in &settings.channels {
            let Some(factory) = self.factories.get(table.kind.as_str()) else {
                problems.push(self.unknown_kind(name, &table.kind, settings));
                continue;
            };
            let config = ChannelConfig {
                name,
                kind: factory.kind,
                settings,
            };
            match (factory.build)(BuildContext { config, settings }) {
                Ok(channel) => {
                    channels.insert(name.clone(), Arc::from(channel));
                }
                Err(e) => problems.extend(e.messages().iter().cloned()),
            }
        }
        if problems.is_empty() {
            Ok(channels)
        } else {
            Err(ConfigError::message(problems.join("\n  - ")))
        }
    }

    fn unknown_kind(&self, name: &str, kind: &str, settings: &Settings) -> String {
        let known: Vec<&str> = self.factories.keys().copied().collect();
        let source = settings.source_of(&format!("channels.{name}.kind"));
        let hint = match KNOWN_CRATES.iter().find(|(k, _)| *k == kind) {
            Some((_, krate)) => {
                let module = krate.replace('-', "_");
                format!(
                    "kind \"{kind}\" comes from the crate `{krate}`: add it to your Cargo.toml and link it with `{module}::register(&mut registry)?;`"
                )
            }
            None => match known.iter().find(|k| is_near(k, kind)) {
                Some(close) => format!("did you mean \"{close}\"?"),
                None => format!(
                    "if \"{kind}\" comes from a channel crate, link it: `my_channel_crate::register(&mut registry);`"
                ),
            },
        };
        format!(
            "channels.{name}.kind (in {source}): unknown channel kind \"{kind}\"; expected one of: {}. {hint}",
            known
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Within two edits (typos such as `emial`).
fn is_near(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()] <= 2
}
