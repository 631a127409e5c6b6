//! The references a merchant reads to go live, checked against the binary:
//!
//! - README.md's channel blocks: each ```toml block with a `[channels.<name>]` table builds as
//!   `postbud check` builds it (the binary's registry, no network), every key a block names
//!   (commented-out alternatives too) is a key of its kind, and the reference block of every
//!   kind the binary links names every key that kind accepts. The keys are not listed here: they
//!   are read from the binary (`postbud channels --keys --json`), which describes each kind by
//!   its typed configuration, so a key added to a channel crate fails this test until the
//!   README documents it; and a key the type does not describe fails the block's build.
//! - docs/keys.md is exactly what `postbud channels --keys --markdown` prints.
//! - sandbox/README.md: every request it shows (its `curl` lines) is answered 2xx by
//!   `postbud sandbox`, and every control route of the sandbox has an example.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{OnceLock, mpsc},
    time::{Duration, Instant},
};

mod common;

use common::{free_port, postbud, text};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repository().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

// ------------------------------------------------------------------------------------------
// A TOML line reader: enough of TOML to read one `key = value` line or one `[table]` header,
// commented out or not. (The build itself is checked by the binary's real TOML parser.)

/// A value, as far as the checks need it.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Table(Vec<(Vec<String>, Val)>),
    Array(Vec<Val>),
    Bare,
}

struct Reader {
    chars: Vec<char>,
    at: usize,
}

impl Reader {
    fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        if found {
            self.at += 1;
        }
        found
    }

    /// The end of the line, or a trailing comment.
    fn end(&mut self) -> bool {
        self.blank();
        matches!(self.peek(), None | Some('#'))
    }

    fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        if self.eat('\'') {
            loop {
                match self.peek()? {
                    '\'' => {
                        self.at += 1;
                        return Some(out);
                    }
                    c => {
                        out.push(c);
                        self.at += 1;
                    }
                }
            }
        }
        if !self.eat('"') {
            return None;
        }
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                '"' => return Some(out),
                '\\' => {
                    let escaped = self.peek()?;
                    self.at += 1;
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                other => out.push(other),
            }
        }
    }

    /// `a`, `"a b"`, `a.b.c`.
    fn key(&mut self) -> Option<Vec<String>> {
        let mut parts = Vec::new();
        loop {
            self.blank();
            let part = match self.peek()? {
                '"' | '\'' => self.string()?,
                _ => {
                    let start = self.at;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        self.at += 1;
                    }
                    if self.at == start {
                        return None;
                    }
                    self.chars[start..self.at].iter().collect()
                }
            };
            parts.push(part);
            self.blank();
            if !self.eat('.') {
                return Some(parts);
            }
        }
    }

    fn value(&mut self) -> Option<Val> {
        self.blank();
        match self.peek()? {
            '"' | '\'' => self.string().map(Val::Str),
            '[' => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.blank();
                    if self.eat(']') {
                        return Some(Val::Array(items));
                    }
                    items.push(self.value()?);
                    self.blank();
                    if !self.eat(',') {
                        self.blank();
                        return self.eat(']').then_some(Val::Array(items));
                    }
                }
            }
            '{' => {
                self.at += 1;
                let mut entries = Vec::new();
                self.blank();
                if self.eat('}') {
                    return Some(Val::Table(entries));
                }
                loop {
                    let key = self.key()?;
                    if !self.eat('=') {
                        return None;
                    }
                    entries.push((key, self.value()?));
                    self.blank();
                    if !self.eat(',') {
                        return self.eat('}').then_some(Val::Table(entries));
                    }
                }
            }
            _ => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || "+-._:".contains(c))
                {
                    self.at += 1;
                }
                (self.at > start).then_some(Val::Bare)
            }
        }
    }
}

/// `key = value`, with nothing after it but a comment.
fn key_line(text: &str) -> Option<(Vec<String>, Val)> {
    let mut r = Reader::new(text);
    let key = r.key()?;
    if !r.eat('=') {
        return None;
    }
    let value = r.value()?;
    r.end().then_some((key, value))
}

/// `[a.b]` (not `[[a]]`), with nothing after it but a comment.
fn header_line(text: &str) -> Option<Vec<String>> {
    let mut r = Reader::new(text);
    r.blank();
    if !r.eat('[') || r.peek() == Some('[') {
        return None;
    }
    let key = r.key()?;
    (r.eat(']') && r.end()).then_some(key)
}

/// Every key path a value names below `prefix` (inline tables), with `prefix` itself.
fn key_paths(prefix: &[String], value: &Val, into: &mut BTreeSet<Vec<String>>) {
    into.insert(prefix.to_vec());
    if let Val::Table(entries) = value {
        for (key, inner) in entries {
            let path: Vec<String> = prefix.iter().chain(key).cloned().collect();
            key_paths(&path, inner, into);
        }
    }
}

