//! The business identifiers a Peppol participant is found by, checked as the Peppol rules check
//! them (`PEPPOL-COMMON-R040`…`R050`, `NO-R-001`): a Norwegian organisation number (ICD 0192,
//! mod 11), a Swedish one (0007, Luhn), a Finnish OVT code (0216, `0037` + business id with its
//! mod-11 check), a Danish CVR number (0184, mod 11) and a GLN (0088, mod 10).
//!
//! An access point validates before it sends and refuses an invoice whose identifiers fail, so
//! Postbud checks them first: an invalid one is a reason not to route over Peppol, given before
//! anything is captured.

use std::fmt;

/// A Peppol participant identifier under `iso6523-actorid-upis`: an ICD scheme and a value
/// that passed that scheme's check. Displayed as `0192:745707327`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParticipantId {
    scheme: Scheme,
    value: String,
}

/// The participant identifier schemes (ICD codes) Postbud checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// 0192, Norway: organisation number (Enhetsregisteret), 9 digits, mod 11.
    NoOrg,
    /// 0007, Sweden: organisation number, 10 digits, Luhn.
    SeOrgnr,
    /// 0216, Finland: OVT code, `0037` + the 8-digit business id + an optional suffix.
    FiOvt,
    /// 0184, Denmark: CVR number, 8 digits, mod 11.
    DkCvr,
    /// 0088: GS1 Global Location Number, 13 digits, mod 10.
    Gln,
}

impl Scheme {
    /// The ICD code (`0192`).
    pub fn icd(self) -> &'static str {
        match self {
            Scheme::NoOrg => "0192",
            Scheme::SeOrgnr => "0007",
            Scheme::FiOvt => "0216",
            Scheme::DkCvr => "0184",
            Scheme::Gln => "0088",
        }
    }

    /// The scheme of an ICD code, when Postbud checks it.
    pub fn from_icd(icd: &str) -> Option<Scheme> {
        [
            Scheme::NoOrg,
            Scheme::SeOrgnr,
            Scheme::FiOvt,
            Scheme::DkCvr,
            Scheme::Gln,
        ]
        .into_iter()
        .find(|s| s.icd() == icd)
    }

    /// The scheme a business in `country` (ISO 3166 alpha-2) is registered under.
    pub fn of_country(country: &str) -> Option<Scheme> {
        match country.to_ascii_uppercase().as_str() {
            "NO" => Some(Scheme::NoOrg),
            "SE" => Some(Scheme::SeOrgnr),
            "FI" => Some(Scheme::FiOvt),
            "DK" => Some(Scheme::DkCvr),
            _ => None,
        }
    }

    /// What the number is called, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Scheme::NoOrg => "Norwegian organisation number",
            Scheme::SeOrgnr => "Swedish organisation number",
            Scheme::FiOvt => "Finnish OVT code",
            Scheme::DkCvr => "Danish CVR number",
            Scheme::Gln => "GLN",
        }
    }
}

/// Why an identifier cannot name a Peppol participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierError(String);

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentifierError {}

