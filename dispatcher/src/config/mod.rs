//! Configuration: embedded defaults, then the TOML file (`--config FILE` or `POSTBUD_CONFIG`),
//! then `POSTBUD_` environment variables with `__` for nesting
//! (`POSTBUD_DINTERO__CLIENT_SECRET`). Every secret key `K` may be given as `K_file` instead,
//! the path of a file holding it (see `secret_files`).
//!
//! Errors name the key and where its value came from.

mod dintero;
mod lint;
mod route;
mod secret_files;
mod sections;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;

pub use postbud_channel::{ConfigError, is_secret_key};

pub use self::{
    dintero::DinteroSettings,
    lint::DeadEnd,
    route::{PEPPOL, Route, RouteFacts, SendWindow, When},
    sections::{
        ConsoleRole, ConsoleSettings, ConsoleUser, EngineSettings, ServerSettings, StoreSettings,
    },
};

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "POSTBUD_CONFIG";

/// Top-level tables an environment variable may set; other `POSTBUD_*` variables
/// (`POSTBUD_CONFIG`, `POSTBUD_LOG`, ...) are not configuration keys.
const SECTIONS: [&str; 7] = [
    "dintero", "store", "server", "engine", "console", "channels", "routes",
];

/// The whole configuration, typed. Channel tables are kept raw here and typed by their factory.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[dintero]`; required by every command that talks to Dintero.
    #[serde(default)]
    pub dintero: Option<DinteroSettings>,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSettings,
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSettings,
    /// `[engine]`: workers, retries, leases.
    #[serde(default)]
    pub engine: EngineSettings,
    /// `[console]`: the operator console (off by default).
    #[serde(default)]
    pub console: ConsoleSettings,
    /// `[channels.<name>]`, each with a `kind`.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelTable>,
    /// `[[routes]]`, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(skip)]
    figment: Figment,
    #[serde(skip)]
    file: Option<PathBuf>,
    #[serde(skip)]
    warnings: Vec<String>,
}

/// What every channel table has; the rest belongs to the channel's factory.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelTable {
    /// Registered channel kind: `folder`, `email`, ...
    pub kind: String,
}

impl postbud_channel::Configuration for Settings {
    fn figment(&self) -> &Figment {
        &self.figment
    }

    fn channel_kinds(&self) -> Vec<(&str, &str)> {
        self.channels
            .iter()
            .map(|(name, table)| (name.as_str(), table.kind.as_str()))
            .collect()
    }

    fn public_url(&self) -> Option<&url::Url> {
        self.server.public_url.as_ref()
    }
}

impl std::fmt::Debug for Settings {
    // By hand: the raw figment holds every value, secrets included, in plain text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("dintero", &self.dintero)
            .field("store", &self.store)
            .field("server", &self.server)
            .field("engine", &self.engine)
            .field("console", &self.console)
            .field("channels", &self.channels)
            .field("routes", &self.routes)
            .field("file", &self.file)
            .finish()
    }
}

