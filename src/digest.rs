//! Content digests: the identity of every blob, file and artifact.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A BLAKE3-256 content digest.
///
/// Invariants:
/// - exactly 32 bytes, computed with unkeyed BLAKE3 (the same value `b3sum` prints);
/// - shown and parsed as `blake3:` followed by 64 lowercase hexadecimal digits
///   (upper-case hex is accepted on input and normalised);
/// - serialized with serde as that string.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::Digest;
/// let d = Digest::of(b"hello");
/// assert_eq!(d.to_string(), "blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f");
/// assert_eq!(d.to_string().parse::<Digest>()?, d);
///
/// // Rejected: another algorithm, wrong length, not hex.
/// assert!("sha256:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f".parse::<Digest>().is_err());
/// assert!("blake3:ea8f".parse::<Digest>().is_err());
/// assert!("blake3:zz8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f".parse::<Digest>().is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// The algorithm tag in a digest's text form.
const PREFIX: &str = "blake3:";

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        // Large inputs (checkpoints) are hashed on every core.
        if bytes.len() >= 4 << 20 {
            let mut hasher = blake3::Hasher::new();
            hasher.update_rayon(bytes);
            return Digest(*hasher.finalize().as_bytes());
        }
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The digest and length of the file at `path`, as the registry computes it
    /// (the value `b3sum` prints).
    ///
    /// Reads the file through small buffers and hashes on all cores, so memory
    /// stays bounded whatever the file size. Blocks: from async code, call it
    /// through `tokio::task::spawn_blocking`.
    ///
    /// ```
    /// # fn main() -> modelreg::Result<()> {
    /// use modelreg::Digest;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("weights.bin");
    /// std::fs::write(&path, b"hello").unwrap();
    /// assert_eq!(Digest::of_file(&path)?, (Digest::of(b"hello"), 5));
    /// # Ok(()) }
    /// ```
    pub fn of_file(path: impl AsRef<std::path::Path>) -> Result<(Self, u64)> {
        let path = path.as_ref();
        crate::hashing::hash_file(path, None).map_err(|e| Error::io(path, e))
    }

    /// Wraps 32 raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The 32 raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `blake3:` prefix (what `b3sum` prints).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex digits without the `blake3:` prefix.
    pub fn from_hex(hex: &str) -> Result<Self> {
        let bad = |reason: &str| Error::invalid_name("digest", hex, reason);
        if hex.len() != 64 {
            return Err(bad("expected 64 hexadecimal digits"));
        }
        // One pass without branches per digit (a checkpoint holds a digest per
        // version): a table maps each byte to its value, or to 0xFF if it is
        // not a hex digit, and the high bits of all values say whether any was.
        let mut out = [0u8; 32];
        let mut invalid = 0u8;
        for (o, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            invalid |= hi | lo;
            *o = (hi << 4) | (lo & 0x0F);
        }
        if invalid & 0xF0 != 0 {
            return Err(bad("expected only hexadecimal digits 0-9, a-f"));
        }
        Ok(Digest(out))
    }
}

/// The value of each hex digit (either case); 0xFF for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xFFu8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0xFF,
        };
        b += 1;
    }
    table
};

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.strip_prefix(PREFIX) {
            Some(hex) => Digest::from_hex(hex).map_err(|_| {
                Error::invalid_name("digest", s, "expected 'blake3:' and 64 hexadecimal digits")
            }),
            None => Err(Error::invalid_name(
                "digest",
                s,
                "expected the algorithm prefix 'blake3:'",
            )),
        }
    }
}

serde_as_text!(Digest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_case_hex_is_normalised() {
        let d = Digest::of(b"x");
        let upper = format!("blake3:{}", d.to_hex().to_ascii_uppercase());
        assert_eq!(upper.parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn every_byte_that_is_not_a_hex_digit_is_rejected_anywhere() {
        let hex = Digest::of(b"x").to_hex();
        for position in [0, 1, 31, 62, 63] {
            for b in 0..=255u8 {
                let mut bytes = hex.clone().into_bytes();
                bytes[position] = b;
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                let ok = Digest::from_hex(&text).is_ok();
                assert_eq!(ok, b.is_ascii_hexdigit(), "byte {b:#04x} at {position}");
                if ok {
                    let value = u8::from_str_radix(&text[position..=position], 16).unwrap();
                    let byte = Digest::from_hex(&text).unwrap().0[position / 2];
                    let nibble = if position % 2 == 0 {
                        byte >> 4
                    } else {
                        byte & 0x0F
                    };
                    assert_eq!(nibble, value);
                }
            }
        }
    }

    #[test]
    fn serde_round_trip_uses_text_form() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
