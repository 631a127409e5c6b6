//! Console password hashes: PHC strings of argon2id (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`),
//! made by `postbud console hash-password` and checked at login.
//!
//! The RustCrypto `argon2` crate does the work: pure Rust (no OpenSSL), maintained, and it
//! reads and writes the PHC format itself, so no parsing is written here.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

/// The only algorithm accepted: argon2id resists both GPU and side-channel attacks (RFC 9106's
/// first recommendation); argon2i/argon2d strings are refused rather than silently accepted.
pub const ALGORITHM: &str = "argon2id";

/// Upper bound on the memory cost a configured hash may ask for (KiB): a hash is configuration,
/// but a typo of `m=1945600` would make every login allocate 2 GiB.
const MAX_MEMORY_KIB: u32 = 1 << 20;

/// Why a string is not a usable password hash. Never holds the string itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadHash(String);

/// Hashes `password` with argon2id and the crate's default (OWASP) parameters, under a fresh
/// random salt, as a PHC string.
pub fn hash(password: &str) -> Result<String, BadHash> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| BadHash(format!("no random salt: {e}")))?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| BadHash(format!("hashing failed: {e}")))
}

/// Checks that `phc` is an argon2id PHC string with a salt, a hash and sane parameters.
pub fn check(phc: &str) -> Result<(), BadHash> {
    let parsed = PasswordHash::new(phc).map_err(|e| {
        BadHash(format!(
            "not a PHC string ({e}); make one with `postbud console hash-password`"
        ))
    })?;
    if parsed.algorithm.as_str() != ALGORITHM {
        return Err(BadHash(format!(
            "algorithm `{}` is not {ALGORITHM}; make one with `postbud console hash-password`",
            parsed.algorithm
        )));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(BadHash("the PHC string has no salt or no hash".into()));
    }
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| BadHash(format!("its parameters are not argon2's: {e}")))?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(BadHash(format!(
            "memory cost m={} KiB is more than {MAX_MEMORY_KIB} KiB",
            params.m_cost()
        )));
    }
    Ok(())
}

/// Whether `password` matches `phc` (an argon2id PHC string); false for anything else. The
/// comparison of the derived hash is constant-time in the `argon2` crate.
pub fn verify(password: &str, phc: &str) -> bool {
    if check(phc).is_err() {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        check(&phc).expect("valid");
        assert!(verify("correct horse", &phc));
        assert!(!verify("correct horsf", &phc));
        assert!(!verify("", &phc));
        // A fresh salt each time.
        assert_ne!(phc, hash("correct horse").expect("hash"));
    }

    #[test]
    fn other_strings_are_refused() {
        let phc = hash("x").expect("hash");
        for bad in [
            "",
            "hunter2",
            &phc.replace("argon2id", "argon2i"),
            &phc.replace("m=19456", "m=4194304"),
            "$argon2id$v=19$m=19456,t=2,p=1",
        ] {
            assert!(check(bad).is_err(), "{bad}");
            assert!(!verify("x", bad), "{bad}");
        }
        let tampered = format!("{}A", &phc[..phc.len() - 1]);
        assert!(!verify("x", &tampered) || tampered == phc);
    }
}
