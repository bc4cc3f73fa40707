//! Record framing: how events and checkpoints are sealed with a checksum.
//!
//! A sealed record is its compact JSON on one line, then one line holding the
//! BLAKE3 digest of that JSON:
//!
//! ```text
//! {"format":1,"seq":2,…}\n
//! blake3:<64 hex>\n
//! ```
//!
//! Compact JSON never contains a raw newline (newlines inside strings are
//! escaped), so the JSON is everything before the last line (found from the
//! end, so a 36 MiB checkpoint is not scanned for it). A record whose
//! checksum is missing or does not match its JSON is [`Error::Corrupt`]: a flipped
//! bit that still parses as JSON (a metric `0.91` become `0.81`) is caught too.
//! Manifests need no frame: they are stored under their own digest.

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Seals `json` (compact, without newlines) with its checksum line.
pub fn seal(mut json: Vec<u8>) -> Vec<u8> {
    let digest = Digest::of(&json);
    json.push(b'\n');
    json.extend_from_slice(digest.to_string().as_bytes());
    json.push(b'\n');
    json
}

/// Checks the checksum of a sealed record and returns its JSON. `record` names
/// the record in errors, e.g. `event 3 of model 'fraud'`.
pub fn unseal(record: impl Fn() -> String, bytes: &[u8]) -> Result<&[u8]> {
    // The checksum line is the last one, and JSON as we write it has no raw
    // newline: look from the end, not through the whole record.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let Some(split) = body.iter().rposition(|b| *b == b'\n') else {
        return Err(Error::corrupt(
            record(),
            "no checksum line: truncated or not a record",
        ));
    };
    let (json, rest) = (&bytes[..split], &bytes[split + 1..]);
    let line = rest.strip_suffix(b"\n").unwrap_or(rest);
    let expected: Digest = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| Error::corrupt(record(), "the checksum line is damaged"))?;
    let actual = Digest::of(json);
    if actual != expected {
        return Err(Error::corrupt(
            record(),
            format!("checksum mismatch: the record says {expected}, its bytes hash to {actual}"),
        ));
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> String {
        "record".into()
    }

    #[test]
    fn round_trips_and_detects_every_single_byte_flip() {
        let sealed = seal(br#"{"a":1,"b":"x\ny"}"#.to_vec());
        assert_eq!(unseal(name, &sealed).unwrap(), br#"{"a":1,"b":"x\ny"}"#);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(unseal(name, &bad), Err(Error::Corrupt { .. })),
                "flip at byte {i} not detected"
            );
        }
    }

    #[test]
    fn truncation_and_missing_checksum_are_corrupt() {
        let sealed = seal(b"{}".to_vec());
        for n in 0..sealed.len() - 1 {
            assert!(unseal(name, &sealed[..n]).is_err(), "truncated to {n}");
        }
        assert!(unseal(name, b"{}").is_err());
    }
}
