//! Configuration errors name the key and where its value came from; secrets stay hidden.

use postbud::{Registry, Settings};

fn write(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("postbud.toml");
    std::fs::write(&path, toml).expect("write");
    (dir, path)
}

const DINTERO: &str = r#"
[dintero]
account_id = "T12345678"
client_id = "client"
client_secret = "super-secret-value"
callback_secret = "callback-secret-value"
"#;

fn build_error(toml: &str) -> String {
    let (_dir, path) = write(toml);
    let settings = Settings::load(Some(&path)).expect("loads");
    Registry::discover()
        .expect("registry")
        .build_all(&settings)
        .expect_err("must fail")
        .to_string()
}

#[test]
fn an_unknown_key_in_a_channel_table_names_the_table_the_key_and_the_file() {
    let e =
        build_error("[channels.archive]\nkind = \"folder\"\npath = \"./x\"\ncolour = \"red\"\n");
    assert!(
        e.contains("channels.archive.colour")
            && e.contains("unknown key `colour`; expected one of: path, create"),
        "{e}"
    );
    assert!(e.contains("postbud.toml"), "names the file: {e}");
}

#[test]
fn an_unknown_kind_lists_the_kinds_and_says_how_to_link_the_crate() {
    let e = build_error("[channels.mail]\nkind = \"email\"\n");
    assert!(
        e.contains("unknown channel kind \"email\"") && e.contains("\"folder\""),
        "{e}"
    );
    assert!(
        e.contains("comes from the crate `postbud-email`")
            && e.contains("let mut registry = postbud::Registry::discover()?; postbud_email::register(&mut registry)?;")
            && e.contains("postbud::App::builder(&settings).registry(registry).open()")
            && e.contains("postbud_cli::run(registry)"),
        "says what to write and where to hand the registry: {e}"
    );
    let e = build_error("[channels.a]\nkind = \"foldr\"\npath = \"x\"\n");
    assert!(e.contains("did you mean \"folder\"?"), "{e}");
}

#[test]
fn an_unknown_kind_of_no_known_crate_says_how_to_register_a_channel_crate() {
    let e = build_error("[channels.finance]\nkind = \"teams\"\n");
    assert!(
        e.contains("channels.finance.kind (in ") && e.contains("unknown channel kind \"teams\""),
        "{e}"
    );
    assert!(
        e.contains("if \"teams\" comes from a channel crate, add the crate to your Cargo.toml")
            && e.contains("my_channel_crate::register(&mut registry)?;")
            && e.contains("postbud::App::builder(&settings).registry(registry).open()"),
        "says what to write and where to hand the registry: {e}"
    );
}

/// A kind only `register` adds (declared without `register_channel!`, so never discovered),
/// as a crate the linker dropped is.
static REGISTERED_ONLY: postbud::ChannelFactory = postbud::ChannelFactory::new(
    "registered-only",
    "a kind that only an explicit register adds",
    "postbud-config-tests",
    "",
    build_nothing,
);

fn build_nothing(
    _: postbud::BuildContext<'_>,
) -> Result<Box<dyn postbud::Channel>, postbud::ConfigError> {
    Ok(Box::new(Nothing))
}

#[derive(Debug)]
struct Nothing;

#[postbud::async_trait]
impl postbud::Channel for Nothing {
    async fn deliver(
        &self,
        _: &postbud::Invoice,
        _: &postbud::DeliveryContext,
    ) -> Result<postbud::Receipt, postbud::ChannelError> {
        Ok(postbud::Receipt::new("nothing"))
    }
}

#[derive(Debug, serde::Deserialize, postbud::keys::JsonSchema)]
#[schemars(crate = "postbud::keys::schemars")]
#[serde(deny_unknown_fields)]
struct NoKeys {}

postbud::register_channel! {
    static DISCOVERED = {
        kind: "discovered",
        description: "a kind the binary declares, found through inventory",
        crate_name: "postbud-config-tests",
        example: "",
        config: NoKeys,
        build: build_nothing,
    };
}

