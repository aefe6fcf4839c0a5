//! Value objects: parsed once at the edge, valid for ever after ("parse, don't validate").

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value was refused; the message is safe to show to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidValue {
    InvalidValue { field, reason: reason.into() }
}

/// A login name: 3-50 characters of `a-z 0-9 _ . -`, stored lower-case so that names are unique
/// regardless of case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim().to_ascii_lowercase();
        if !(3..=50).contains(&name.len()) {
            return Err(invalid("username", "must be 3 to 50 characters long"));
        }
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)) {
            return Err(invalid("username", "may only contain letters, digits, '_', '.' and '-'"));
        }
        Ok(Self(name))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}
impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address: one `@`, a non-empty local part, a dotted domain, at most 100 characters.
/// Deliverability is not checked; the shape is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let email = raw.trim().to_ascii_lowercase();
        if email.len() > 100 {
            return Err(invalid("email", "must be at most 100 characters long"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("email", "must contain '@'"));
        };
        let domain_ok =
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains("..");
        if local.is_empty() || !domain_ok || domain.contains('@') {
            return Err(invalid("email", "is not a valid e-mail address"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("email", "must not contain spaces"));
        }
        Ok(Self(email))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

/// The name of a thing people create (a dataset, a training task, a model): trimmed, 1 to
/// [`MAX_NAME_CHARS`] characters, no control characters (NUL included: PostgreSQL cannot store it, and a name
/// is shown in lists and logs, where control characters would mislead). `None` when it is not such a name.
pub fn thing_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let fits = (1..=MAX_NAME_CHARS).contains(&name.chars().count());
    (fits && !name.chars().any(char::is_control)).then(|| name.to_owned())
}

/// Longest name of a dataset, training task or model, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A name shown to people: at most 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        if name.chars().count() > 100 {
            return Err(invalid("display_name", "must be at most 100 characters long"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("display_name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for DisplayName {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<DisplayName> for String {
    fn from(value: DisplayName) -> Self {
        value.0
    }
}

/// A plain-text password that met the policy (8 to 128 characters). It never prints: `Debug` is
/// redacted and it has no `Serialize`, so it cannot reach a log line or an event.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let len = raw.chars().count();
        if len < Self::MIN_LEN {
            return Err(invalid("password", format!("must be at least {} characters long", Self::MIN_LEN)));
        }
        if len > Self::MAX_LEN {
            return Err(invalid("password", format!("must be at most {} characters long", Self::MAX_LEN)));
        }
        Ok(Self(raw.to_owned()))
    }
    /// The secret itself, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("a b c").is_err());
        assert!(Username::parse("../etc").is_err());
        assert!(Username::parse(&"x".repeat(51)).is_err());
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(Email::parse("Bob@Example.com").unwrap().as_str(), "bob@example.com");
        for bad in ["", "bob", "@example.com", "bob@", "bob@example", "bob@@example.com", "bob@.com", "b ob@x.com"] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn passwords_shorter_than_eight_characters_are_refused() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert_eq!(format!("{:?}", Password::parse("hunter2hunter2").unwrap()), "Password(***)");
    }

    proptest! {
        #[test]
        fn any_parsed_username_parses_again_to_itself(raw in "[A-Za-z0-9_.-]{3,50}") {
            let once = Username::parse(&raw).unwrap();
            prop_assert_eq!(Username::parse(once.as_str()).unwrap(), once);
        }

        #[test]
        fn thing_names_are_trimmed_bounded_and_free_of_control_characters(raw in "(\\PC|[\\x00\\x07\\n]){0,120}") {
            match thing_name(&raw) {
                Some(name) => {
                    prop_assert!(!name.chars().any(char::is_control));
                    prop_assert!((1..=MAX_NAME_CHARS).contains(&name.chars().count()));
                    prop_assert_eq!(name.as_str(), raw.trim());
                }
                None => prop_assert!(raw.trim().is_empty() || raw.trim().chars().count() > MAX_NAME_CHARS
                    || raw.chars().any(char::is_control)),
            }
        }

        #[test]
        fn display_names_never_keep_control_characters(raw in "\\PC{0,100}") {
            if let Ok(name) = DisplayName::parse(&raw) {
                prop_assert!(!name.as_str().chars().any(char::is_control));
            }
        }
    }
}