/// Every string a value holds, with the key path that holds it.
fn strings(prefix: &[String], value: &Val, into: &mut Strings) {
    match value {
        Val::Str(s) => into.push((prefix.to_vec(), s.clone())),
        Val::Table(entries) => {
            for (key, inner) in entries {
                let path: Vec<String> = prefix.iter().chain(key).cloned().collect();
                strings(&path, inner, into);
            }
        }
        Val::Array(items) => {
            for item in items {
                strings(prefix, item, into);
            }
        }
        Val::Bare => {}
    }
}

// ------------------------------------------------------------------------------------------
// README.md's blocks.

/// A ```toml block of README.md that has a `[channels.<name>]` table.
#[derive(Debug, Clone)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    /// The `###` heading above it.
    heading: String,
    /// Inside the `## Channels` section: the reference of its kind.
    reference: bool,
    text: String,
}

/// `reference`: every block of the file is a kind's reference (docs/channels.md), rather than
/// only those of a `## Channels` section.
fn channel_blocks(readme: &str, reference: bool) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut heading, mut in_channels) = (String::new(), reference);
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (index, line) in readme.lines().enumerate() {
        if let Some((start, body)) = &mut open {
            if line.trim_start().starts_with("```") {
                let text = body.join("\n");
                if text
                    .lines()
                    .any(|l| header_line(l).is_some_and(|h| h[0] == "channels"))
                {
                    blocks.push(Block {
                        line: *start,
                        heading: heading.clone(),
                        reference: in_channels,
                        text,
                    });
                }
                open = None;
            } else {
                body.push(line);
            }
            continue;
        }
        // The library example's blocks configure a kind of its own binary, not the stock one's:
        // `examples/merchant-service/tests/readme.rs` builds and runs them with that binary.
        if line.starts_with("```toml") && heading != "Using the library" {
            open = Some((index + 1, Vec::new()));
        } else if let Some(title) = line.strip_prefix("## ") {
            in_channels = reference || title.trim() == "Channels";
            heading = title.trim().to_owned();
        } else if let Some(title) = line.strip_prefix("### ") {
            heading = title.trim().to_owned();
        }
    }
    blocks
}

/// One `[channels.<name>]` instance of a block.
#[derive(Debug, Default)]
struct Instance {
    kind: Option<String>,
    /// Every key path the block names for it, commented out or not.
    named: BTreeSet<Vec<String>>,
}

/// The strings a line holds, each with its key path below the instance.
type Strings = Vec<(Vec<String>, String)>;

/// A line of the configuration built from a block.
#[derive(Debug)]
struct Built {
    text: String,
    /// For a key line: the instance, and the strings of the line.
    strings: Option<(String, Strings)>,
}

#[derive(Debug, Default)]
struct Parsed {
    instances: BTreeMap<String, Instance>,
    /// The block's channel tables as they are built: the lines not commented out, then each
    /// commented-out table (`# [channels.x.http]` and the `# key = value` lines under it).
    built: Vec<Built>,
    /// The other commented-out `# key = value` lines (alternatives such as `# password = ...`),
    /// each with the place in `built` where it belongs: built one at a time.
    alternatives: Vec<(usize, Built)>,
}

/// `["channels", name, sub...]` as (name, sub).
fn channel_context(header: &[String]) -> Option<(String, Vec<String>)> {
    (header.len() >= 2 && header[0] == "channels")
        .then(|| (header[1].clone(), header[2..].to_vec()))
}

fn parse_block(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    // The table an uncommented line belongs to, and the one a commented line is read under.
    let mut real: Option<(String, Vec<String>)> = None;
    let mut shown: Option<(String, Vec<String>)> = None;
    let mut alternatives: Vec<Vec<Built>> = Vec::new();
    let mut in_alternative = false;
    for raw in text.lines() {
        let trimmed = raw.trim();
        let (commented, content) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start_matches('#').trim()),
            None => (false, trimmed),
        };
        if content.starts_with("[[") {
            if !commented {
                (real, shown, in_alternative) = (None, None, false);
            }
            continue;
        }
        if let Some(header) = header_line(content) {
            let context = channel_context(&header);
            if let Some((name, sub)) = &context {
                let named = &mut parsed.instances.entry(name.clone()).or_default().named;
                for end in 1..=sub.len() {
                    named.insert(sub[..end].to_vec());
                }
            }
            if commented {
                in_alternative = context.is_some();
                if in_alternative {
                    alternatives.push(vec![Built {
                        text: content.to_owned(),
                        strings: None,
                    }]);
                }
            } else {
                in_alternative = false;
                real = context.clone();
                if real.is_some() {
                    parsed.built.push(Built {
                        text: content.to_owned(),
                        strings: None,
                    });
                }
            }
            shown = context;
            continue;
        }
        let context = if commented { &shown } else { &real };
        let Some((name, sub)) = context else {
            continue;
        };
        let Some((key, value)) = key_line(content) else {
            // Prose in a comment; an uncommented line the binary's parser will judge.
            if !commented {
                parsed.built.push(Built {
                    text: raw.to_owned(),
                    strings: None,
                });
            }
            continue;
        };
        let path: Vec<String> = sub.iter().chain(&key).cloned().collect();
        let instance = parsed.instances.entry(name.clone()).or_default();
        if path == ["kind"] {
            if let (false, Val::Str(kind)) = (commented, &value) {
                instance.kind = Some(kind.clone());
            }
        } else {
            key_paths(&path, &value, &mut instance.named);
        }
        let mut found = Vec::new();
        strings(&path, &value, &mut found);
        let line = Built {
            text: content.to_owned(),
            strings: Some((name.clone(), found)),
        };
        if !commented {
            parsed.built.push(line);
        } else if in_alternative {
            alternatives.last_mut().expect("opened").push(line);
        } else if real == shown {
            parsed.alternatives.push((parsed.built.len(), line));
        }
    }
    parsed.built.extend(alternatives.into_iter().flatten());
    parsed
}