#[tokio::test]
async fn the_app_finds_linked_kinds_itself_and_adds_those_registered_by_hand() {
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "{DINTERO}\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [channels.found]\nkind = \"discovered\"\n\n\
         [channels.added]\nkind = \"registered-only\"\n\n\
         [channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n",
        dir = dir.path().display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let unknown = postbud::App::open(&settings)
        .await
        .expect_err("registered-only is not discovered")
        .to_string();
    assert!(
        unknown.contains("unknown channel kind \"registered-only\"")
            && !unknown.contains("unknown channel kind \"discovered\""),
        "only the kind nobody registered is missing: {unknown}"
    );
    let mut registry = Registry::empty();
    registry.add(&REGISTERED_ONLY).expect("added");
    let app = postbud::App::builder(&settings)
        .registry(registry)
        .open()
        .await
        .expect("every kind found");
    for name in ["found", "added", "archive"] {
        assert!(app.has_channel(name), "{name}");
    }
}

#[test]
fn a_value_of_the_wrong_type_names_the_key_and_the_file() {
    let (_dir, path) = write("[engine]\nworkers = \"many\"\n");
    let e = Settings::load(Some(&path))
        .expect_err("bad type")
        .to_string();
    assert!(
        e.contains("engine.workers") && e.contains("postbud.toml"),
        "{e}"
    );
}

#[test]
fn a_malformed_account_id_is_refused_with_its_source() {
    let (_dir, path) = write(&DINTERO.replace("T12345678", "X1"));
    let e = Settings::load(Some(&path)).expect_err("bad id").to_string();
    assert!(
        e.contains("dintero.account_id") && e.contains("`X1`") && e.contains("postbud.toml"),
        "{e}"
    );
}

#[test]
fn a_route_to_a_missing_channel_is_refused() {
    let e = Settings::from_toml(
        "[channels.archive]\nkind = \"folder\"\npath = \"x\"\n[[routes]]\ndeliver = [\"archiv\"]\n",
    )
    .expect_err("missing channel")
    .to_string();
    assert!(
        e.contains("routes[0]") && e.contains("`archiv`") && e.contains("[archive]"),
        "{e}"
    );
}

