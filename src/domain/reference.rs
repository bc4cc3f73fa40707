//! Version numbers and version references (`fraud/7`, `fraud@champion`, …).

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::lifecycle::Stage;
use super::name::{AliasName, ModelName};
use crate::digest::Digest;
use crate::error::{Error, Result, truncate};

/// The sequential number of a version within its model.
///
/// Invariants:
/// - starts at 1 for a model's first version and goes up by one per registration;
/// - never reused, even if a version is deprecated;
/// - shown as a plain decimal number, serialized as a JSON number.
///
/// ```
/// use modelreg::VersionNumber;
/// let v = VersionNumber::new(7).unwrap();
/// assert_eq!(v.get(), 7);
/// assert_eq!(v.next().get(), 8);
/// assert!(VersionNumber::new(0).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionNumber(NonZeroU64);

impl VersionNumber {
    /// The first version of every model.
    pub const FIRST: VersionNumber = VersionNumber(NonZeroU64::MIN);

    /// Wraps `n`; 0 is not a version number.
    pub fn new(n: u64) -> Result<Self> {
        NonZeroU64::new(n)
            .map(VersionNumber)
            .ok_or_else(|| Error::invalid_input("version number", "version numbers start at 1"))
    }

    /// The number as a `u64`.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The number after this one.
    pub fn next(self) -> Self {
        VersionNumber(self.0.saturating_add(1))
    }
}

impl fmt::Display for VersionNumber {
    /// Honours width and alignment (`{:>5}`), as integers do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Which version of a model a [`VersionRef`] designates.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Selector {
    /// `name/7`: by sequential number.
    Number(VersionNumber),
    /// `name:1.4.0`: by semver label.
    Semver(semver::Version),
    /// `name@latest`: the newest version that is not deprecated.
    Latest,
    /// `name@champion`: whatever the alias points at.
    Alias(AliasName),
    /// `name@production`: the version in production; `name@staging`,
    /// `name@validation`, `name@archived`: the newest version in that stage.
    Stage(Stage),
    /// `name#blake3:…`: the version whose artifact has this digest (the newest one,
    /// if several versions share an artifact).
    Digest(Digest),
}

/// A reference to one version of a model.
///
/// One grammar, parsed by [`FromStr`] and printed by [`Display`](fmt::Display), which
/// round-trip:
///
/// | form | meaning |
/// |---|---|
/// | `fraud/7` | version number 7 |
/// | `fraud:1.4.0` | the version labelled semver 1.4.0 |
/// | `fraud@latest` | the newest version that is not deprecated |
/// | `fraud@champion` | the version the alias `champion` points at |
/// | `fraud@production` | the version in production (`@staging`, `@validation`, `@archived`: the newest in that stage) |
/// | `fraud#blake3:<64 hex>` | the version whose artifact has that digest |
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::{VersionRef, Selector};
/// let r: VersionRef = "fraud/7".parse()?;
/// assert_eq!(r.model.as_str(), "fraud");
/// assert!(matches!(r.selector, Selector::Number(n) if n.get() == 7));
/// assert_eq!(r.to_string(), "fraud/7");
///
/// for ok in ["fraud:1.4.0-rc.1", "fraud@latest", "fraud@champion", "fraud@production"] {
///     assert_eq!(ok.parse::<VersionRef>()?.to_string(), ok);
/// }
///
/// // Errors say what is wrong and where.
/// let err = "fraud/07".parse::<VersionRef>().unwrap_err().to_string();
/// assert!(err.contains("at byte 6"), "{err}");
/// assert!("fraud".parse::<VersionRef>().is_err());   // no selector
/// assert!("Fraud/1".parse::<VersionRef>().is_err()); // bad model name
/// assert!("fraud/0".parse::<VersionRef>().is_err());
/// assert!("fraud:1.4".parse::<VersionRef>().is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct VersionRef {
    /// The model.
    pub model: ModelName,
    /// Which of its versions.
    pub selector: Selector,
}

impl VersionRef {
    /// A reference to version `number` of `model`.
    pub fn number(model: ModelName, number: VersionNumber) -> Self {
        VersionRef {
            model,
            selector: Selector::Number(number),
        }
    }

    /// A reference to the newest version of `model`.
    pub fn latest(model: ModelName) -> Self {
        VersionRef {
            model,
            selector: Selector::Latest,
        }
    }
}

