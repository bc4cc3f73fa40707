//! Validated names: models, aliases, metrics, tags and actors.

use std::fmt;
use std::str::FromStr;

use smol_str::SmolStr;

use crate::error::{Error, Result};

/// Declares a string newtype whose only constructor is its checked `new`, with
/// `Display`, `FromStr`, `AsRef<str>` and serde (deserializing re-checks the rules).
///
/// The text is a [`SmolStr`]: names of up to 23 bytes (nearly all) live inline
/// with no heap allocation, longer ones behind a shared pointer, so decoding a
/// record and cloning a name allocate nothing. Deserializing checks the text
/// where the deserializer holds it (`serde_as_text!`, through `FromStr`).
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $check:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(SmolStr);

        impl $name {
            /// Checks `s` against the rules above.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                $check(&s)?;
                Ok(Self(SmolStr::from(s)))
            }

            /// Checks `s` against the rules above, without an intermediate `String`.
            fn checked(s: &str) -> Result<Self> {
                $check(s)?;
                Ok(Self(SmolStr::new(s)))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::checked(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::checked(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.into()
            }
        }

        serde_as_text!($name);

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_string! {
    /// The name of a model, unique within a registry.
    ///
    /// Rules:
    /// - 1 to 128 characters;
    /// - only lowercase ASCII letters `a-z`, digits `0-9`, `-`, `_` and `.`;
    /// - starts with a letter or a digit.
    ///
    /// Lowercase only, so that two models never collide on a case-insensitive
    /// filesystem or bucket listing; no `/`, `:`, `@` or `#`, which delimit
    /// [version references](crate::VersionRef).
    ///
    /// ```
    /// use modelreg::ModelName;
    /// assert!(ModelName::new("fraud-detector").is_ok());
    /// assert!(ModelName::new("bert_base.v2").is_ok());
    /// assert!(ModelName::new("7b-chat").is_ok());
    ///
    /// assert!(ModelName::new("").is_err());            // empty
    /// assert!(ModelName::new("Fraud").is_err());       // upper case
    /// assert!(ModelName::new("..").is_err());          // starts with '.'
    /// assert!(ModelName::new("-x").is_err());          // starts with '-'
    /// assert!(ModelName::new("team/fraud").is_err());  // '/' delimits references
    /// assert!(ModelName::new("a".repeat(129)).is_err()); // too long
    /// ```
    ModelName, check_model_name
}

impl ModelName {
    /// The name of no model: what a [`VersionRecord`](super::VersionRecord) read
    /// from a log record holds until the fold fills in its model. Never valid as
    /// input (`new` rejects the empty name).
    pub(crate) fn unset() -> ModelName {
        ModelName(SmolStr::default())
    }

    /// Whether this is [`unset`](Self::unset).
    pub(crate) fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

checked_string! {
    /// The name of an alias, a movable pointer to a version (`champion`, `challenger`).
    ///
    /// Rules:
    /// - 1 to 64 characters;
    /// - only lowercase ASCII letters, digits, `-` and `_`;
    /// - starts with a letter;
    /// - not `latest` (the newest version) nor a stage name (`none`, `staging`,
    ///   `validation`, `production`, `archived`), which references resolve from
    ///   the lifecycle.
    ///
    /// ```
    /// use modelreg::AliasName;
    /// assert!(AliasName::new("champion").is_ok());
    /// assert!(AliasName::new("canary-eu_1").is_ok());
    ///
    /// assert!(AliasName::new("latest").is_err());   // reserved
    /// assert!(AliasName::new("production").is_err()); // reserved
    /// assert!(AliasName::new("1st").is_err());      // starts with a digit
    /// assert!(AliasName::new("Champion").is_err()); // upper case
    /// assert!(AliasName::new("a.b").is_err());      // '.' not allowed
    /// ```
    AliasName, check_alias_name
}

checked_string! {
    /// The name of a metric (`accuracy`, `eval/loss`, `f1@0.5`) or of a tag key.
    ///
    /// Rules:
    /// - 1 to 128 characters;
    /// - ASCII letters, digits and `_ - . / @ :`;
    /// - starts with a letter or a digit.
    ///
    /// ```
    /// use modelreg::MetricName;
    /// assert!(MetricName::new("eval/loss").is_ok());
    /// assert!(MetricName::new("F1@0.5").is_ok());
    ///
    /// assert!(MetricName::new("").is_err());
    /// assert!(MetricName::new("loss ").is_err()); // space
    /// assert!(MetricName::new("/loss").is_err()); // starts with '/'
    /// ```
    MetricName, check_metric_name
}

/// Tag keys follow the same rules as metric names.
pub type TagKey = MetricName;

checked_string! {
    /// Who did something: a person, a service account, a CI job.
    ///
    /// Rules:
    /// - 1 to 256 characters, not only white space;
    /// - no control characters (no newlines, tabs, NUL, escape sequences).
    ///
    /// ```
    /// use modelreg::Actor;
    /// assert!(Actor::new("alice@example.com").is_ok());
    /// assert!(Actor::new("ci: nightly-train #42").is_ok());
    ///
    /// assert!(Actor::new("").is_err());
    /// assert!(Actor::new("   ").is_err());
    /// assert!(Actor::new("eve\nadmin").is_err());
    /// ```
    Actor, check_actor
}

fn check_model_name(s: &str) -> Result<()> {
    const KIND: &str = "model name";
    check_len(KIND, s, 128)?;
    let first = s.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(Error::invalid_name(
            KIND,
            s,
            "must start with a lowercase letter or a digit",
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(Error::invalid_name(
            KIND,
            s,
            format!("character {c:?} is not allowed; use a-z, 0-9, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// Names an alias cannot have: `latest` and the stage names.
pub(crate) const RESERVED_ALIASES: [&str; 6] = [
    "latest",
    "none",
    "staging",
    "validation",
    "production",
    "archived",
];

fn check_alias_name(s: &str) -> Result<()> {
    const KIND: &str = "alias";
    check_len(KIND, s, 64)?;
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(Error::invalid_name(
            KIND,
            s,
            "must start with a lowercase letter",
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')))
    {
        return Err(Error::invalid_name(
            KIND,
            s,
            format!("character {c:?} is not allowed; use a-z, 0-9, '-' and '_'"),
        ));
    }
    if RESERVED_ALIASES.contains(&s) {
        return Err(Error::invalid_name(
            KIND,
            s,
            "is reserved: 'latest' means the newest version and stage names resolve from the lifecycle",
        ));
    }
    Ok(())
}

fn check_metric_name(s: &str) -> Result<()> {
    const KIND: &str = "metric or tag name";
    check_len(KIND, s, 128)?;
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(Error::invalid_name(
            KIND,
            s,
            "must start with a letter or a digit",
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | ':')))
    {
        return Err(Error::invalid_name(
            KIND,
            s,
            format!("character {c:?} is not allowed; use letters, digits and _ - . / @ :"),
        ));
    }
    Ok(())
}

fn check_actor(s: &str) -> Result<()> {
    const KIND: &str = "actor";
    if s.trim().is_empty() {
        return Err(Error::invalid_name(KIND, s, "must not be empty"));
    }
    if s.chars().count() > 256 {
        return Err(Error::invalid_name(
            KIND,
            s,
            "must be at most 256 characters",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid_name(
            KIND,
            s,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_len(kind: &'static str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid_name(kind, s, "must not be empty"));
    }
    if s.len() > max {
        return Err(Error::invalid_name(
            kind,
            s,
            format!("must be at most {max} characters, is {}", s.len()),
        ));
    }
    Ok(())
}

/// Checks free text (descriptions, reasons, tag values): at most `max` characters,
/// no control characters other than newline and tab.
pub(crate) fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    super::limits::text(|| what.to_owned(), s, max)?;
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::invalid_input(
            what,
            "must not contain control characters other than newline and tab",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_rechecks_rules() {
        assert!(serde_json::from_str::<ModelName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<ModelName>("\"../etc\"").is_err());
        assert!(serde_json::from_str::<AliasName>("\"latest\"").is_err());
    }

    #[test]
    fn unicode_look_alikes_are_rejected() {
        // Cyrillic 'а' (U+0430) looks like Latin 'a'.
        let e = ModelName::new("fr\u{0430}ud").unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidName {
                    kind: "model name",
                    ..
                }
            ),
            "{e}"
        );
        assert!(AliasName::new("ch\u{0430}mpion").is_err());
    }

    #[test]
    fn long_input_is_truncated_in_the_error() {
        let e = ModelName::new("a".repeat(1_000_000)).unwrap_err();
        assert!(e.to_string().len() < 500);
    }
}