#[test]
fn a_missing_file_is_an_error_not_silent_defaults() {
    let e = Settings::load(Some("/nonexistent/postbud.toml".as_ref()))
        .expect_err("missing")
        .to_string();
    assert!(
        e.contains("/nonexistent/postbud.toml") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn secrets_never_reach_debug_output() {
    let settings = Settings::from_toml(DINTERO).expect("valid");
    let debug = format!("{settings:?}");
    assert!(
        !debug.contains("super-secret-value") && !debug.contains("callback-secret-value"),
        "{debug}"
    );
    assert!(debug.contains("T12345678"));
}

#[test]
fn two_crates_claiming_one_kind_are_detected() {
    fn build(
        _: postbud::BuildContext<'_>,
    ) -> Result<Box<dyn postbud::Channel>, postbud::ConfigError> {
        Err(postbud::ConfigError::message("unused"))
    }
    static A: postbud::ChannelFactory = postbud::ChannelFactory::new("x", "", "crate-a", "", build);
    static B: postbud::ChannelFactory = postbud::ChannelFactory::new("x", "", "crate-b", "", build);
    let mut registry = Registry::empty();
    registry.add(&A).expect("first");
    registry
        .add(&A)
        .expect("the same factory twice (inventory and register()) is fine");
    let e = registry.add(&B).expect_err("duplicate").to_string();
    assert_eq!(
        e,
        "channel kind `x` is registered twice: by `crate-a` and by `crate-b`"
    );
}

#[test]
fn the_documented_configuration_file_is_valid() {
    let settings = Settings::from_toml(include_str!("../../config/postbud.toml"))
        .expect("config/postbud.toml parses");
    assert_eq!(settings.routes.len(), 2);
    let channels = Registry::discover()
        .expect("registry")
        .build_all(&settings)
        .expect("its channels build");
    assert!(channels.contains_key("archive"));
}

#[test]
fn engine_settings_that_cannot_work_are_refused_naming_the_key() {
    for (setting, key) in [
        ("workers = 0", "engine.workers"),
        ("workers = 100000", "engine.workers"),
        ("max_attempts = 0", "engine.max_attempts"),
        ("lease = \"0s\"", "engine.lease"),
        ("poll_interval = \"0s\"", "engine.poll_interval"),
        ("backoff_base = \"0s\"", "engine.backoff_base"),
        (
            "backoff_base = \"10s\"\nbackoff_max = \"1s\"",
            "engine.backoff_max",
        ),
    ] {
        let toml = format!("[engine]\n{setting}\n");
        let err = Settings::from_toml(&toml).expect_err(setting).to_string();
        assert!(err.contains(key), "{setting}: {err}");
    }
}

#[test]
fn a_secret_of_the_wrong_shape_is_named_but_not_shown() {
    let toml = "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"c\"\nclient_secret = [\"hunter2-secret\"]\n";
    let err = Settings::from_toml(toml)
        .expect_err("wrong type")
        .to_string();
    assert!(err.contains("client_secret"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let toml = "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"c\"\nclient_secret = \"s\"\ncallback_secret = 987654321\n";
    let err = Settings::from_toml(toml)
        .expect_err("wrong type")
        .to_string();
    assert!(
        err.contains("callback_secret") && !err.contains("987654321"),
        "{err}"
    );
}

// `<key>_file`: every secret key may be read from a file, as container secrets are mounted.

/// Writes `content` to `name` under `dir`, making the directories.
fn secret(dir: &std::path::Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(&path, content).expect("write");
    path
}

#[test]
fn a_secret_file_relative_to_the_configuration_file_gives_the_secret() {
    use secrecy::ExposeSecret;
    let (dir, path) = write(
        "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"client\"\n\
         client_secret_file = \"secrets/dintero\"\n\
         callback_secret_file = \"secrets/callback\"\n\
         webhook_secret_file = \"secrets/webhook\"\n",
    );
    secret(dir.path(), "secrets/dintero", b"file-secret-LQ7Z\n");
    // One trailing newline is trimmed, \r\n too; no more than one, nothing inside.
    secret(dir.path(), "secrets/callback", b"first\nsecond\r\n");
    secret(dir.path(), "secrets/webhook", b"webhook-secret\n\n");
    // The tests run from the crate's directory: the paths are the file's, not the process's.
    assert!(!std::path::Path::new("secrets/dintero").exists());
    let settings = Settings::load(Some(&path)).expect("loads");
    assert!(
        settings
            .source_of("dintero.client_secret")
            .contains("postbud.toml"),
        "reported where the _file key was set: {}",
        settings.source_of("dintero.client_secret")
    );
    assert!(!format!("{settings:?}").contains("LQ7Z"), "{settings:?}");
    let dintero = settings.dintero.expect("dintero");
    assert_eq!(dintero.client_secret.expose_secret(), "file-secret-LQ7Z");
    assert_eq!(
        dintero.callback_secret.expect("callback").expose_secret(),
        "first\nsecond"
    );
    assert_eq!(
        dintero.webhook_secret.expect("webhook").expose_secret(),
        "webhook-secret\n"
    );
}

/// A channel kind that keeps what its table held, to show what a factory receives.
mod probe {
    use std::{collections::BTreeMap, sync::Mutex};

    use postbud::{
        BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt,
    };
    use secrecy::{ExposeSecret, SecretString};
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        password: SecretString,
        #[serde(default)]
        ca_file: Option<String>,
        http: Http,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Http {
        auth_token: SecretString,
    }

    /// What a table held: (password, ca_file, http.auth_token).
    pub type Seen = (String, Option<String>, String);

    /// Per channel name.
    pub static SEEN: Mutex<BTreeMap<String, Seen>> = Mutex::new(BTreeMap::new());

    #[derive(Debug)]
    struct Probe;

    #[postbud::async_trait]
    impl Channel for Probe {
        async fn deliver(&self, _: &Invoice, _: &DeliveryContext) -> Result<Receipt, ChannelError> {
            Err(ChannelError::permanent("a probe"))
        }
    }

    fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
        let table: Table = ctx.config.extract()?;
        SEEN.lock().expect("lock").insert(
            ctx.config.name().to_owned(),
            (
                table.password.expose_secret().to_owned(),
                table.ca_file,
                table.http.auth_token.expose_secret().to_owned(),
            ),
        );
        Ok(Box::new(Probe))
    }

    pub static FACTORY: postbud::ChannelFactory =
        postbud::ChannelFactory::new("probe", "", "config-tests", "", build);

    pub fn registry() -> postbud::Registry {
        let mut registry = postbud::Registry::empty();
        registry.add(&FACTORY).expect("one probe");
        registry
    }
}

#[test]
fn secret_files_reach_channel_tables_nested_tables_and_every_section() {
    use secrecy::ExposeSecret;
    let (dir, path) = write("");
    let token = secret(dir.path(), "elsewhere/token", b"token-from-file-9K\r\n");
    std::fs::write(
        &path,
        format!(
            "[server]\nlink_secret_file = \"link\"\n\n\
             [channels.customer-email]\nkind = \"probe\"\npassword_file = \"smtp-password\"\n\
             ca_file = \"ca.pem\"\n\
             [channels.customer-email.http]\nauth_token_file = \"{}\"\n",
            token.display()
        ),
    )
    .expect("write");
    secret(dir.path(), "link", b"link-secret\n");
    secret(dir.path(), "smtp-password", b"smtp-password-from-file\n");
    let settings = Settings::load(Some(&path)).expect("loads");
    assert_eq!(
        settings
            .server
            .link_secret
            .as_ref()
            .expect("link")
            .expose_secret(),
        "link-secret"
    );
    for key in [
        "server.link_secret",
        "channels.customer-email.kind",
        "channels.customer-email.http.auth_token",
    ] {
        assert!(
            settings.source_of(key).contains("postbud.toml"),
            "{key}: {}",
            settings.source_of(key)
        );
    }
    probe::registry()
        .build_all(&settings)
        .expect("the typed table (deny_unknown_fields) never sees a _file key");
    let seen = probe::SEEN.lock().expect("lock")["customer-email"].clone();
    assert_eq!(
        seen,
        (
            "smtp-password-from-file".to_owned(),
            // `ca` is not a secret: `ca_file` is the channel's own key, left as it is.
            Some("ca.pem".to_owned()),
            "token-from-file-9K".to_owned()
        )
    );
}

#[test]
fn a_secret_set_both_inline_and_as_a_file_is_refused_naming_both() {
    let (dir, path) = write(
        "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"client\"\n\
         client_secret = \"inline-secret-W4RP\"\nclient_secret_file = \"secret\"\n",
    );
    secret(dir.path(), "secret", b"file-secret-V0LT\n");
    let e = Settings::load(Some(&path)).expect_err("both").to_string();
    assert!(
        e.contains("dintero.client_secret ")
            && e.contains("dintero.client_secret_file")
            && e.contains("postbud.toml")
            && e.contains("set one of them"),
        "{e}"
    );
    assert!(!e.contains("W4RP") && !e.contains("V0LT"), "{e}");
}

#[test]
fn an_unusable_secret_file_is_named_with_its_key_source_and_path_never_its_content() {
    let (dir, path) = write("");
    secret(dir.path(), "empty", b"\n");
    secret(dir.path(), "binary", b"\xff\xfeZ3BRA-secret\n");
    secret(dir.path(), "secrets-dir/placeholder", b"x");
    for (file, problem) in [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("binary", "is not UTF-8"),
        ("secrets-dir", "is not a regular file (a directory)"),
    ] {
        std::fs::write(
            &path,
            format!("[channels.customer-email]\nkind = \"probe\"\npassword_file = \"{file}\"\n"),
        )
        .expect("write");
        let e = Settings::load(Some(&path)).expect_err(file).to_string();
        let resolved = dir.path().join(file);
        assert!(
            e.contains("channels.customer-email.password_file")
                && e.contains("postbud.toml")
                && e.contains(&format!("`{}`", resolved.display()))
                && e.contains(problem),
            "{file}: {e}"
        );
        assert!(!e.contains("Z3BRA"), "{e}");
    }
}

#[test]
fn only_the_stem_decides_whether_a_file_key_is_a_secret() {
    // `ca_file` is not a secret's file (the stem `ca` is not a secret name): the factory gets
    // it untouched; an unknown `colour_file` stays unknown.
    let e = build_error(
        "[channels.archive]\nkind = \"folder\"\npath = \"./x\"\ncolour_file = \"red\"\n",
    );
    assert!(e.contains("unknown key `colour_file`"), "{e}");
    // A secret's file becomes its key, which the table must know; still reported in its file.
    let elsewhere = tempfile::tempdir().expect("dir");
    let file = secret(elsewhere.path(), "pw", b"folder-password\n");
    let e = build_error(&format!(
        "[channels.archive]\nkind = \"folder\"\npath = \"./x\"\npassword_file = \"{}\"\n",
        file.display()
    ));
    assert!(
        e.contains("channels.archive.password")
            && e.contains("unknown key `password`")
            && e.contains("postbud.toml"),
        "{e}"
    );
    assert!(!e.contains("folder-password"), "{e}");
}

#[test]
fn retention_shorter_than_a_link_or_a_day_is_refused_naming_the_key() {
    let (_dir, path) = write(&format!(
        "{DINTERO}\n[server]\npublic_url = \"https://merchant.example\"\nlink_ttl = \"60d\"\n\n[store]\nretain = \"30d\"\n"
    ));
    let e = Settings::load(Some(&path))
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("store.retain") && e.contains("server.link_ttl") && e.contains("postbud.toml"),
        "{e}"
    );
    let (_dir, path) = write(&format!("{DINTERO}\n[store]\nretain = \"2h\"\n"));
    let e = Settings::load(Some(&path))
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("store.retain") && e.contains("less than a day"),
        "{e}"
    );
    let (_dir, path) = write(&format!("{DINTERO}\n[store]\nretain = \"90d\"\n"));
    let settings = Settings::load(Some(&path)).expect("a live retention");
    assert_eq!(settings.store.retain.as_secs(), 90 * 86_400);
}

/// A merchant's own provider (its secret store) merged over the usual sources: its values win,
/// relative paths still resolve against the file, and an error names that provider.
#[test]
fn settings_from_any_provider_merged_over_the_file() {
    use figment::providers::Serialized;

    let (dir, path) = write(&format!(
        "{DINTERO}\n[store]\nurl = \"sqlite://state/postbud.db\"\n[channels.archive]\nkind = \"folder\"\npath = \"out\"\n[[routes]]\ndeliver = [\"archive\"]\n"
    ));
    let vault = Serialized::defaults(serde_json::json!({
        "dintero": { "client_secret": "from-the-vault" }
    }));
    let figment = Settings::sources(Some(&path))
        .expect("sources")
        .merge(vault);
    let settings = Settings::from_provider(figment).expect("loads");
    let dintero = settings.dintero.as_ref().expect("[dintero]");
    use secrecy::ExposeSecret as _;
    assert_eq!(dintero.client_secret.expose_secret(), "from-the-vault");
    assert_eq!(dintero.client_id, "client", "the file's other keys stay");
    assert_eq!(settings.file(), Some(path.as_path()));
    assert_eq!(
        settings.store_url(),
        format!("sqlite://{}", dir.path().join("state/postbud.db").display()),
        "a path from the file resolves against the file"
    );
    assert!(!format!("{settings:?}").contains("from-the-vault"));

    let bad = Serialized::defaults(serde_json::json!({ "engine": { "workers": 0 } }));
    let error =
        Settings::from_provider(Settings::sources(Some(&path)).expect("sources").merge(bad))
            .expect_err("no workers")
            .to_string();
    assert!(error.contains("engine.workers"), "{error}");
    assert!(
        !error.contains("defaults)"),
        "names the provider, not defaults: {error}"
    );
}

/// `Settings::load` of `path` on a thread of its own: a load that blocks fails the test
/// instead of hanging it.
fn load_within(path: &std::path::Path, seconds: u64) -> Result<Settings, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Settings::load(Some(&path)).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(seconds))
        .expect("loading the configuration must not block")
}