impl Settings {
    /// Loads from `file` (or `POSTBUD_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = config_file(file);
        Self::from_figment(Self::sources_of(file.as_deref())?, file)
    }

    /// The sources [`Settings::load`] reads (the file or `POSTBUD_CONFIG`, then `POSTBUD_*`
    /// variables), as a figment to merge more providers into before
    /// [`Settings::from_provider`]: a merchant's secret store, say.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), postbud::ConfigError> {
    /// let secret = "from the vault";
    /// let figment = postbud::Settings::sources(Some("postbud.toml".as_ref()))?
    ///     .merge(("dintero.client_secret", secret));
    /// let settings = postbud::Settings::from_provider(figment)?;
    /// # Ok(()) }
    /// ```
    pub fn sources(file: Option<&Path>) -> Result<Figment, ConfigError> {
        Self::sources_of(config_file(file).as_deref())
    }

    fn sources_of(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::message(format!(
                    "configuration file `{}` does not exist{}",
                    path.display(),
                    if std::env::var_os(CONFIG_ENV).is_some() {
                        " (named by POSTBUD_CONFIG)"
                    } else {
                        ""
                    }
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let dashed = dashed_channel_names(&figment);
        Ok(figment.merge(environment(dashed)))
    }

    /// Settings from any figment [`Provider`](figment::Provider) (a `Figment` is one): keys it
    /// does not set take their defaults, errors name the key and the provider it came from. Relative
    /// paths resolve against the directory of the file that set them, when a file did.
    pub fn from_provider(provider: impl figment::Provider) -> Result<Self, ConfigError> {
        let figment = Figment::from(provider);
        let file = first_file(&figment);
        Self::from_figment(figment, file)
    }

    /// Loads from a TOML string (and no environment): for tests and embedded defaults.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)), None)
    }

    fn from_figment(figment: Figment, file: Option<PathBuf>) -> Result<Self, ConfigError> {
        // `K_file` becomes `K` before anything typed sees the tree.
        let (figment, warnings) = secret_files::resolve(figment)?;
        let mut settings: Settings = figment.extract().map_err(ConfigError::from)?;
        settings.figment = figment;
        settings.file = file;
        settings.warnings = warnings;
        settings.validate()?;
        Ok(settings)
    }

    /// The file the settings came from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// What loading found worth a look but accepted, each naming the key, where it was set and
    /// the path (a secret file others may read); already logged at `warn`. `postbud check`
    /// prints them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// `[dintero]`, or an error saying where to set it.
    pub fn require_dintero(&self) -> Result<&DinteroSettings, ConfigError> {
        self.dintero.as_ref().ok_or_else(|| {
            ConfigError::message(format!(
                "missing [dintero] table{}: set account_id, client_id and client_secret (or POSTBUD_DINTERO__ACCOUNT_ID, ...)",
                self.file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default()
            ))
        })
    }

    /// Where `key` was set, e.g. "`postbud.toml` TOML file" or "`POSTBUD_` environment variable".
    pub fn source_of(&self, key: &str) -> String {
        postbud_channel::config::source_of(&self.figment, key)
    }

    /// `raw`, a path set at `key`, as the process must open it: a relative path written in a
    /// configuration file is relative to that file's directory; one from the environment, or
    /// absolute, is kept.
    pub fn resolve_path(&self, key: &str, raw: &str) -> PathBuf {
        postbud_channel::config::resolve_path(&self.figment, key, raw)
    }

    /// `store.url` with a relative SQLite file resolved as [`Settings::resolve_path`] does.
    pub fn store_url(&self) -> String {
        let url = &self.store.url;
        let Some(file) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            return url.clone();
        };
        let (path, query) = file
            .split_once('?')
            .map_or((file, None), |(p, q)| (p, Some(q)));
        if path.is_empty() || path == ":memory:" {
            return url.clone();
        }
        let resolved = self.resolve_path("store.url", path);
        match query {
            Some(q) => format!("sqlite://{}?{q}", resolved.display()),
            None => format!("sqlite://{}", resolved.display()),
        }
    }

    pub(crate) fn figment(&self) -> &Figment {
        &self.figment
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(dintero) = &self.dintero {
            dintero.validate().map_err(|m| {
                ConfigError::message(format!(
                    "{m} (from {})",
                    self.source_of("dintero.account_id")
                ))
            })?;
        }
        self.store.validate().map_err(|(key, m)| {
            ConfigError::message(format!("{key}: {m} (from {})", self.source_of(key)))
        })?;
        self.server.validate().map_err(|(key, m)| {
            ConfigError::message(format!("{key}: {m} (from {})", self.source_of(key)))
        })?;
        if self.server.public_url.is_some() && self.store.retain < self.server.link_ttl {
            return Err(ConfigError::message(format!(
                "store.retain ({}) is shorter than server.link_ttl ({}): links already sent to customers would stop working before they expire (from {})",
                humantime::format_duration(self.store.retain),
                humantime::format_duration(self.server.link_ttl),
                self.source_of("store.retain")
            )));
        }
        self.engine.validate().map_err(|(key, m)| {
            ConfigError::message(format!("{key}: {m} (from {})", self.source_of(key)))
        })?;
        self.console.validate().map_err(|(key, m)| {
            ConfigError::message(format!(
                "{key}: {m} (from {})",
                self.source_of(key.split('[').next().unwrap_or("console"))
            ))
        })?;
        for (index, route) in self.routes.iter().enumerate() {
            if route.deliver.is_empty() {
                return Err(ConfigError::message(format!(
                    "routes[{index}].deliver is empty (from {}): name at least one channel",
                    self.source_of("routes")
                )));
            }
            for name in route.deliver.iter().chain(&route.fallback) {
                if !self.channels.contains_key(name) {
                    let known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                    return Err(ConfigError::message(format!(
                        "routes[{index}] names channel `{name}`, which is not configured (from {}); configured channels: [{}]",
                        self.source_of("routes"),
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `file`, else the one `POSTBUD_CONFIG` names, made absolute so that every path resolved
/// against it (and `status`'s "store ...") is too.
fn config_file(file: Option<&Path>) -> Option<PathBuf> {
    file.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .map(|f| std::path::absolute(&f).unwrap_or(f))
}

/// The configuration file a figment read, if it read one: what `status` names.
fn first_file(figment: &Figment) -> Option<PathBuf> {
    figment
        .metadata()
        .filter_map(|md| md.source.as_ref()?.file_path())
        .map(Path::to_path_buf)
        .next()
}

/// Channel names with a dash, from the file: a shell cannot set a variable with a dash in its
/// name, so `POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD` sets `channels.customer-email.password`.
fn dashed_channel_names(figment: &Figment) -> Vec<String> {
    figment
        .find_value("channels")
        .ok()
        .and_then(|v| v.into_dict())
        .map(|channels| channels.into_keys().filter(|k| k.contains('-')).collect())
        .unwrap_or_default()
}

fn environment(dashed: Vec<String>) -> Env {
    Env::prefixed("POSTBUD_")
        .split("__")
        .filter(|key| {
            // Keys are still upper-case here; figment lower-cases them afterwards.
            let first = key.as_str().split(['.', '_']).next().unwrap_or_default();
            SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
        })
        .map(move |key| {
            let mut parts: Vec<String> = key.as_str().split('.').map(str::to_owned).collect();
            if parts.len() > 2 && parts[0].eq_ignore_ascii_case("channels") {
                let written = parts[1].to_ascii_lowercase();
                if let Some(name) = dashed.iter().find(|n| n.replace('-', "_") == written) {
                    parts[1] = name.clone();
                }
            }
            parts.join(".").into()
        })
}
