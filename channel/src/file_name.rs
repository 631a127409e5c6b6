//! The one file-name sanitiser for every name a channel or the server emits: a folder's file,
//! an SFTP drop, an email attachment, a `Content-Disposition`.
//!
//! A name is made of ASCII letters, digits, `-`, `_` and `.`, never starts with a dot, and is
//! at most [`MAX_STEM`] characters. A name that had to change gets `~` and a short digest of the
//! original (`~` appears in no other way), so two invoices never share a file name: `Ø-100` and
//! `Å-100` become `_-100~3f1c0a9b` and `_-100~8d02e6c4`, where plain replacement would make the
//! second silently replace the first. So does a name ending like the files channels add beside
//! an invoice (`X.voided` would otherwise write `X.voided.json`, invoice `X`'s void notice).

use crate::sha256_hex;

/// Longest stem (the part before an extension).
pub const MAX_STEM: usize = 100;

/// Endings of the files channels write beside an invoice's own; a stem ending so gets a digest.
const RESERVED_ENDINGS: [&str; 7] = [
    ".voided", "-credit", ".pdf", ".json", ".xml", ".sha256", ".part",
];

/// A safe stem for `name` (an invoice number, a reference): unchanged when it already is one.
///
/// ```
/// use postbud_channel::file_name::stem;
///
/// assert_eq!(stem("SBX123-000001"), "SBX123-000001");
/// assert_ne!(stem("Ø-100"), stem("Å-100"));
/// assert!(stem("../../etc/passwd\r\n").chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)));
/// assert_ne!(stem("_-100~3f1c0a9b"), "_-100~3f1c0a9b");
/// ```
pub fn stem(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    let lower = cleaned.to_ascii_lowercase();
    let reserved = RESERVED_ENDINGS.iter().any(|e| lower.ends_with(e));
    if cleaned == name && !name.is_empty() && name.len() <= MAX_STEM && !reserved {
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

/// An octal file mode (`"0640"`, `"640"`, `"0o640"`), at most `0o777`: the `mode` key of the
/// channels that write files.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal file mode such as \"0640\""))
}

/// `stem(name)` with `extension` (given without its dot).
pub fn with_extension(name: &str, extension: &str) -> String {
    format!("{}.{extension}", stem(name))
}

/// Whether `name` is one this module emits (safe characters, `~` only before a digest, no
/// leading dot, bounded): such a name passes unchanged wherever it is sanitised again.
pub fn is_emitted(name: &str) -> bool {
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let body = match name.split_once('~') {
        Some((stem, rest)) => {
            let digest = rest.split('.').next().unwrap_or_default();
            plain(stem)
                && digest.len() == 8
                && digest.chars().all(|c| c.is_ascii_hexdigit())
                && plain(&rest[8..])
        }
        None => plain(name),
    };
    body && !name.is_empty() && !name.starts_with('.') && name.len() <= MAX_STEM + 16
}

/// The file name of a PDF: `name` if it already is one this module emits, else sanitised with
/// `.pdf`.
pub fn pdf(name: &str) -> String {
    if is_emitted(name) && name.ends_with(".pdf") {
        name.to_owned()
    } else {
        with_extension(name.strip_suffix(".pdf").unwrap_or(name), "pdf")
    }
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
            let file = format!("{s}.pdf");
            assert!(is_emitted(&file), "{file}");
            assert_eq!(pdf(&file), file, "a sanitised name stays as it is");
        }
        // `~` is the digest's alone, and endings channels add beside an invoice are no one's.
        let digest_form = stem("Ø-100");
        assert_ne!(stem(&digest_form), digest_form);
        assert_ne!(
            format!("{}.json", stem("X.voided")),
            format!("{}.voided.json", stem("X"))
        );
        assert_ne!(
            format!("{}.xml", stem("X-credit")),
            format!("{}-credit.xml", stem("X"))
        );
        assert!(!is_emitted("a/b.pdf") && !is_emitted(".x.pdf") && !is_emitted("a~zz.pdf"));
        let long = stem(&"a".repeat(500));
        assert!(long.len() <= MAX_STEM, "{long}");
        assert_ne!(long, stem(&"a".repeat(501)));
    }
}