#[test]
fn a_secret_file_must_be_a_regular_file_of_bounded_size() {
    let (dir, path) = write("");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Just over the limit, and a character device that never ends.
    secret(dir.path(), "huge", &vec![b'Q'; 64 * 1024 + 1]);
    secret(dir.path(), "at-limit", &vec![b'Q'; 64 * 1024]);
    for (file, problem) in [
        ("fifo", "is not a regular file (a FIFO)"),
        ("huge", "is larger than 64 KiB"),
        ("/dev/zero", "is not a regular file (a character device)"),
    ] {
        std::fs::write(
            &path,
            format!("[channels.customer-email]\nkind = \"probe\"\npassword_file = \"{file}\"\n"),
        )
        .expect("write");
        let e = load_within(&path, 10).expect_err(file);
        let resolved = dir.path().join(file);
        assert!(
            e.contains("channels.customer-email.password_file")
                && e.contains("postbud.toml")
                && e.contains(&format!("`{}`", resolved.display()))
                && e.contains(problem),
            "{file}: {e}"
        );
        assert!(!e.contains("QQQQ"), "{e}");
    }
    // The limit itself is accepted.
    std::fs::write(
        &path,
        "[channels.customer-email]\nkind = \"probe\"\npassword_file = \"at-limit\"\n",
    )
    .expect("write");
    load_within(&path, 10).expect("64 KiB is a secret file still");
}