impl ParticipantId {
    /// A participant id checked under `scheme`. Spaces are ignored; a Swedish number may carry
    /// its hyphen (`212000-0787`), a Finnish one may be the business id (`1234567-1`) or the
    /// OVT code (`003712345671`).
    pub fn new(scheme: Scheme, number: &str) -> Result<ParticipantId, IdentifierError> {
        let compact: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |why: &str| {
            Err(IdentifierError(format!(
                "`{}` is not a valid {}: {why}",
                number.escape_debug(),
                scheme.describe()
            )))
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let value = match scheme {
            Scheme::NoOrg => {
                if !digits(&compact, 9) {
                    return bad("expected 9 digits");
                }
                if !norwegian_mod11(&compact) {
                    return bad("its check digit fails the mod-11 check");
                }
                compact
            }
            Scheme::SeOrgnr => {
                let plain = match compact.split_once('-') {
                    Some((a, b)) if a.len() == 6 && b.len() == 4 => format!("{a}{b}"),
                    _ => compact,
                };
                if !digits(&plain, 10) {
                    return bad("expected 10 digits");
                }
                if !luhn(&plain) {
                    return bad("its check digit fails the Luhn check");
                }
                plain
            }
            Scheme::FiOvt => {
                let (business, suffix) = match compact.split_once('-') {
                    Some((a, b)) if a.len() == 7 && b.len() == 1 => {
                        (format!("{a}{b}"), String::new())
                    }
                    _ => match compact.strip_prefix("0037") {
                        Some(rest) if rest.len() >= 8 => {
                            (rest[..8].to_owned(), rest[8..].to_owned())
                        }
                        _ => {
                            return bad(
                                "expected a business id (1234567-1) or an OVT code (0037 and 8 digits)",
                            );
                        }
                    },
                };
                if !digits(&business, 8) {
                    return bad("the business id must be 8 digits");
                }
                if suffix.len() > 5 || !suffix.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return bad("an OVT suffix is at most 5 letters or digits");
                }
                if !finnish_business_id(&business) {
                    return bad("the business id's check digit fails its mod-11 check");
                }
                format!("0037{business}{suffix}")
            }
            Scheme::DkCvr => {
                if !digits(&compact, 8) || compact.starts_with('0') {
                    return bad("expected 8 digits, the first not 0");
                }
                if !danish_mod11(&compact) {
                    return bad("it fails the CVR mod-11 check");
                }
                compact
            }
            Scheme::Gln => {
                if !digits(&compact, 13) {
                    return bad("expected 13 digits");
                }
                if !gs1_mod10(&compact) {
                    return bad("its check digit fails the GS1 mod-10 check");
                }
                compact
            }
        };
        Ok(ParticipantId { scheme, value })
    }

