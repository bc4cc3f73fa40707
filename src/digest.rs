//! Content digests: the identity of every blob, file and artifact ([`Digest`],
//! BLAKE3), and the SHA-256 recorded beside it for formats that name files by
//! SHA-256 ([`Sha256`]).

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
        decode_hex32(hex)
            .map(Digest)
            .map_err(|reason| Error::invalid_name("digest", hex, reason))
    }
}

/// Decodes 64 hex digits (either case) into 32 bytes, or says what is wrong.
fn decode_hex32(hex: &str) -> std::result::Result<[u8; 32], &'static str> {
    if hex.len() != 64 {
        return Err("expected 64 hexadecimal digits");
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
        return Err("expected only hexadecimal digits 0-9, a-f");
    }
    Ok(out)
}

/// Writes 32 bytes as 64 lowercase hex digits, without allocating (a manifest
/// writes one per file).
fn write_hex32(bytes: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0F)];
    }
    f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
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

/// A SHA-256 digest of a file's bytes, recorded beside its BLAKE3 [`Digest`].
///
/// It is not an identity in this crate: blobs are keyed, and versions named,
/// by BLAKE3. It is there for the formats that name a file by its SHA-256
/// (Hugging Face's `X-Linked-Etag`, OCI descriptors, OpenSSF model signing),
/// so they need not read the file again. Registration computes it in the same
/// pass over the bytes as the BLAKE3 digest
/// ([`ManifestEntry::sha256`](crate::ManifestEntry::sha256)).
///
/// Invariants:
/// - exactly 32 bytes, plain SHA-256 (FIPS 180-4; the value `sha256sum` prints);
/// - shown as 64 lowercase hexadecimal digits with no prefix, and parsed from
///   64 hexadecimal digits (upper-case hex is accepted on input and normalised;
///   a `sha256:` prefix is not);
/// - serialized with serde as that string.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::Sha256;
/// let s = Sha256::of(b"hello");
/// assert_eq!(s.to_string(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
/// assert_eq!(s.to_hex(), s.to_string());
/// assert_eq!(s.to_string().parse::<Sha256>()?, s);
/// assert_eq!(s.as_bytes()[0], 0x2c);
/// assert_eq!(
///     Sha256::of(b"").to_hex(),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
///
/// // Rejected: a prefix, wrong length, not hex.
/// assert!("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".parse::<Sha256>().is_err());
/// assert!("2cf24dba".parse::<Sha256>().is_err());
/// assert!("zzf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".parse::<Sha256>().is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// Wraps 32 raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256(bytes)
    }

    /// The 32 raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits (what `sha256sum` prints); the same as its
    /// `Display`.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl From<sha2::Sha256> for Sha256 {
    fn from(hasher: sha2::Sha256) -> Self {
        use sha2::Digest as _;
        Sha256(hasher.finalize().into())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex32(&self.0, f)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        decode_hex32(s)
            .map(Sha256)
            .map_err(|reason| Error::invalid_name("sha256", s, reason))
    }
}

serde_as_text!(Sha256);

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
    fn sha256_matches_the_standard_vectors_and_round_trips() {
        // FIPS 180-4 examples: one block, and two blocks.
        assert_eq!(
            Sha256::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Sha256::of(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let s = Sha256::of(b"x");
        let upper = s.to_hex().to_ascii_uppercase();
        assert_eq!(upper.parse::<Sha256>().unwrap(), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", s.to_hex()));
        assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Sha256>("\"blake3:00\"").is_err());
        assert_eq!(format!("{s:?}"), format!("Sha256({s})"));
    }

    #[test]
    fn serde_round_trip_uses_text_form() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