impl fmt::Display for VersionRef {
    /// Honours width and alignment (`{:<12}`), so references line up in tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match &self.selector {
            Selector::Number(n) => format!("{}/{n}", self.model),
            Selector::Semver(v) => format!("{}:{v}", self.model),
            Selector::Latest => format!("{}@latest", self.model),
            Selector::Alias(a) => format!("{}@{a}", self.model),
            Selector::Stage(st) => format!("{}@{st}", self.model),
            Selector::Digest(d) => format!("{}#{d}", self.model),
        };
        f.pad(&text)
    }
}

impl FromStr for VersionRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let fail = |position: usize, reason: String| Error::InvalidReference {
            input: truncate(input),
            position,
            reason,
        };
        let Some(split) = input.find(['/', ':', '@', '#']) else {
            return Err(fail(
                input.len(),
                "missing version selector: add /<number>, :<semver>, @<alias>, @latest or #blake3:<hex>"
                    .into(),
            ));
        };
        let model = ModelName::new(&input[..split]).map_err(|e| fail(0, e.to_string()))?;
        let rest = &input[split + 1..];
        let at = split + 1;
        let selector = match input.as_bytes()[split] {
            b'/' => {
                if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail(at, "version number must be decimal digits".into()));
                }
                if rest.starts_with('0') {
                    return Err(fail(
                        at,
                        "version numbers start at 1 and have no leading zeros".into(),
                    ));
                }
                let n: u64 = rest
                    .parse()
                    .map_err(|_| fail(at, "version number is too large".into()))?;
                Selector::Number(VersionNumber::new(n).map_err(|e| fail(at, e.to_string()))?)
            }
            b':' => Selector::Semver(
                semver::Version::parse(rest)
                    .map_err(|e| fail(at, format!("invalid semver: {e}")))?,
            ),
            b'@' if rest == "latest" => Selector::Latest,
            b'@' if rest == "none" => {
                return Err(fail(
                    at,
                    "'none' is not a selector: reference unstaged versions by number".into(),
                ));
            }
            b'@' if rest.parse::<Stage>().is_ok() => {
                Selector::Stage(rest.parse().map_err(|e: Error| fail(at, e.to_string()))?)
            }
            b'@' => Selector::Alias(AliasName::new(rest).map_err(|e| fail(at, e.to_string()))?),
            _ => Selector::Digest(rest.parse().map_err(|e: Error| fail(at, e.to_string()))?),
        };
        Ok(VersionRef { model, selector })
    }
}

serde_as_text!(VersionRef);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digest_reference_round_trips() {
        let d = Digest::of(b"weights");
        let s = format!("fraud#{d}");
        let r: VersionRef = s.parse().unwrap();
        assert_eq!(r.selector, Selector::Digest(d));
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn error_positions_point_at_the_selector() {
        for (input, pos) in [
            ("fraud/x", 6),
            ("fraud:1.x", 6),
            ("fraud@Bad", 6),
            ("fraud#sha256:00", 6),
            ("BAD/1", 0),
            ("fraud", 5),
        ] {
            match input.parse::<VersionRef>() {
                Err(Error::InvalidReference { position, .. }) => {
                    assert_eq!(position, pos, "{input}")
                }
                other => panic!("{input}: expected InvalidReference, got {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(
            model in "[a-z0-9][a-z0-9._-]{0,20}",
            n in 1u64..u64::MAX,
            major in 0u64..1000, minor in 0u64..1000, patch in 0u64..1000,
            alias in "[a-z][a-z0-9_-]{0,10}",
            kind in 0u8..6,
            stage in 1usize..5,
        ) {
            prop_assume!(AliasName::new(alias.clone()).is_ok());
            let model = ModelName::new(model).unwrap();
            let selector = match kind {
                0 => Selector::Number(VersionNumber::new(n).unwrap()),
                1 => Selector::Semver(semver::Version::new(major, minor, patch)),
                2 => Selector::Latest,
                3 => Selector::Alias(AliasName::new(alias).unwrap()),
                4 => Selector::Stage(Stage::ALL[stage]),
                _ => Selector::Digest(Digest::of(&n.to_le_bytes())),
            };
            let r = VersionRef { model, selector };
            prop_assert_eq!(r.to_string().parse::<VersionRef>().unwrap(), r);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<VersionRef>();
        }
    }
}

#[cfg(test)]
mod display_width {
    use super::*;

    #[test]
    fn references_and_numbers_honour_width() {
        let r: VersionRef = "fraud/7".parse().expect("reference");
        assert_eq!(format!("[{r:<9}]"), "[fraud/7  ]");
        assert_eq!(
            format!("[{:>3}]", VersionNumber::new(7).expect("number")),
            "[  7]"
        );
    }
}