    /// A business's participant id from its country and registration number: `NO` and
    /// `745707327` give `0192:745707327`.
    pub fn of_business(country: &str, number: &str) -> Result<ParticipantId, IdentifierError> {
        let scheme = Scheme::of_country(country).ok_or_else(|| {
            IdentifierError(format!(
                "no Peppol identifier scheme for businesses in `{}` (Postbud knows NO, SE, FI and DK)",
                country.escape_debug()
            ))
        })?;
        ParticipantId::new(scheme, number)
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The value under the scheme (`745707327`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl std::str::FromStr for ParticipantId {
    type Err = IdentifierError;

    /// `0192:745707327` (an `iso6523-actorid-upis::` prefix is allowed).
    fn from_str(text: &str) -> Result<Self, IdentifierError> {
        let text = text.trim();
        let text = text.strip_prefix("iso6523-actorid-upis::").unwrap_or(text);
        let (icd, value) = text.split_once(':').ok_or_else(|| {
            IdentifierError(format!(
                "`{}` is not a participant id: expected ICD:value, e.g. 0192:745707327",
                text.escape_debug()
            ))
        })?;
        let scheme = Scheme::from_icd(icd).ok_or_else(|| {
            IdentifierError(format!(
                "participant id scheme `{}` is not one Postbud checks (0192, 0007, 0216, 0184, 0088)",
                icd.escape_debug()
            ))
        })?;
        ParticipantId::new(scheme, value)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme.icd(), self.value)
    }
}

fn weighted(digits: &str, weights: &[u32]) -> u32 {
    digits
        .bytes()
        .zip(weights)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum()
}

fn last_digit(digits: &str) -> u32 {
    u32::from(digits.as_bytes()[digits.len() - 1] - b'0')
}

/// Brønnøysund's mod 11: weights 3,2,7,6,5,4,3,2; a remainder of 1 has no valid number.
fn norwegian_mod11(digits: &str) -> bool {
    let check = match 11 - weighted(digits, &[3, 2, 7, 6, 5, 4, 3, 2]) % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == last_digit(digits)
}

/// Luhn over all digits, the check digit included.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Y-tunnus: weights 7,9,10,5,8,4,2; remainder 0 gives 0, 1 has no valid number.
fn finnish_business_id(digits: &str) -> bool {
    let check = match weighted(digits, &[7, 9, 10, 5, 8, 4, 2]) % 11 {
        0 => 0,
        1 => return false,
        r => 11 - r,
    };
    check == last_digit(digits)
}

/// CVR: weights 2,7,6,5,4,3,2,1 over all eight digits; the sum is a multiple of 11.
fn danish_mod11(digits: &str) -> bool {
    weighted(digits, &[2, 7, 6, 5, 4, 3, 2, 1]).is_multiple_of(11)
}

/// GS1: weights 3,1,3,… from the digit left of the check digit.
fn gs1_mod10(digits: &str) -> bool {
    let body = &digits[..digits.len() - 1];
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == last_digit(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(scheme: Scheme, number: &str) -> String {
        ParticipantId::new(scheme, number)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string()
    }

    fn refused(scheme: Scheme, number: &str) -> String {
        ParticipantId::new(scheme, number)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn norwegian_numbers_are_checked_mod_11() {
        assert_eq!(ok(Scheme::NoOrg, "745707327"), "0192:745707327");
        assert_eq!(ok(Scheme::NoOrg, "745 707 327"), "0192:745707327");
        // Brønnøysundregistrene's own number and Equinor's.
        assert_eq!(ok(Scheme::NoOrg, "974760673"), "0192:974760673");
        assert_eq!(ok(Scheme::NoOrg, "923609016"), "0192:923609016");
        // The numbers the project's examples once used: both fail the check.
        assert!(refused(Scheme::NoOrg, "987654321").contains("mod-11"));
        assert!(refused(Scheme::NoOrg, "912345678").contains("mod-11"));
        assert!(refused(Scheme::NoOrg, "74570732").contains("9 digits"));
        assert!(refused(Scheme::NoOrg, "NO745707327MVA").contains("9 digits"));
    }

    #[test]
    fn swedish_numbers_are_checked_by_luhn() {
        assert_eq!(ok(Scheme::SeOrgnr, "2120000787"), "0007:2120000787");
        assert_eq!(ok(Scheme::SeOrgnr, "212000-0787"), "0007:2120000787");
        assert_eq!(ok(Scheme::SeOrgnr, "5560360793"), "0007:5560360793");
        assert!(refused(Scheme::SeOrgnr, "2120000788").contains("Luhn"));
    }

    #[test]
    fn finnish_ovt_codes_carry_a_checked_business_id() {
        // Nokia Oyj: 0112038-9.
        assert_eq!(ok(Scheme::FiOvt, "0112038-9"), "0216:003701120389");
        assert_eq!(ok(Scheme::FiOvt, "003701120389"), "0216:003701120389");
        assert_eq!(
            ok(Scheme::FiOvt, "00370112038900100"),
            "0216:00370112038900100"
        );
        assert!(refused(Scheme::FiOvt, "0112038-8").contains("mod-11"));
        assert!(refused(Scheme::FiOvt, "003701120389001234").contains("suffix"));
        assert!(refused(Scheme::FiOvt, "12345678").contains("OVT"));
    }

    #[test]
    fn danish_cvr_numbers_are_checked_mod_11() {
        // Novo Nordisk A/S: 24256790.
        assert_eq!(ok(Scheme::DkCvr, "24256790"), "0184:24256790");
        assert!(refused(Scheme::DkCvr, "24256791").contains("mod-11"));
        assert!(refused(Scheme::DkCvr, "04256790").contains("not 0"));
    }

    #[test]
    fn glns_are_checked_mod_10() {
        assert_eq!(ok(Scheme::Gln, "5790000435975"), "0088:5790000435975");
        assert!(refused(Scheme::Gln, "5790000435976").contains("mod-10"));
    }

    #[test]
    fn participant_ids_parse_with_or_without_the_scheme_prefix() {
        let id: ParticipantId = "iso6523-actorid-upis::0192:745707327"
            .parse()
            .expect("parses");
        assert_eq!(id.to_string(), "0192:745707327");
        assert_eq!(id.scheme(), Scheme::NoOrg);
        assert!("0192:987654321".parse::<ParticipantId>().is_err());
        assert!(
            "9915:test"
                .parse::<ParticipantId>()
                .unwrap_err()
                .to_string()
                .contains("9915")
        );
        assert!(
            "745707327"
                .parse::<ParticipantId>()
                .unwrap_err()
                .to_string()
                .contains("ICD:value")
        );
        assert_eq!(
            ParticipantId::of_business("se", "2120000787")
                .expect("valid")
                .to_string(),
            "0007:2120000787"
        );
        assert!(
            ParticipantId::of_business("DE", "123")
                .unwrap_err()
                .to_string()
                .contains("NO, SE, FI and DK")
        );
    }
}