// ------------------------------------------------------------------------------------------
// The binary.

/// Runs `postbud --config <config> check` until it says the channels build (then stops it:
/// what follows probes the network), or until it exits: then its output is the error.
fn channels_build(config: &Path) -> Result<(), String> {
    let mut child = postbud()
        .arg("--config")
        .arg(config)
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postbud check");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut said = String::new();
    loop {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(line)) if line.contains("its channels build") => {
                stop(child);
                return Ok(());
            }
            Ok(Ok(line)) => {
                said.push_str(&line);
                said.push('\n');
            }
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop(child);
                panic!("postbud check said nothing conclusive in 120 s: {said}");
            }
        }
    }
    let output = child.wait_with_output().expect("wait");
    Err(format!(
        "{said}{} ({})",
        String::from_utf8_lossy(&output.stderr),
        output.status
    ))
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A configuration around channel tables: a Dintero nobody answers for, a store in `dir`, and
/// `server.public_url` (signed links: webhook `pdf = "link"` and SMS need it).
fn configuration(dir: &Path, channels: &str, deliver: &[String]) -> PathBuf {
    let dintero = format!("http://127.0.0.1:{}/v1", free_port());
    let routes = if deliver.is_empty() {
        String::new()
    } else {
        format!(
            "\n[[routes]]\ndeliver = [{}]\n",
            deliver
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let path = dir.join("postbud.toml");
    std::fs::write(
        &path,
        format!(
            "[dintero]\naccount_id = \"T12345678\"\nclient_id = \"reference\"\nclient_secret = \"reference\"\n\
             api_url = \"{dintero}\"\nauth_url = \"{dintero}\"\n\n\
             [store]\nurl = \"sqlite://{}/postbud.db\"\n\n\
             [server]\npublic_url = \"https://invoices.merchant.example\"\n\n{channels}\n{routes}",
            dir.display()
        ),
    )
    .expect("write configuration");
    path
}

/// The channel kinds the binary links, as `postbud channels` lists them.
fn linked_kinds() -> Vec<String> {
    let output = postbud().arg("channels").output().expect("runs");
    assert!(output.status.success(), "{}", text(&output));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let kinds: Vec<String> = out
        .lines()
        .skip_while(|l| !l.starts_with("channel kinds:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(kinds.contains(&"folder".to_owned()), "{out}");
    kinds
}

/// Every kind's tables: kind → table path (below `[channels.<name>]`) → the keys it accepts,
/// as the kinds' typed configuration describes them (`postbud channels --keys --json`). A key
/// whose value is not a table of keys (a string, a list, a map of any keys such as `headers`)
/// is a leaf.
type Schema = BTreeMap<String, BTreeMap<Vec<String>, Vec<String>>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let output = postbud()
            .args(["channels", "--keys", "--json"])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{}", text(&output));
        let kinds: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&output.stdout).expect("channels --keys --json prints JSON");
        let mut schema = Schema::new();
        for (kind, entry) in kinds {
            let tables = schema.entry(kind).or_default();
            tables.entry(Vec::new()).or_default();
            for key in entry["keys"].as_array().expect("a list of keys") {
                let path: Vec<String> = key["path"]
                    .as_str()
                    .expect("a path")
                    .split('.')
                    .map(str::to_owned)
                    .collect();
                let (last, table) = path.split_last().expect("non-empty");
                tables.entry(table.to_vec()).or_default().push(last.clone());
                if key["kind"] == "table" {
                    tables.entry(path.clone()).or_default();
                }
            }
        }
        for kind in linked_kinds() {
            let described = schema.get(&kind).and_then(|tables| tables.get(&Vec::new()));
            assert!(
                described.is_some_and(|keys| !keys.is_empty()),
                "kind {kind} describes no keys: its register_channel! names no configuration type"
            );
        }
        schema
    })
}

// ------------------------------------------------------------------------------------------
// The files a block names that a production host has and this machine does not.

