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
        e.contains("postbud_email::register(&mut registry)?;"),
        "{e}"
    );
    let e = build_error("[channels.a]\nkind = \"foldr\"\npath = \"x\"\n");
    assert!(e.contains("did you mean \"folder\"?"), "{e}");
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
    static A: postbud::ChannelFactory = postbud::ChannelFactory {
        kind: "x",
        description: "",
        crate_name: "crate-a",
        example: "",
        build,
    };
    static B: postbud::ChannelFactory = postbud::ChannelFactory {
        kind: "x",
        description: "",
        crate_name: "crate-b",
        example: "",
        build,
    };
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