/// Everything logged at `warn` and above while `f` runs, as text.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().expect("sink")).into_owned();
    (result, text)
}

#[cfg(unix)]
#[test]
fn a_secret_file_others_may_read_is_accepted_with_a_warning_naming_key_path_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = write(
        "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"client\"\n\
         client_secret_file = \"secrets/dintero\"\n",
    );
    let file = secret(dir.path(), "secrets/dintero", b"file-secret-K9PX\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (settings, log) = logged(|| Settings::load(Some(&path)));
    let settings = settings.expect("accepted");
    let shown = format!("{file}", file = file.display());
    assert!(
        log.contains("dintero.client_secret_file") && log.contains(&shown) && log.contains("0644"),
        "{log}"
    );
    let warnings = settings.warnings().join("\n");
    assert!(
        warnings.contains("dintero.client_secret_file")
            && warnings.contains("postbud.toml")
            && warnings.contains(&format!("`{shown}`"))
            && warnings.contains("mode 0644"),
        "{warnings}"
    );
    assert!(
        !log.contains("K9PX") && !warnings.contains("K9PX"),
        "{log}{warnings}"
    );
    // The owner's alone: nothing to say.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (settings, log) = logged(|| Settings::load(Some(&path)));
    assert!(settings.expect("accepted").warnings().is_empty());
    assert!(!log.contains("client_secret_file"), "{log}");
}