/// Makes a file (or directory) for the string `value` at key `path` of a channel of `kind`, in
/// `dir`; `None` for strings that are not such paths. `Err` when a tool to make it is missing.
fn stand_in(
    dir: &Path,
    kind: &str,
    path: &[String],
    value: &str,
) -> Option<Result<PathBuf, String>> {
    let key: Vec<&str> = path.iter().map(String::as_str).collect();
    let name = Path::new(value)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let target = dir.join(format!("{}-{name}", key.join("-")));
    let made = match (kind, key.as_slice()) {
        ("folder", ["path"]) => Ok(()),
        (_, [.., "templates"]) => std::fs::create_dir_all(&target).map_err(|e| e.to_string()),
        ("email", ["ca_file"]) | ("peppol", ["smp_trust" | "smp_ca_file"]) => tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                &target.to_string_lossy(),
                "-days",
                "2",
                "-subj",
                "/CN=reference CA",
            ],
            dir,
        ),
        ("email", ["dkim", "private_key_file"]) => tool(
            "openssl",
            &[
                "genrsa",
                "-traditional",
                "-out",
                &target.to_string_lossy(),
                "2048",
            ],
            dir,
        ),
        ("sftp", ["private_key"]) if !value.trim_start().starts_with("-----BEGIN") => tool(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &target.to_string_lossy(),
            ],
            dir,
        ),
        ("sftp", ["known_hosts"]) => {
            let key = dir.join("host_ed25519");
            tool(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    &key.to_string_lossy(),
                ],
                dir,
            )
            .and_then(|()| {
                let public = std::fs::read_to_string(key.with_extension("pub"))
                    .map_err(|e| e.to_string())?;
                std::fs::write(&target, format!("erp.merchant.example {public}"))
                    .map_err(|e| e.to_string())
            })
        }
        // A secret read from a file (`password_file = "/run/secrets/..."`).
        (_, [.., last]) if last.ends_with("_file") => {
            std::fs::write(&target, "reference-secret\n").map_err(|e| e.to_string())
        }
        _ => return None,
    };
    Some(made.map(|()| target))
}

fn tool(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?}: {}", text(&output)))
    }
}

/// Builds a block's channels with the binary; `Ok(false)` when a tool to make a file it names
/// is missing (the test is then skipped for it, or fails under `POSTBUD_REQUIRE_SERVICES=1`).
fn build_block(block: &str) -> Result<bool, String> {
    let parsed = parse_block(block);
    build(&parsed, parsed.built.iter().collect())
}

/// Builds the block once more for each commented-out `# key = value` line, with that line in
/// its table: every one must parse as its key's type. An error about something else (`password`
/// and `private_key` set together, say) is what an alternative may cause.
fn alternative_problems(block: &str) -> Vec<String> {
    let parsed = parse_block(block);
    let mut problems = Vec::new();
    for (at, alternative) in &parsed.alternatives {
        let mut lines: Vec<&Built> = parsed.built.iter().collect();
        lines.insert(*at, alternative);
        if let Err(e) = build(&parsed, lines) {
            let typed = [
                "parse error",
                "invalid type",
                "invalid value",
                "unknown key",
                "the value is not shown",
            ];
            if typed.iter().any(|t| e.contains(t)) {
                problems.push(format!(
                    "the commented-out `{}` does not build:\n{e}",
                    alternative.text
                ));
            }
        }
    }
    problems
}

fn build(parsed: &Parsed, built: Vec<&Built>) -> Result<bool, String> {
    let dir = tempfile::tempdir().expect("dir");
    let mut lines = Vec::new();
    for line in built {
        let mut text = line.text.clone();
        if let Some((name, found)) = &line.strings {
            let kind = parsed.instances[name].kind.clone().unwrap_or_default();
            for (path, value) in found {
                match stand_in(dir.path(), &kind, path, value) {
                    None => {}
                    Some(Ok(file)) => {
                        text = text.replacen(
                            &format!("\"{value}\""),
                            &format!("\"{}\"", file.display()),
                            1,
                        );
                    }
                    Some(Err(why)) => {
                        if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") {
                            panic!("a stand-in for {value}: {why}");
                        }
                        postbud_sandbox::skipped(&format!(
                            "reference: building a block that names {value}: {why}"
                        ));
                        return Ok(false);
                    }
                }
            }
        }
        lines.push(text);
    }
    let names: Vec<String> = parsed.instances.keys().cloned().collect();
    let config = configuration(dir.path(), &lines.join("\n"), &names);
    channels_build(&config).map(|()| true).map_err(|e| {
        format!(
            "{e}\n  (built from:\n{})",
            std::fs::read_to_string(&config).unwrap_or_default()
        )
    })
}

