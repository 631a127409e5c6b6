//! README.md's "Writing a channel crate" is a whole crate, made from its text alone: its
//! `Cargo.toml` and `src/lib.rs` blocks, written to a directory of their own with the SDK
//! requirement pointed at this checkout, build, pass their test, and name no dependency but
//! `postbud-channel`; and the crate's dependency tree holds one TLS stack (rustls), no
//! `native-tls` or `openssl`.
//!
//! The crate is built by `cargo --offline` with the workspace's `Cargo.lock` (the versions this
//! workspace is tested with, from the local registry cache) into a target directory under the
//! workspace's tmp directory that the README's library example shares, kept between runs: the
//! first run compiles the SDK's tree, later ones only what changed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const SECTION: &str = "## Writing a channel crate";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository")
}

/// The text under `heading`, up to the next heading of its level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {heading:?}"))
        + 1;
    let body = &text[start + heading.len()..];
    let end = body.find("\n## ").map_or(body.len(), |at| at + 1);
    &body[..end]
}

/// The contents of the ```` ```{language} ```` blocks of `text`, in order.
fn blocks<'a>(text: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(&fence) {
        let body = &rest[open + fence.len()..];
        let close = body.find("```\n").expect("a closed block");
        found.push(&body[..close]);
        rest = &body[close..];
    }
    found
}

/// The one block of `language` in the section that contains `needle`.
fn block<'a>(section: &'a str, language: &str, needle: &str) -> &'a str {
    let mut matching = blocks(section, language)
        .into_iter()
        .filter(|b| b.contains(needle));
    let block = matching
        .next()
        .unwrap_or_else(|| panic!("{SECTION} has no ```{language} block with {needle:?}"));
    assert!(
        matching.next().is_none(),
        "{SECTION} has two ```{language} blocks with {needle:?}"
    );
    block
}

/// `manifest` with each `postbud-channel` requirement pointed at `sdk` (a version becomes the
/// path; features stay), after checking that every dependency table names `postbud-channel`
/// and nothing else.
fn pointed_at(manifest: &str, sdk: &Path) -> String {
    let path = format!("path = {:?}", sdk.display().to_string());
    let mut table = String::new();
    let mut requirements = Vec::new();
    let mut lines = Vec::new();
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed.trim_matches(['[', ']']).to_owned();
        } else if table.ends_with("dependencies")
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
        {
            let (name, value) = trimmed
                .split_once('=')
                .map(|(n, v)| (n.trim(), v.trim()))
                .unwrap_or_else(|| panic!("[{table}]: {line:?} is not `name = requirement`"));
            assert_eq!(
                name, "postbud-channel",
                "[{table}] of the README's channel crate names {name}: a channel crate needs the SDK alone"
            );
            requirements.push(table.clone());
            let value = if value.starts_with('"') {
                format!("{{ {path} }}")
            } else {
                let start = value
                    .find("version = \"")
                    .unwrap_or_else(|| panic!("[{table}] postbud-channel has no version: {value}"));
                let end = start
                    + "version = \"".len()
                    + value[start + "version = \"".len()..]
                        .find('"')
                        .expect("a closed version");
                format!("{}{path}{}", &value[..start], &value[end + 1..])
            };
            lines.push(format!("postbud-channel = {value}"));
            continue;
        }
        lines.push(line.to_owned());
    }
    assert_eq!(
        requirements,
        ["dependencies", "dev-dependencies"],
        "the README's channel crate requires postbud-channel once as a dependency and once, with `testing`, for its tests"
    );
    lines.join("\n") + "\n"
}

/// The README's crate, written under this test's tmp directory.
fn write_crate() -> PathBuf {
    let repository = repository();
    let readme = std::fs::read_to_string(repository.join("README.md")).expect("README.md");
    let section = section(&readme, SECTION);
    let manifest = block(section, "toml", "[package]");
    let lib = block(section, "rust", "register_channel!");
    assert!(
        manifest.contains("features = [\"testing\"]"),
        "the dev-dependency takes the SDK's test kit: {manifest}"
    );

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-channel-crate");
    let root = dir.join("crate");
    std::fs::create_dir_all(root.join("src")).expect("the crate's directory");
    // The directory lies inside this workspace's target directory, so the crate says it is a
    // workspace of its own; nothing else is added to the README's text.
    let manifest = pointed_at(manifest, &repository.join("channel")) + "\n[workspace]\n";
    write_if_changed(&root.join("Cargo.toml"), &manifest);
    write_if_changed(&root.join("src/lib.rs"), lib);
    std::fs::copy(repository.join("Cargo.lock"), root.join("Cargo.lock")).expect("Cargo.lock");
    root
}

/// Writes `contents` to `path` unless it already holds them: an unchanged file keeps its time,
/// so cargo does not rebuild the crate.
fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// `cargo <args> --offline` in `root`, into the target directory the README's crates share (the
/// library example's test builds there too, so their common dependencies compile once).
fn cargo(root: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(root)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("outside-workspace/target"),
        )
        .output()
        .expect("cargo runs")
}

fn succeeded(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} of the README's channel crate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_readmes_channel_crate_builds_and_passes_its_test_with_the_sdk_alone() {
    let root = write_crate();

    succeeded(&cargo(&root, &["build"]), "`cargo build`");

    let tests = succeeded(&cargo(&root, &["test"]), "`cargo test`");
    let ran: usize = tests
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        ran >= 1,
        "the README's channel crate has a test that runs:\n{tests}"
    );

    let tree_args = [
        "tree",
        "--target",
        "all",
        "--edges",
        "normal,build,dev",
        "--prefix",
        "none",
    ];
    let mut tree = cargo(&root, &tree_args);
    if !tree.status.success() && String::from_utf8_lossy(&tree.stderr).contains("--offline") {
        // Every platform's packages, where the build fetched only this one's: a machine whose
        // cache has not seen them (a fresh one) fetches them from the registry first.
        let cargo_bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let fetch = Command::new(cargo_bin)
            .arg("fetch")
            .current_dir(&root)
            .output()
            .expect("cargo runs");
        succeeded(&fetch, "`cargo fetch`");
        tree = cargo(&root, &tree_args);
    }
    let tree = succeeded(&tree, "`cargo tree`");
    let packages: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(packages.contains(&"rustls"), "rustls is its TLS:\n{tree}");
    for second_stack in ["native-tls", "openssl", "openssl-sys"] {
        assert!(
            !packages.contains(&second_stack),
            "the README's channel crate pulls {second_stack}, a second TLS stack:\n{tree}"
        );
    }
}
