//! UID syntax per PS3.5 §9.1: at most 64 characters, digits and dots only,
//! non-empty components, no leading zero in a multi-digit component.

/// Why a UID is not valid (no echo of the value: it may identify a patient's study).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UidProblem {
    Empty,
    TooLong(usize),
    BadCharacter,
    EmptyComponent,
    LeadingZero,
}

impl std::fmt::Display for UidProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UidProblem::Empty => f.write_str("is empty"),
            UidProblem::TooLong(n) => write!(f, "has {n} characters (at most 64)"),
            UidProblem::BadCharacter => f.write_str("has characters other than digits and dots"),
            UidProblem::EmptyComponent => f.write_str("has an empty component"),
            UidProblem::LeadingZero => f.write_str("has a component with a leading zero"),
        }
    }
}

/// Check a UID's syntax (trailing NUL / space padding must already be stripped).
pub fn check_uid(uid: &str) -> Result<(), UidProblem> {
    if uid.is_empty() {
        return Err(UidProblem::Empty);
    }
    if uid.len() > 64 {
        return Err(UidProblem::TooLong(uid.len()));
    }
    if !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(UidProblem::BadCharacter);
    }
    for comp in uid.split('.') {
        if comp.is_empty() {
            return Err(UidProblem::EmptyComponent);
        }
        if comp.len() > 1 && comp.starts_with('0') {
            return Err(UidProblem::LeadingZero);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_uids() {
        for u in ["1.2.840.10008.1.2", "2.25.0", "1.0.3", "1"] {
            assert_eq!(check_uid(u), Ok(()), "{u}");
        }
    }

    #[test]
    fn invalid_uids() {
        assert_eq!(check_uid(""), Err(UidProblem::Empty));
        assert_eq!(check_uid(&"1.".repeat(32)), Err(UidProblem::EmptyComponent));
        assert_eq!(
            check_uid(&format!("1.{}", "2".repeat(63))),
            Err(UidProblem::TooLong(65))
        );
        assert_eq!(check_uid("../../etc/passwd"), Err(UidProblem::BadCharacter));
        assert_eq!(check_uid("1..2"), Err(UidProblem::EmptyComponent));
        assert_eq!(check_uid("1.2."), Err(UidProblem::EmptyComponent));
        assert_eq!(check_uid("1.02.3"), Err(UidProblem::LeadingZero));
        assert_eq!(check_uid("1.2.a"), Err(UidProblem::BadCharacter));
    }
}
