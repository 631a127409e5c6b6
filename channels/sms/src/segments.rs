//! SMS encoding and segment counting (3GPP TS 23.038): GSM-7 when every character is in the
//! default alphabet or its extension table (which costs two septets), otherwise UCS-2.

/// The GSM 03.38 default alphabet (Norwegian, Swedish and Finnish letters included).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters reached through the escape, two septets each.
const EXTENSION: &str = "^{}\\[~]|€\u{c}";

/// How a text travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 7-bit default alphabet: 160 septets alone, 153 per part.
    Gsm7,
    /// UTF-16: 70 units alone, 67 per part.
    Ucs2,
}

/// Encoding, length in its units, and segment count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// GSM-7 or UCS-2.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Messages the text is split into.
    pub count: usize,
}

/// Counts the segments of `text`.
pub fn count(text: &str) -> Segments {
    let mut septets: usize = 0;
    for c in text.chars() {
        if BASIC.contains(c) {
            septets += 1;
        } else if EXTENSION.contains(c) {
            septets += 2;
        } else {
            let units = text.encode_utf16().count();
            let count = if units <= 70 { 1 } else { units.div_ceil(67) };
            return Segments {
                encoding: Encoding::Ucs2,
                units,
                count,
            };
        }
    }
    let count = if septets <= 160 {
        1
    } else {
        septets.div_ceil(153)
    };
    Segments {
        encoding: Encoding::Gsm7,
        units: septets,
        count,
    }
}

/// Replaces characters outside the Basic Multilingual Plane (4-byte UTF-8: most emoji), which
/// some gateways (LINK Mobility) cannot carry, by `?`. Returns how many were replaced.
pub fn without_astral(text: &str) -> (String, usize) {
    let mut replaced = 0;
    let text = text
        .chars()
        .map(|c| {
            if c.len_utf8() == 4 {
                replaced += 1;
                '?'
            } else {
                c
            }
        })
        .collect();
    (text, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norwegian_letters_stay_gsm7() {
        let s = count("Faktura fra Blåbær & Søn: å betale 500 kr");
        assert_eq!((s.encoding, s.count), (Encoding::Gsm7, 1));
        assert_eq!(count(&"æøå".repeat(53)).encoding, Encoding::Gsm7);
    }

    #[test]
    fn one_emoji_switches_to_ucs2() {
        let s = count("Faktura fra Blåbær 🫐");
        assert_eq!(s.encoding, Encoding::Ucs2);
        assert_eq!(s.units, 21, "the emoji is a surrogate pair");
    }

    #[test]
    fn segment_boundaries() {
        assert_eq!(count(&"a".repeat(160)).count, 1);
        assert_eq!(count(&"a".repeat(161)).count, 2);
        assert_eq!(count(&"a".repeat(306)).count, 2);
        assert_eq!(count(&"a".repeat(307)).count, 3);
        assert_eq!(
            count(&"€".repeat(80)).units,
            160,
            "extension characters cost two septets"
        );
        assert_eq!(count(&"ж".repeat(70)).count, 1);
        assert_eq!(count(&"ж".repeat(71)).count, 2);
    }

    #[test]
    fn astral_characters_are_replaced_not_sent_broken() {
        assert_eq!(
            without_astral("Takk 🙂 for handelen"),
            ("Takk ? for handelen".to_owned(), 1)
        );
        assert_eq!(without_astral("æøå €"), ("æøå €".to_owned(), 0));
    }
}
