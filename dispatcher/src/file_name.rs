//! The one file-name sanitiser for every name a channel or the server emits: a folder's file,
//! an SFTP drop, an email attachment, a `Content-Disposition`.
//!
//! A name is made of ASCII letters, digits, `-`, `_`, `.` and `~`, never starts with a dot, and is
//! at most [`MAX_STEM`] characters. A name that had to change gets a short digest of the
//! original, so two invoices never share a file name: `Ø-100` and `Å-100` become
//! `_-100~3f1c0a9b` and `_-100~8d02e6c4`, where plain replacement would make the second
//! silently replace the first.

use crate::invoice::sha256_hex;

/// Longest stem (the part before an extension).
pub const MAX_STEM: usize = 100;

/// A safe stem for `name` (an invoice number, a reference): unchanged when it already is one.
///
/// ```
/// use postbud::file_name::stem;
///
/// assert_eq!(stem("SBX123-000001"), "SBX123-000001");
/// assert_ne!(stem("Ø-100"), stem("Å-100"));
/// assert!(stem("../../etc/passwd\r\n").chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)));
/// ```
pub fn stem(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned == name && !name.is_empty() && name.len() <= MAX_STEM {
        return cleaned.to_owned();
    }
    let digest = &sha256_hex(name.as_bytes())[..8];
    let keep: String = cleaned.chars().take(MAX_STEM - 9).collect();
    if keep.is_empty() {
        format!("invoice~{digest}")
    } else {
        format!("{keep}~{digest}")
    }
}

/// `stem(name)` with `extension` (given without its dot).
pub fn with_extension(name: &str, extension: &str) -> String {
    format!("{}.{extension}", stem(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_names_stay_distinct_and_safe() {
        let names = [
            "Ø-100",
            "Å-100",
            "Æ-100",
            "_-100",
            "../x",
            "..\\x",
            "a/b",
            "a\\b",
            "x\r\nSet-Cookie: y",
            "\u{202E}fdp.exe",
            "",
            ".",
            "..",
            ".hidden",
            "CON",
            "a\"b",
            "a b",
        ];
        let stems: Vec<String> = names.iter().map(|n| stem(n)).collect();
        for (name, s) in names.iter().zip(&stems) {
            assert!(!s.is_empty() && !s.starts_with('.'), "{name:?} -> {s}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
                "{name:?} -> {s}"
            );
        }
        let mut unique = stems.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), stems.len(), "{stems:?}");
        assert_eq!(stem("INV-2026.001_a"), "INV-2026.001_a");
        for s in &stems {
            assert_eq!(&stem(s), s, "a sanitised name stays as it is");
        }
        let long = stem(&"a".repeat(500));
        assert!(long.len() <= MAX_STEM, "{long}");
        assert_ne!(long, stem(&"a".repeat(501)));
    }
}