#[test]
fn a_toml_syntax_error_names_file_line_and_column_and_never_shows_a_secret() {
    // (a key whose value is a secret, the TOML written; the line and column of the error).
    let cases = [
        (
            "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"client\"\nclient_secret = \"abc-H1DD3N-7QX\n",
            "line 4",
        ),
        (
            "[channels.hook]\nkind = \"webhook\"\nsecret = [\n  \"whsec_H1DD3N-7QX,\n]\n",
            "line 4",
        ),
        ("[server]\nlink_secret = H1DD3N-7QX\n", "line 2"),
        (
            "[channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://u:H1DD3N-7QX@host:25\" x\n",
            "line 3",
        ),
    ];
    for (toml, line) in cases {
        let (_dir, path) = write(toml);
        let e = Settings::load(Some(&path)).expect_err("syntax").to_string();
        assert!(
            e.contains("postbud.toml") && e.contains(line) && e.contains("column"),
            "{e}"
        );
        assert!(!e.contains("H1DD3N"), "{e}");
    }
    // A line with no secret on it is still quoted: it shows what is wrong.
    let (_dir, path) = write("[store]\nurl = \"sqlite://postbud.db\n");
    let e = Settings::load(Some(&path)).expect_err("syntax").to_string();
    assert!(e.contains("url = \"sqlite://postbud.db"), "{e}");
    // The same from a string.
    let e = Settings::from_toml("[dintero]\nclient_secret = \"abc-H1DD3N-7QX\n")
        .expect_err("syntax")
        .to_string();
    assert!(e.contains("line 2") && !e.contains("H1DD3N"), "{e}");
}