/// What is wrong with the keys a block names: keys its kind does not have, and, for a reference
/// block, keys its kind has that the block does not name.
fn key_problems(block: &str, schema: &Schema, reference: bool) -> Vec<String> {
    let parsed = parse_block(block);
    let mut problems = Vec::new();
    for (name, instance) in &parsed.instances {
        let Some(kind) = &instance.kind else {
            problems.push(format!("[channels.{name}] has no `kind = \"...\"` line"));
            continue;
        };
        let Some(tables) = schema.get(kind) else {
            problems.push(format!(
                "[channels.{name}]: kind \"{kind}\" is not linked into the binary (linked: {:?})",
                schema.keys().collect::<Vec<_>>()
            ));
            continue;
        };
        // `K_file` names `K` (a secret read from a file) unless the table has a `K_file` key.
        let canonical = |path: &[String]| -> Vec<String> {
            let (last, table) = path.split_last().expect("non-empty");
            match (tables.get(table), last.strip_suffix("_file")) {
                (Some(keys), Some(stem))
                    if !keys.contains(last) && keys.iter().any(|k| k == stem) =>
                {
                    table.iter().cloned().chain([stem.to_owned()]).collect()
                }
                _ => path.to_vec(),
            }
        };
        let named: BTreeSet<Vec<String>> = instance.named.iter().map(|p| canonical(p)).collect();
        for path in &named {
            // Below a leaf (a map such as `headers`) any key goes.
            let Some(keys) = (0..path.len())
                .rev()
                .find_map(|end| tables.get(&path[..end]).map(|keys| (end, keys)))
            else {
                continue;
            };
            let (end, keys) = keys;
            if end == path.len() - 1 && !keys.contains(&path[end]) {
                problems.push(format!(
                    "[channels.{name}] (kind \"{kind}\") names `{}`, which the kind does not have; {} has: {}",
                    path.join("."),
                    if end == 0 {
                        "the table".to_owned()
                    } else {
                        format!("`{}`", path[..end].join("."))
                    },
                    keys.join(", ")
                ));
            }
        }
        if reference {
            for (table, keys) in tables {
                for key in keys {
                    let path: Vec<String> = table.iter().cloned().chain([key.clone()]).collect();
                    if !named.contains(&path) {
                        problems.push(format!(
                            "the `{kind}` reference block does not name `{}`: add it, with its default and meaning",
                            path.join(".")
                        ));
                    }
                }
            }
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------
// README.md and docs/channels.md

#[test]
fn every_channel_block_of_the_readme_and_the_channels_document_builds() {
    let mut failures = Vec::new();
    for (file, reference, least) in [("README.md", false, 1), ("docs/channels.md", true, 5)] {
        let blocks = channel_blocks(&read(file), reference);
        assert!(
            blocks.len() >= least,
            "{file}: found {} channel blocks",
            blocks.len()
        );
        for block in &blocks {
            if let Err(e) = build_block(&block.text) {
                failures.push(format!(
                    "{file} line {} ({}): the channels do not build:\n{e}",
                    block.line, block.heading
                ));
            }
            for problem in alternative_problems(&block.text) {
                failures.push(format!(
                    "{file} line {} ({}): {problem}",
                    block.line, block.heading
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_channels_document_names_every_key_of_every_kind_and_no_other() {
    let schema = schema();
    let blocks = channel_blocks(&read("docs/channels.md"), true);
    let mut problems = Vec::new();
    let mut documented = BTreeSet::new();
    for block in &blocks {
        for problem in key_problems(&block.text, schema, block.reference) {
            problems.push(format!(
                "docs/channels.md line {} ({}): {problem}",
                block.line, block.heading
            ));
        }
        if block.reference {
            let parsed = parse_block(&block.text);
            assert_eq!(
                parsed.instances.len(),
                1,
                "docs/channels.md line {}: a reference block documents one channel",
                block.line
            );
            documented.extend(parsed.instances.into_values().filter_map(|i| i.kind));
        }
    }
    for kind in schema.keys() {
        if !documented.contains(kind) {
            problems.push(format!(
                "docs/channels.md has no ```toml block for kind \"{kind}\""
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above fail for the mistakes they are there for.
#[test]
fn the_key_reference_is_generated_from_the_kinds_types() {
    let output = postbud()
        .args(["channels", "--keys", "--markdown"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", text(&output));
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let committed = read("docs/keys.md");
    assert!(
        generated == committed,
        "docs/keys.md is not what the kinds' types say: regenerate it with \
         `cargo run -p postbud-cli -- channels --keys --markdown > docs/keys.md`"
    );
    // What the generator reads: each kind's doc comments, defaults and required keys.
    for (kind, line) in [
        ("email", "| `smtp_url` | string | required |"),
        (
            "email",
            "| `timeout` | string | `\"30s\"` | Connect, command and data timeout. |",
        ),
        ("email", "| `dkim.selector` | string | required |"),
        ("folder", "| `mode` | string | `\"0640\"` |"),
        (
            "webhook",
            "| `scheme` | one of \"standard\" \\| \"stripe\" \\| \"github\" | `\"standard\"` |",
        ),
        (
            "sftp",
            "| `formats` | list of string | `[\"ubl\", \"pdf\", \"json\"]` |",
        ),
    ] {
        assert!(
            committed.contains(line),
            "docs/keys.md: the {kind} reference lacks `{line}`"
        );
    }
}

/// config/channels.toml is `postbud channels --keys --toml`, and it names every key of every
/// kind and no other, each with a value TOML reads, the way a README reference block must.
#[test]
fn the_channel_kinds_configuration_file_is_generated_and_complete() {
    let output = postbud()
        .args(["channels", "--keys", "--toml"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", text(&output));
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let committed = read("config/channels.toml");
    assert!(
        generated == committed,
        "config/channels.toml is not what the kinds' types say: regenerate it with \
         `cargo run -p postbud-cli -- channels --keys --toml > config/channels.toml`"
    );
    // Every line is commented out, so the file loads as it is; the tables appear as a reader
    // who uncomments them sees them (a key without a default shown as a string to fill in).
    let mut tables = 0;
    let mut uncommented = String::new();
    for line in committed.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "config/channels.toml: `{line}` is not commented out"
        );
        let content = line.trim_start_matches('#').trim_start();
        if let Some(header) = header_line(content) {
            tables += usize::from(header.len() == 2);
            uncommented.push_str(content);
        } else if content.starts_with("kind = ") {
            uncommented.push_str(content);
        } else if let Some(key) = content.strip_suffix(" = …") {
            uncommented.push_str(&format!("# {key} = \"…\""));
        } else {
            uncommented.push_str(line);
        }
        uncommented.push('\n');
    }
    assert_eq!(tables, schema().len(), "a table per linked kind");
    let problems = key_problems(&uncommented, schema(), true);
    assert!(
        problems.is_empty(),
        "config/channels.toml: {}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_catch_a_wrong_block() {
    let good = "[channels.archive]\nkind = \"folder\"\npath = \"./invoices\"\ncreate = true\n# mode = \"0600\"\n# dir_mode = \"0700\"\n";
    assert_eq!(build_block(good), Ok(true));
    assert!(key_problems(good, schema(), true).is_empty());

    let unknown = format!("{good}colour = \"blue\"\n");
    let error = build_block(&unknown).expect_err("an unknown key");
    assert!(error.contains("unknown key `colour`"), "{error}");

    let wrong_type = good.replace("create = true", "create = \"yes\"");
    let error = build_block(&wrong_type).expect_err("a wrong type");
    assert!(error.contains("invalid type"), "{error}");

    let no_such_kind = good.replace("\"folder\"", "\"foldr\"");
    let error = build_block(&no_such_kind).expect_err("an unknown kind");
    assert!(error.contains("unknown channel kind \"foldr\""), "{error}");

    assert!(alternative_problems(good).is_empty());
    let commented_wrong_type = good.replace("# mode = \"0600\"", "# mode = 600");
    let problems = alternative_problems(&commented_wrong_type);
    assert!(
        problems.len() == 1 && problems[0].contains("invalid type"),
        "{problems:?}"
    );
    let commented_not_toml = good.replace("# mode = \"0600\"", "# mode = 0600");
    let problems = alternative_problems(&commented_not_toml);
    assert!(
        problems.len() == 1 && problems[0].contains("parse error"),
        "{problems:?}"
    );

    let commented_typo = good.replace("# mode", "# mdoe");
    let problems = key_problems(&commented_typo, schema(), false);
    assert!(
        problems.iter().any(|p| p.contains("`mdoe`")),
        "{problems:?}"
    );

    let missing = good.replace("create = true\n", "");
    let problems = key_problems(&missing, schema(), true);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`create`"), "{problems:?}");

    // A nested table is read as such: the sftp seller's address.
    let nested = "[channels.erp]\nkind = \"sftp\"\n[channels.erp.seller]\naddress = { line = \"x\", town = \"y\" }\n";
    let problems = key_problems(nested, schema(), false);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`seller.address.town`") && p.contains("postal_code")),
        "{problems:?}"
    );
}

#[test]
fn the_line_reader_reads_what_the_blocks_hold() {
    let (key, value) =
        key_line("dkim = { domain = \"a\", \"x-y\" = [1, 2], t = { u = 'v' } }   # c = d")
            .expect("line");
    assert_eq!(key, ["dkim"]);
    let mut paths = BTreeSet::new();
    key_paths(&key, &value, &mut paths);
    let paths: Vec<String> = paths.iter().map(|p| p.join(".")).collect();
    assert_eq!(
        paths,
        ["dkim", "dkim.domain", "dkim.t", "dkim.t.u", "dkim.x-y"]
    );
    assert!(key_line("provider = \"http\" takes a table instead of credentials:").is_none());
    assert!(key_line("or POSTBUD_CHANNELS__X__PASSWORD").is_none());
    assert_eq!(
        header_line("[channels.erp.seller]   # what the UBL needs"),
        Some(vec!["channels".into(), "erp".into(), "seller".into()])
    );
    assert!(header_line("[[routes]]").is_none());
}

// ------------------------------------------------------------------------------------------
// sandbox/README.md

/// `postbud sandbox` on a free port, stopped when dropped.
struct SandboxProcess(Child);

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request a `curl` line makes.
#[derive(Debug)]
struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    basic: Option<(String, String)>,
}

/// Shell words, with `'...'`, `"..."`, `\` and `$NAME`/`${NAME}` as a shell reads them.
fn shell_words(line: &str, vars: &HashMap<String, String>) -> Vec<String> {
    fn expand(
        chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
        into: &mut String,
        vars: &HashMap<String, String>,
    ) {
        let braced = chars.next_if_eq(&'{').is_some();
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        if braced {
            assert_eq!(chars.next(), Some('}'), "${{{name}: no closing brace");
        }
        let value = vars
            .get(&name)
            .unwrap_or_else(|| panic!("sandbox/README.md uses ${name} before setting it"));
        into.push_str(value);
    }
    let mut words = Vec::new();
    let (mut word, mut started) = (String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                started = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => {}
                        },
                        '$' => expand(&mut chars, &mut word, vars),
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                started = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '$' => {
                started = true;
                expand(&mut chars, &mut word, vars);
            }
            other => {
                started = true;
                word.push(other);
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

fn curl_request(words: &[String]) -> Request {
    assert_eq!(words.first().map(String::as_str), Some("curl"), "{words:?}");
    let mut request = Request {
        method: String::new(),
        url: String::new(),
        headers: Vec::new(),
        body: None,
        basic: None,
    };
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("curl {arg} without a value"))
                .clone()
        };
        match arg.as_str() {
            "-X" | "--request" => request.method = value(),
            "-H" | "--header" => {
                let header = value();
                let (name, v) = header.split_once(':').expect("Name: value");
                request.headers.push((name.trim().into(), v.trim().into()));
            }
            "-d" | "--data" | "--data-raw" => request.body = Some(value()),
            "-u" | "--user" => {
                let user = value();
                let (name, password) = user.split_once(':').expect("user:password");
                request.basic = Some((name.into(), password.into()));
            }
            "-s" | "-S" | "-sS" | "-f" | "-fsS" | "-i" | "--silent" | "--show-error" | "--fail" => {
            }
            url if url.starts_with("http://") || url.starts_with("https://") => {
                request.url = url.to_owned();
            }
            other => panic!(
                "sandbox/README.md: curl option `{other}` is not one this test reads (-X, -H, -d, -u, -s, -S, -f, -i)"
            ),
        }
    }
    assert!(!request.url.is_empty(), "curl without a URL: {words:?}");
    if request.method.is_empty() {
        request.method = if request.body.is_some() {
            "POST"
        } else {
            "GET"
        }
        .into();
    }
    request
}

/// `$(curl ... | jq -r .a.b)`: the field of the answer.
fn jq_field(answer: &serde_json::Value, filter: &str) -> String {
    let mut value = answer;
    for part in filter
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        value = &value[part];
    }
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

/// The lines of the ```sh blocks, continuations (`\` at the end) joined.
fn shell_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let (mut inside, mut pending): (bool, Option<(usize, String)>) = (false, None);
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim_start().trim_start_matches('`').trim() == "sh";
            continue;
        }
        if !inside {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        match line.trim_end().strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(line.trim());
                lines.push((start, joined));
            }
        }
    }
    lines
}

/// The sandbox's control routes, as its router declares them: (method, path).
fn control_routes() -> Vec<(String, String)> {
    let source = read("sandbox/src/control.rs");
    let mut routes = Vec::new();
    for part in source.split(".route(").skip(1) {
        let Some(path) = part
            .split('"')
            .nth(1)
            .filter(|p| p.starts_with("/sandbox/"))
        else {
            continue;
        };
        let call = part.split(".route(").next().unwrap_or(part);
        let call = &call[..call.find("\n}").unwrap_or(call.len())];
        for method in ["get", "post", "put", "delete", "patch"] {
            let named = call.contains(&format!(" {method}("))
                || call.contains(&format!("({method}("))
                || call.contains(&format!(".{method}("))
                || call.contains(&format!("::{method}("));
            if named {
                routes.push((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    assert!(
        routes.len() >= 6,
        "read {routes:?} from sandbox/src/control.rs"
    );
    routes
}

/// `/sandbox/transactions/{id}` matches `/sandbox/transactions/T1.abc`.
fn route_matches(route: &str, path: &str) -> bool {
    let (route, path): (Vec<&str>, Vec<&str>) =
        (route.split('/').collect(), path.split('/').collect());
    route.len() == path.len()
        && route
            .iter()
            .zip(&path)
            .all(|(r, p)| r == p || (r.starts_with('{') && !p.is_empty()))
}

#[tokio::test]
async fn every_request_the_sandbox_readme_shows_succeeds() {
    let port = free_port();
    let sandbox = SandboxProcess(
        postbud()
            .args([
                "sandbox",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--seed",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn postbud sandbox"),
    );
    let base = format!("http://127.0.0.1:{port}");
    postbud::http::ensure_crypto_provider();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = http
            .get(format!("{base}/sandbox/stats"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "postbud sandbox never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Where the README sends callbacks: `postbud serve` there, anything that answers here.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver_url = format!("http://{}", receiver.local_addr().expect("addr"));
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "ok" });
        let _ = axum::serve(receiver, app).await;
    });

    let readme = read("sandbox/README.md");
    let mut vars: HashMap<String, String> = HashMap::from([
        ("SANDBOX".to_owned(), base.clone()),
        ("POSTBUD".to_owned(), receiver_url),
    ]);
    let fixed: BTreeSet<&str> = ["SANDBOX", "POSTBUD"].into();
    let mut made: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    for (line_number, line) in shell_lines(&readme) {
        // `NAME=$(curl ... | jq -r .field)`, `NAME=value`, `curl ...` (a `| jq` after it is
        // for the reader); other commands are for the reader too.
        let (assign, command) = match line.split_once('=') {
            Some((name, rest))
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_') =>
            {
                (Some(name.to_owned()), rest.to_owned())
            }
            _ => (None, line.clone()),
        };
        let (command, filter) = match command.strip_prefix("$(").and_then(|c| c.strip_suffix(')')) {
            Some(inner) => match inner.split_once(" | jq -r ") {
                Some((curl, filter)) => (curl.to_owned(), Some(filter.trim().to_owned())),
                None => panic!(
                    "sandbox/README.md line {line_number}: $(...) must end in `| jq -r .field`"
                ),
            },
            None => (command, None),
        };
        let command = command
            .split_once(" | ")
            .map_or(command.as_str(), |(c, _)| c)
            .trim()
            .to_owned();
        if !command.starts_with("curl ") {
            if let Some(name) = assign
                && !fixed.contains(name.as_str())
            {
                vars.insert(name, shell_words(&command, &vars).join(" "));
            }
            continue;
        }
        let request = curl_request(&shell_words(&command, &vars));
        let path = url::Url::parse(&request.url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        made.push((request.method.clone(), path));
        let mut builder = http.request(
            request.method.parse().expect("a method"),
            request.url.as_str(),
        );
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some((user, password)) = &request.basic {
            builder = builder.basic_auth(user, Some(password));
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.expect("the sandbox answers");
        let status = response.status();
        let answer = response.text().await.unwrap_or_default();
        if !status.is_success() {
            failures.push(format!(
                "sandbox/README.md line {line_number}: {} {} answered {status}: {answer}\n  {line}",
                request.method, request.url
            ));
            continue;
        }
        if let (Some(name), Some(filter)) = (assign, filter) {
            let value = serde_json::from_str(&answer)
                .map(|json| jq_field(&json, &filter))
                .unwrap_or_default();
            assert!(
                !value.is_empty() && value != "null",
                "sandbox/README.md line {line_number}: {filter} of {answer}"
            );
            vars.insert(name, value);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let routes = control_routes();
    for known in [("DELETE", "/sandbox/faults"), ("PUT", "/sandbox/checkout")] {
        assert!(
            routes
                .iter()
                .any(|(m, p)| (m.as_str(), p.as_str()) == known),
            "{known:?} not read from sandbox/src/control.rs: {routes:?}"
        );
    }
    for (method, route) in routes {
        assert!(
            made.iter()
                .any(|(m, path)| *m == method && route_matches(&route, path)),
            "sandbox/README.md has no example of {method} {route}"
        );
    }
    assert!(
        made.len() >= 15,
        "only {} requests in sandbox/README.md",
        made.len()
    );
    drop(sandbox);
}

/// The Rust example of sandbox/README.md, as it stands there.
#[tokio::test]
async fn the_sandbox_readme_rust_example_compiles_and_runs() {
    use postbud_sandbox::{Fault, FaultKind, Operation, Sandbox, SandboxConfig, Seed};

    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let dintero = sandbox.dintero_toml(); // the [dintero] table
    let id = sandbox.seed(Seed {
        invoice_number: Some("INV-1001".into()),
        pdf_changes_at_capture: true,
        ..Seed::default()
    });
    sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status: 503,
            retry_after: Some(1),
        },
        times: 1,
        skip: 0,
    });
    // ... run Postbud with `dintero` in its configuration, then:
    let captures = sandbox.captures(&id);
    let requests = sandbox.stats().requests;

    assert!(dintero.contains(&sandbox.api_url()), "{dintero}");
    assert_eq!(captures, 0);
    assert!(requests.is_empty(), "{requests:?}");
    let readme = read("sandbox/README.md");
    for call in [
        "Sandbox::start(SandboxConfig::default())",
        "sandbox.dintero_toml()",
        "invoice_number: Some(\"INV-1001\".into())",
        "sandbox.inject(Fault {",
        "FaultKind::Status {",
        "sandbox.captures(&id)",
        "sandbox.stats().requests",
    ] {
        assert!(
            readme.contains(call),
            "sandbox/README.md's Rust example lacks `{call}`"
        );
    }
}
