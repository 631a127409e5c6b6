//! The keys of a channel kind's `[channels.<name>]` table, read from its typed configuration.
//!
//! A channel's configuration type derives [`JsonSchema`] beside `serde::Deserialize`; the
//! schema follows the serde attributes (`default`, `rename`, `deny_unknown_fields`) and takes
//! each field's doc comment as its meaning. [`keys_of`] flattens it into the list of keys that
//! `postbud channels --keys` prints and the key reference (`docs/keys.md`) is generated from,
//! so the reference cannot drift from what the channel accepts.
//!
//! ```
//! use postbud_channel::keys::{JsonSchema, keys_of};
//!
//! #[derive(serde::Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Where to post.
//!     url: String,
//!     /// Seconds to wait.
//!     #[serde(default = "ten")]
//!     timeout: u32,
//! }
//! fn ten() -> u32 { 10 }
//!
//! let keys = keys_of::<Config>();
//! assert_eq!(keys[0].path, "timeout");
//! assert_eq!(keys[0].default, Some(serde_json::json!(10)));
//! assert!(keys[1].required && keys[1].doc == "Where to post.");
//! ```

use serde_json::{Map, Value};

pub use schemars::{self, JsonSchema};

/// One key of a channel kind's table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Key {
    /// The key below `[channels.<name>]`, with dots for nested tables: `dkim.selector`.
    pub path: String,
    /// What its value is, in words: `string`, `integer`, `list of string`, `table`,
    /// `one of "a" | "b"`.
    pub kind: String,
    /// The table is refused without it.
    pub required: bool,
    /// The value used when the key is absent, where the type says one.
    pub default: Option<Value>,
    /// Its meaning: the field's doc comment, on one line.
    pub doc: String,
}

impl Key {
    /// True for a key whose value is a table of keys listed after it.
    pub fn is_table(&self) -> bool {
        self.kind == "table"
    }
}

/// The keys of configuration type `T`, sorted by path, nested tables after their own key.
pub fn keys_of<T: JsonSchema>() -> Vec<Key> {
    let schema = schemars::schema_for!(T);
    let root = schema.as_value();
    let empty = Map::new();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut keys = Vec::new();
    table(root, defs, "", &mut keys);
    keys
}

/// The keys of one table schema, below `prefix`.
fn table(schema: &Value, defs: &Map<String, Value>, prefix: &str, out: &mut Vec<Key>) {
    let schema = resolve(schema, defs);
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, field) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let value = without_null(field, defs);
        let doc = field
            .get("description")
            .or_else(|| value.get("description"))
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        out.push(Key {
            path: path.clone(),
            kind: kind_of(value, defs),
            required: required.contains(&name.as_str()),
            default: field.get("default").filter(|d| !d.is_null()).cloned(),
            doc,
        });
        if value.get("properties").is_some() {
            table(value, defs, &path, out);
        }
    }
}

/// Follows a `$ref` into the schema's definitions.
fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
        .unwrap_or(schema)
}

/// An `Option`'s schema without its `null` alternative.
fn without_null<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = alternatives.iter().filter(|s| !is_null(s)).collect();
        if let [only] = rest[..] {
            return resolve(only, defs);
        }
    }
    resolve(schema, defs)
}

fn is_null(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// A value's type in words.
fn kind_of(schema: &Value, defs: &Map<String, Value>) -> String {
    let schema = resolve(schema, defs);
    if schema.get("properties").is_some() {
        return "table".to_owned();
    }
    if let Some(values) = choices(schema) {
        return format!("one of {}", values.join(" | "));
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema.get(combinator).and_then(Value::as_array) {
            let words: Vec<String> = alternatives
                .iter()
                .filter(|s| !is_null(s))
                .map(|s| kind_of(s, defs))
                .collect();
            return words.join(" or ");
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => match schema.get("items") {
                Some(items) => format!("list of {}", kind_of(items, defs)),
                None => "list".to_owned(),
            },
            "object" => match schema.get("additionalProperties") {
                Some(values @ Value::Object(_)) => format!("table of {}", kind_of(values, defs)),
                _ => "table of any keys".to_owned(),
            },
            other => other.to_owned(),
        })
        .collect();
    if words.is_empty() {
        "any value".to_owned()
    } else {
        words.join(" or ")
    }
}

/// The values of an enumeration (`enum`, or `oneOf` constants with their own docs).
fn choices(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(Value::to_string).collect());
    }
    let alternatives = schema.get("oneOf")?.as_array()?;
    let mut values = Vec::new();
    for alternative in alternatives {
        match alternative.get("const").or_else(|| {
            alternative
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
        }) {
            Some(value) => values.push(value.to_string()),
            None => return None,
        }
    }
    Some(values)
}

/// A doc comment's lines joined into one.
fn one_line(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[allow(dead_code)]
    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        /// The address
        /// on two lines.
        url: String,
        #[serde(default)]
        bcc: Vec<String>,
        #[serde(default)]
        headers: HashMap<String, String>,
        /// Optional signing.
        #[serde(default)]
        dkim: Option<Inner>,
        #[serde(default = "post")]
        method: Method,
        #[serde(default)]
        verbose: bool,
    }

    #[allow(dead_code)]
    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        selector: String,
        #[serde(default)]
        bits: Option<u32>,
    }

    #[allow(dead_code)]
    #[derive(serde::Deserialize, serde::Serialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Method {
        Post,
        Put,
    }

    fn post() -> Method {
        Method::Post
    }

    #[test]
    fn every_key_is_found_with_its_type_default_and_meaning() {
        let keys = keys_of::<Outer>();
        let paths: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bcc",
                "dkim",
                "dkim.bits",
                "dkim.selector",
                "headers",
                "method",
                "url",
                "verbose"
            ]
        );
        let key = |path: &str| keys.iter().find(|k| k.path == path).expect(path);
        assert_eq!(key("url").doc, "The address on two lines.");
        assert!(key("url").required && !key("bcc").required);
        assert_eq!(key("bcc").kind, "list of string");
        assert_eq!(key("headers").kind, "table of string");
        assert!(key("dkim").is_table());
        assert_eq!(key("dkim").doc, "Optional signing.");
        assert!(key("dkim.selector").required, "required inside its table");
        assert_eq!(key("dkim.bits").kind, "integer");
        assert_eq!(key("method").kind, r#"one of "post" | "put""#);
        assert_eq!(key("method").default, Some(serde_json::json!("post")));
        assert_eq!(key("verbose").default, Some(serde_json::json!(false)));
        assert_eq!(
            key("dkim").default,
            None,
            "None is no default worth showing"
        );
    }
}
