//! The channel plugin system: factories submitted with [`crate::register_channel!`] (through
//! `inventory`) or added explicitly with each channel crate's `register(&mut Registry)`.

use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc};

use figment::{Figment, value::Value};
use serde::de::DeserializeOwned;
use url::Url;

use crate::{Channel, ConfigError, config, keys::Key};

/// What channels are built from: the whole configuration (`postbud::Settings` is one).
pub trait Configuration {
    /// Every source merged, with the metadata that says where each key was set.
    fn figment(&self) -> &Figment;
    /// Each configured instance: its name (`[channels.<name>]`) and its `kind`.
    fn channel_kinds(&self) -> Vec<(&str, &str)>;
    /// `server.public_url`, where `postbud serve` answers for signed links and reports.
    fn public_url(&self) -> Option<&Url>;
}

/// A channel kind: how to build instances of it from their `[channels.<name>]` table.
#[derive(Debug)]
#[non_exhaustive]
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
    /// The keys its table accepts, read from the typed configuration
    /// ([`crate::keys::keys_of`]); [`crate::register_channel!`] fills it from `config:`.
    pub keys: fn() -> Vec<Key>,
}

impl ChannelFactory {
    /// A factory; [`crate::register_channel!`] declares and registers one.
    pub const fn new(
        kind: &'static str,
        description: &'static str,
        crate_name: &'static str,
        example: &'static str,
        build: fn(BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError>,
    ) -> Self {
        Self {
            kind,
            description,
            crate_name,
            example,
            build,
            keys: Vec::new,
        }
    }

    /// The same, with the keys of its configuration type (`keys_of::<Config>`).
    pub const fn with_keys(mut self, keys: fn() -> Vec<Key>) -> Self {
        self.keys = keys;
        self
    }
}

/// What [`crate::register_channel!`] submits to `inventory`: a reference to the named factory,
/// so the explicit `register()` path adds the very same factory and duplicates are recognised.
#[derive(Debug)]
pub struct Registration(pub &'static ChannelFactory);

inventory::collect!(Registration);

/// What a factory gets to build one channel instance.
#[derive(Debug)]
#[non_exhaustive]
pub struct BuildContext<'a> {
    /// The instance's table, narrowed to it.
    pub config: ChannelConfig<'a>,
    /// `server.public_url`, where `postbud serve` answers for signed links and delivery
    /// reports; `None` when the deployment serves none.
    pub public_url: Option<&'a Url>,
}

impl<'a> BuildContext<'a> {
    /// The context for instance `name` of `kind`, configured in `figment` (for tests of a
    /// factory; the registry makes these).
    pub fn new(figment: &'a Figment, name: &'a str, kind: &'a str) -> Self {
        Self {
            config: ChannelConfig {
                name,
                kind,
                figment,
            },
            public_url: None,
        }
    }

    /// The same, with `server.public_url` set.
    pub fn with_public_url(mut self, url: &'a Url) -> Self {
        self.public_url = Some(url);
        self
    }
}

/// One `[channels.<name>]` table, as its factory sees it.
#[derive(Debug, Clone, Copy)]
pub struct ChannelConfig<'a> {
    name: &'a str,
    kind: &'a str,
    figment: &'a Figment,
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
        let figment: &Figment = self.figment;
        let mut value: Value = figment.find_value(&key).map_err(ConfigError::from)?;
        if let Value::Dict(_, dict) = &mut value {
            dict.remove("kind");
        }
        value.deserialize::<T>().map_err(|error| {
            use figment::error::Kind;
            // The whole path: a key of a nested table (`bounces.return_path`) is named whole.
            let within = |field: &str| {
                let mut path = error.path.clone();
                if path.last().map(String::as_str) != Some(field) {
                    path.push(field.to_owned());
                }
                path.join(".")
            };
            let field = match &error.kind {
                Kind::UnknownField(field, _) => Some(within(field)),
                Kind::MissingField(field) => Some(within(field)),
                _ => (!error.path.is_empty()).then(|| error.path.join(".")),
            };
            let at = field
                .as_deref()
                .map(|f| format!("{key}.{f}"))
                .unwrap_or_else(|| key.clone());
            let source = config::source_of(self.figment, &format!("{key}.kind"));
            let problem = match &error.kind {
                Kind::UnknownField(field, expected) => {
                    format!(
                        "unknown key `{field}`; expected one of: {}",
                        expected.join(", ")
                    )
                }
                Kind::MissingField(field) => format!("missing key `{field}`"),
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected)
                    if error.path.last().is_some_and(|k| config::is_secret_key(k)) =>
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
            config::source_of(self.figment, &key)
        ))
    }

    /// Resolves the path `raw` set at `field` of this table: relative to the configuration
    /// file's directory when it was written there, as it was given otherwise.
    pub fn path(&self, field: &str, raw: &str) -> PathBuf {
        config::resolve_path(
            self.figment,
            &format!("channels.{}.{field}", self.name),
            raw,
        )
    }
}

/// The known channel kinds.
#[derive(Clone)]
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
    /// Every kind submitted through `inventory` (the engine adds its built-in `folder`).
    pub fn discover() -> Result<Self, DuplicateKind> {
        let mut registry = Self::empty();
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
        settings: &dyn Configuration,
    ) -> Result<BTreeMap<String, Arc<dyn Channel>>, ConfigError> {
        let mut channels = BTreeMap::new();
        let mut problems = Vec::new();
        let figment = settings.figment();
        for (name, kind) in settings.channel_kinds() {
            let Some(factory) = self.factories.get(kind) else {
                problems.push(self.unknown_kind(name, kind, figment));
                continue;
            };
            let config = ChannelConfig {
                name,
                kind: factory.kind,
                figment,
            };
            let public_url = settings.public_url();
            match (factory.build)(BuildContext { config, public_url }) {
                Ok(channel) => {
                    channels.insert(name.to_owned(), Arc::from(channel));
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

    fn unknown_kind(&self, name: &str, kind: &str, figment: &Figment) -> String {
        let known: Vec<&str> = self.factories.keys().copied().collect();
        let source = config::source_of(figment, &format!("channels.{name}.kind"));
        let hint = match KNOWN_CRATES.iter().find(|(k, _)| *k == kind) {
            Some((_, krate)) => format!(
                "kind \"{kind}\" comes from the crate `{krate}`: {}",
                how_to_link(&krate.replace('-', "_"))
            ),
            None => match known.iter().find(|k| is_near(k, kind)) {
                Some(close) => format!("did you mean \"{close}\"?"),
                None => format!(
                    "if \"{kind}\" comes from a channel crate, {}",
                    how_to_link("my_channel_crate")
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

/// What to write, and where, so a channel crate's kind is found: the crate in `Cargo.toml`,
/// and its `register` called where the app is built, since the linker may drop the
/// `register_channel!` entries of a crate the code never names.
fn how_to_link(module: &str) -> String {
    format!(
        "add the crate to your Cargo.toml and register it where the app is built: `let mut registry = postbud::Registry::discover()?; {module}::register(&mut registry)?;` then `postbud::App::builder(&settings).registry(registry).open()` (an operator binary: `postbud_cli::run(registry)`)"
    )
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