#[tokio::test]
async fn a_route_that_asks_peppol_needs_a_channel_that_looks_it_up() {
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "{DINTERO}\n[store]\nurl = \"sqlite://{}/p.db\"\n\n[channels.archive]\nkind = \"folder\"\npath = \"{}/out\"\n\n[[routes]]\nwhen = {{ peppol = true }}\ndeliver = [\"archive\"]\n\n[[routes]]\ndeliver = [\"archive\"]\n",
        dir.path().display(),
        dir.path().display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let e = postbud::App::builder(&settings)
        .open()
        .await
        .expect_err("no channel answers for peppol")
        .to_string();
    assert!(
        e.contains("routes[0].when.peppol")
            && e.contains("no configured channel looks up peppol participants")
            && e.contains("kind \"peppol\""),
        "{e}"
    );
}

#[test]
fn console_settings_that_cannot_work_are_refused_naming_the_key_and_never_showing_a_hash() {
    let good = postbud::password::hash("pw").expect("hash");
    let user = |name: &str, hash: &str, role: &str| {
        format!(
            "[[console.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nrole = \"{role}\"\n"
        )
    };
    let defaults = Settings::from_toml("").expect("defaults");
    assert!(!defaults.console.enabled);
    assert_eq!(
        defaults.console.session_ttl,
        std::time::Duration::from_secs(8 * 3600)
    );
    let ok = Settings::from_toml(&format!(
        "[console]\nenabled = true\n{}{}",
        user("kari", &good, "operator"),
        user("vera", &good, "viewer")
    ))
    .expect("valid");
    assert_eq!(ok.console.users.len(), 2);
    assert!(!format!("{ok:?}").contains(&good), "no hash in Debug");
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    let argon2i = good.replace("argon2id", "argon2i");
    for (toml, key, hidden) in [
        (
            "[console]\nenabled = true\n".to_owned(),
            "console.users",
            None,
        ),
        (
            format!("[console]\n{}", user("kari", "hunter2-plain", "operator")),
            "console.users[0].password_hash",
            Some("hunter2-plain"),
        ),
        (
            format!(
                "[console]\n{}{}",
                user("kari", &good, "operator"),
                user("vera", bcrypt, "viewer")
            ),
            "console.users[1].password_hash",
            Some(bcrypt),
        ),
        (
            format!("[console]\n{}", user("kari", &argon2i, "operator")),
            "console.users[0].password_hash",
            Some(argon2i.as_str()),
        ),
        (
            format!(
                "[console]\n{}{}",
                user("kari", &good, "operator"),
                user("kari", &good, "viewer")
            ),
            "console.users[1].name",
            None,
        ),
        (
            format!("[console]\n{}", user(" kari", &good, "operator")),
            "console.users[0].name",
            None,
        ),
        (
            "[console]\nlogin_attempts_per_minute = 0\n".to_owned(),
            "console.login_attempts_per_minute",
            None,
        ),
        (
            "[console]\nsession_ttl = \"1s\"\n".to_owned(),
            "console.session_ttl",
            None,
        ),
        (
            format!("[console]\n{}", user("kari", &good, "admin")),
            "role",
            None,
        ),
        ("[console]\nenabeld = true\n".to_owned(), "enabeld", None),
    ] {
        let err = Settings::from_toml(&toml).expect_err(key).to_string();
        assert!(err.contains(key), "{key}: {err}");
        if let Some(hidden) = hidden {
            assert!(!err.contains(hidden), "{key}: {err}");
        }
    }
}
