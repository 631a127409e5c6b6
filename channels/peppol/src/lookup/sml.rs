//! The SML name of a participant: since 2025-11 the Peppol SML publishes each participant under
//! `lowercase(base32(sha256(lowercase(value))))`, without the `=` padding, followed by
//! `.iso6523-actorid-upis.` and the zone, where `value` is the whole `scheme:value` id
//! (`0192:745707327`). The MD5 `B-…` names are gone and never asked.

use postbud_ubl::identifiers::ParticipantId;
use sha2::{Digest as _, Sha256};

/// The participant identifier scheme the SML names sit under.
pub const IDENTIFIER_SCHEME: &str = "iso6523-actorid-upis";

/// The hashed label of a raw participant value (`9915:test`), without the zone.
pub fn label(value: &str) -> String {
    let digest = Sha256::digest(value.to_lowercase().as_bytes());
    base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &digest).to_ascii_lowercase()
}

/// The SML name of a raw participant value under `zone` (no trailing dot).
pub fn name_of_value(value: &str, zone: &str) -> String {
    format!(
        "{}.{IDENTIFIER_SCHEME}.{}",
        label(value),
        zone.trim_end_matches('.')
    )
}

/// The SML name of `participant` under `zone` (no trailing dot).
pub fn name(participant: &ParticipantId, zone: &str) -> String {
    name_of_value(&participant.to_string(), zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_ZONE: &str = "participant.sml.test.tech.peppol.org";

    /// The vectors of peppol-commons' `PeppolNaptrURLProviderTest`.
    #[test]
    fn the_published_vectors() {
        for (value, hash) in [
            (
                "9915:test",
                "eh5boavaktmbgzyh2a63dz4qov33fvp5nsdvqklucfraayoodw6a",
            ),
            (
                "0088:1234567890123",
                "sjsyvccmqyjxk3weuapffq4x3umcrf4qryherj4vovhmonh7gccq",
            ),
            (
                "0088:123abc",
                "y7dzfxaf3d4cjz4kcgrxtec6twvcga4ky7zwa5boif6mswd4tdrq",
            ),
            (
                "0088:123ABC",
                "y7dzfxaf3d4cjz4kcgrxtec6twvcga4ky7zwa5boif6mswd4tdrq",
            ),
            (
                "0010:5798000000001",
                "xukhfqabqziki3ykvr2fhr4snfa3pf5vpq6k4tonv3lmvsy5arvq",
            ),
        ] {
            assert_eq!(
                name_of_value(value, TEST_ZONE),
                format!("{hash}.iso6523-actorid-upis.{TEST_ZONE}"),
                "{value}"
            );
        }
    }

    #[test]
    fn a_participant_id_hashes_its_display_form() {
        let id: ParticipantId = "0192:745707327".parse().expect("a valid id");
        assert_eq!(
            name(&id, "participant.sml.prod.tech.peppol.org."),
            "p2lqn4yaruwgm5r73vjz2vxqc3yv36s2huzmjyzrpxc6qrowp2ia.iso6523-actorid-upis.participant.sml.prod.tech.peppol.org"
        );
    }
}
