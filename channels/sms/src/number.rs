//! Phone numbers to E.164 with libphonenumber's rules (the `phonenumber` crate).

use phonenumber::{Mode, country};

/// `+4791234567` for `91234567` in region `NO`; an error says why a number is not valid.
pub fn e164(raw: &str, default_region: country::Id) -> Result<String, String> {
    let number = phonenumber::parse(Some(default_region), raw)
        .map_err(|e| format!("`{raw}` is not a phone number: {e}"))?;
    if !phonenumber::is_valid(&number) {
        return Err(format!(
            "`{raw}` is not a valid phone number (read with default region {default_region:?})"
        ));
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_numbers_get_the_default_region() {
        assert_eq!(e164("91234567", country::Id::NO), Ok("+4791234567".into()));
        assert_eq!(
            e164("912 34 567", country::Id::NO),
            Ok("+4791234567".into())
        );
        assert_eq!(
            e164("+46 70 123 45 67", country::Id::NO),
            Ok("+46701234567".into())
        );
        assert_eq!(
            e164("0047 912 34 567", country::Id::SE).as_deref(),
            Ok("+4791234567")
        );
    }

    #[test]
    fn invalid_numbers_are_refused_with_the_reason() {
        assert!(e164("12", country::Id::NO).unwrap_err().contains("`12`"));
        assert!(e164("not a number", country::Id::NO).is_err());
    }
}
