//! Event archives and the raw tail: what lets the audit trail be read
//! backwards without one store request per event.
//!
//! - The **tail**: each model slot keeps the raw records of the newest
//!   events it folded or appended (at most [`Tail::keep`] of them), so the
//!   newest events of a warm model cost no request at all.
//! - **Archives**: checkpoint parts (`MetadataStore::put_checkpoint_part`)
//!   holding consecutive raw records (DEFLATE-compressed), named by their range only:
//!   `events-<first, 20 digits>-<last, 20 digits>`. Ranges are *blocks* of
//!   [`BLOCK`] events (`k·BLOCK+1 ..= (k+1)·BLOCK`), written once complete, plus
//!   at each checkpoint the *partial* block from its block's start to the
//!   checkpoint's `seq`. A reader computes every name it needs (no listing,
//!   nothing in the checkpoint head) and verifies what it reads: the digest
//!   the archive carries over its records, their count and lengths, and each
//!   record decoding as the event at its position. Anything missing or wrong
//!   is read from the log's records instead, so a damaged archive costs
//!   requests, never a wrong event.
//!
//! Archive names never parse as segment or patch names (`<20 digits>-<64 hex>`),
//! and an archive is never superseded: records never change.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::domain::ModelName;
use crate::error::{Error, Result};
use crate::store::{LogRecord, MetadataStore};

/// Events per archive block.
pub(crate) const BLOCK: u64 = 1024;

/// The format of the archives this build writes: a header line, then the
/// records' bytes concatenated and compressed with DEFLATE (raw, no zlib
/// wrapper). Format 1 (read still) had the records uncompressed; records are
/// JSON and compress about 8×, which keeps what a checkpoint writes, its
/// archives included, under twice the bytes of the events it covers.
const ARCHIVE_FORMAT: u32 = 2;

/// Format 1: the records follow the header uncompressed.
const ARCHIVE_FORMAT_RAW: u32 = 1;

/// The DEFLATE level archives are written with: the fastest (an archive is
/// written with each checkpoint; level 6 gains ~18 % for ~3× the time).
const DEFLATE_LEVEL: u8 = 1;

/// The most bytes a record of an archive may have: an event's limit and room
/// for its envelope. Bounds what a damaged or hostile archive can make a
/// reader inflate.
const MAX_RECORD_BYTES: u64 = crate::domain::limits::MAX_EVENT_BYTES as u64 + (64 << 10);

/// Most bytes of raw records a slot's tail keeps, whatever its count.
const TAIL_BYTES: usize = 4 << 20;

/// The name of the archive holding events `first..=last`.
pub(crate) fn name(first: u64, last: u64) -> String {
    format!("events-{first:020}-{last:020}")
}

/// The range `(first, last)` of the archive named `name` ([`name`]), if it
/// is one's name.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("events-")?;
    let (first, last) = rest.split_once('-')?;
    let number = |digits: &str| {
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    Some((number(first)?, number(last)?))
}

/// The first event of the block holding event `seq` (from 1).
pub(crate) fn block_start(seq: u64) -> u64 {
    (seq - 1) / BLOCK * BLOCK + 1
}

/// The header line of an archive: what the records after it must be.
#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    first: u64,
    last: u64,
    /// The length of each record, in order.
    lengths: Vec<u64>,
    /// BLAKE3 of the records' bytes, concatenated, in hex.
    blake3: String,
}

/// Encodes consecutive `records` as an archive: a JSON header line, then the
/// records' bytes, concatenated and compressed ([`ARCHIVE_FORMAT`]). `None` if
/// they are empty or not consecutive.
pub(crate) fn encode(records: &[LogRecord]) -> Option<Bytes> {
    let first = records.first()?.seq;
    let consecutive = records
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq == first + i as u64);
    if !consecutive {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    for r in records {
        hasher.update(&r.bytes);
    }
    let header = Header {
        format: ARCHIVE_FORMAT,
        first,
        last: first + records.len() as u64 - 1,
        lengths: records.iter().map(|r| r.bytes.len() as u64).collect(),
        blake3: hasher.finalize().to_hex().to_string(),
    };
    let line = serde_json::to_vec(&header).ok()?;
    let mut body = Vec::with_capacity(records.iter().map(|r| r.bytes.len()).sum());
    for r in records {
        body.extend_from_slice(&r.bytes);
    }
    let body = miniz_oxide::deflate::compress_to_vec(&body, DEFLATE_LEVEL);
    let mut out = BytesMut::with_capacity(line.len() + 1 + body.len());
    out.put_slice(&line);
    out.put_u8(b'\n');
    out.put_slice(&body);
    Some(out.freeze())
}

/// Decodes the archive of events `first..=last` of `model`: its records, or
/// [`Error::Corrupt`] saying why they cannot be trusted (a header for another
/// range, lengths that do not add up, a digest that does not match, a record
/// that does not decode as the event at its position).
pub(crate) fn decode(
    model: &ModelName,
    first: u64,
    last: u64,
    bytes: &Bytes,
) -> Result<Vec<LogRecord>> {
    let what = || format!("event archive {} of model '{model}'", name(first, last));
    let bad = |why: String| Error::corrupt(what(), why);
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line".into()))?;
    let header: Header = serde_json::from_slice(&bytes[..nl])
        .map_err(|e| bad(format!("undecodable header: {e}")))?;
    if header.format != ARCHIVE_FORMAT && header.format != ARCHIVE_FORMAT_RAW {
        return Err(bad(format!("unknown archive format {}", header.format)));
    }
    if (header.first, header.last) != (first, last)
        || header.lengths.len() as u64 != last - first + 1
    {
        return Err(bad(format!(
            "the header says events {}..={} ({} lengths)",
            header.first,
            header.last,
            header.lengths.len()
        )));
    }
    if let Some(len) = header.lengths.iter().find(|&&l| l > MAX_RECORD_BYTES) {
        return Err(bad(format!("a record of {len} bytes, over the limit")));
    }
    let total: u64 = header.lengths.iter().sum();
    let body = bytes.slice(nl + 1..);
    let body = if header.format == ARCHIVE_FORMAT_RAW {
        body
    } else {
        // Inflated to at most the size the header gives: a longer body is
        // damage, reported below, and never fills memory.
        let limit = usize::try_from(total).map_err(|_| bad("too large".into()))?;
        match miniz_oxide::inflate::decompress_to_vec_with_limit(&body, limit) {
            Ok(records) => Bytes::from(records),
            Err(e) => return Err(bad(format!("the records do not inflate: {e}"))),
        }
    };
    if total != body.len() as u64 {
        return Err(bad(format!(
            "{} bytes of records, the header says {total}",
            body.len()
        )));
    }
    if blake3::hash(&body).to_hex().as_str() != header.blake3 {
        return Err(bad("the records do not match their digest".into()));
    }
    let mut at = 0usize;
    let mut records = Vec::with_capacity(header.lengths.len());
    for (i, len) in header.lengths.iter().enumerate() {
        let len = *len as usize;
        let rec = LogRecord {
            seq: first + i as u64,
            bytes: body.slice(at..at + len),
        };
        at += len;
        records.push(rec);
    }
    Ok(records)
}

/// Reads and checks the archive of events `first..=last` ([`decode`]):
/// `None` if the store keeps no parts, has none by that name, or it cannot be
/// trusted (logged as a warning: the caller reads the records instead). Its
/// records are decoded as events by whoever uses them, which treats one that
/// does not decode as a damaged archive too.
pub(crate) async fn read(
    meta: &dyn MetadataStore,
    model: &ModelName,
    first: u64,
    last: u64,
) -> Option<Vec<LogRecord>> {
    if !meta.keeps_checkpoint_parts() {
        return None;
    }
    let bytes = match meta
        .get_checkpoint_part(model.as_str(), &name(first, last))
        .await
    {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(model = %model, first, last, error = %e, "could not read an event archive; reading its records");
            return None;
        }
    };
    match decode(model, first, last, &bytes) {
        Ok(records) => Some(records),
        Err(e) => {
            tracing::warn!(model = %model, first, last, error = %e, "ignoring a damaged event archive; reading its records");
            None
        }
    }
}

/// The raw records of a model's newest events, consecutive: what a slot
/// folded or appended last, up to [`keep`](Self::keep) records and
/// `TAIL_BYTES` bytes.
#[derive(Default)]
pub(crate) struct Tail {
    records: VecDeque<LogRecord>,
    bytes: usize,
    /// The last event every archive up to which this process wrote or
    /// found (0: none known).
    pub(crate) archived: u64,
}

impl Tail {
    /// How many records a tail keeps for a registry checkpointing every
    /// `every` events: enough that the checkpoint writer holds every event
    /// since the start of the oldest block it still has to archive.
    pub(crate) fn keep(every: u64) -> usize {
        (every + 2 * BLOCK) as usize
    }

    /// The first and last event held.
    pub(crate) fn span(&self) -> Option<(u64, u64)> {
        Some((self.records.front()?.seq, self.records.back()?.seq))
    }

    /// Adds `rec` after the newest record held: ignored if it is not newer,
    /// and it starts the tail anew if it does not follow it.
    pub(crate) fn push(&mut self, rec: LogRecord, keep: usize) {
        match self.records.back() {
            Some(last) if rec.seq <= last.seq => return,
            Some(last) if rec.seq != last.seq + 1 => {
                self.records.clear();
                self.bytes = 0;
            }
            _ => {}
        }
        self.bytes += rec.bytes.len();
        self.records.push_back(rec);
        while self.records.len() > keep.max(1)
            || (self.bytes > TAIL_BYTES && self.records.len() > 1)
        {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= old.bytes.len();
            }
        }
    }

    /// Adds `records` (consecutive) before the oldest record held if they
    /// end just before it; the tail's bounds do not apply to them.
    pub(crate) fn prepend(&mut self, records: &[LogRecord]) {
        let follows = match (records.last(), self.records.front()) {
            (Some(last), Some(first)) => last.seq + 1 == first.seq,
            _ => false,
        };
        if follows {
            for rec in records.iter().rev() {
                self.bytes += rec.bytes.len();
                self.records.push_front(rec.clone());
            }
        }
    }

    /// The records `lo..=hi` that are held (consecutive; empty if none).
    pub(crate) fn range(&self, lo: u64, hi: u64) -> Vec<LogRecord> {
        let Some((first, last)) = self.span() else {
            return Vec::new();
        };
        let (lo, hi) = (lo.max(first), hi.min(last));
        if lo > hi {
            return Vec::new();
        }
        self.records
            .range((lo - first) as usize..=(hi - first) as usize)
            .cloned()
            .collect()
    }
}

impl super::Registry {
    /// Archives the events up to `seq` (a checkpoint's) that the slot's tail
    /// holds and no archive this process knows of covers: each block that is
    /// complete, then the partial block ending at `seq`. A block the tail
    /// holds only the end of is completed from the partial archive its start
    /// is in, else from the log's records (at most `BLOCK - 1`, once per
    /// process and model: after that the tail holds what follows). Best
    /// effort, like the checkpoint: a failure is logged and stops.
    pub(super) async fn write_archives(
        &self,
        slot: &super::engine::Slot,
        model: &ModelName,
        seq: u64,
    ) {
        let meta = self.inner.metadata.as_ref();
        if !meta.keeps_checkpoint_parts() || seq == 0 {
            return;
        }
        let (span, archived) = {
            let tail = super::lock(&slot.tail);
            (tail.span(), tail.archived)
        };
        let Some((held, _)) = span.filter(|&(_, last)| last >= seq) else {
            return;
        };
        let mut start = block_start(archived.min(seq - 1) + 1).max(block_start(held));
        while start <= seq {
            let end = (start + BLOCK - 1).min(seq);
            let mut records = super::lock(&slot.tail).range(start, end);
            if records.first().is_some_and(|r| r.seq > start) {
                // The tail starts in this block: its start is in the partial
                // archive written with the checkpoint the tail starts after,
                // else in the log (read once: then the tail holds the block).
                let before = match read(meta, model, start, held - 1).await {
                    Some(before) => Some(before),
                    None => meta
                        .read_after(model.as_str(), start - 1, (held - start) as usize)
                        .await
                        .ok()
                        .filter(|r| r.len() as u64 == held - start),
                };
                match before {
                    Some(mut before) => {
                        super::lock(&slot.tail).prepend(&before);
                        before.append(&mut records);
                        records = before;
                    }
                    None => {
                        start += BLOCK;
                        continue;
                    }
                }
            }
            let complete = records.len() as u64 == end - start + 1;
            if let (true, Some(bytes)) = (complete, encode(&records)) {
                let part = name(start, end);
                if let Err(e) = meta.put_checkpoint_part(model.as_str(), &part, bytes).await {
                    tracing::warn!(
                        model = %model, first = start, last = end, error = %e,
                        "could not write an event archive; its events are read from the log"
                    );
                    return;
                }
            }
            start += BLOCK;
        }
        let mut tail = super::lock(&slot.tail);
        tail.archived = tail.archived.max(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, s: &str) -> LogRecord {
        LogRecord {
            seq,
            bytes: Bytes::from(s.to_string()),
        }
    }

    #[test]
    fn names_are_not_part_names_and_blocks_start_where_expected() {
        assert_eq!(
            name(1, 1024),
            "events-00000000000000000001-00000000000000001024"
        );
        // A segment or patch name is `<20 digits>-<64 hex>`.
        assert!(!name(1, 2).as_bytes()[0].is_ascii_digit());
        assert_eq!(parse_name(&name(1025, 1300)), Some((1025, 1300)));
        assert_eq!(parse_name("events-1-2"), None);
        assert_eq!(parse_name(&format!("{}x", name(1, 2))), None);
        assert_eq!(parse_name(&name(1, 2).replacen("events", "event", 1)), None);
        assert_eq!(
            (block_start(1), block_start(1024), block_start(1025)),
            (1, 1, 1025)
        );
    }

    #[test]
    fn archives_round_trip_and_damage_is_caught() {
        let model = ModelName::new("m").expect("name");
        let records = vec![rec(5, "a"), rec(6, "bc"), rec(7, "")];
        let bytes = encode(&records).expect("encode");
        assert_eq!(decode(&model, 5, 7, &bytes).expect("decode"), records);
        // Another range, a flipped byte, a truncation.
        assert!(decode(&model, 4, 6, &bytes).is_err());
        let mut flipped = bytes.to_vec();
        let n = flipped.len();
        flipped[n - 1] ^= 1;
        assert!(decode(&model, 5, 7, &Bytes::from(flipped)).is_err());
        assert!(decode(&model, 5, 7, &bytes.slice(..bytes.len() - 1)).is_err());
        assert!(encode(&[rec(1, "a"), rec(3, "b")]).is_none());
    }

    /// Archives are compressed (records of JSON shrink several times), and
    /// the uncompressed format 1 that builds before wrote still reads.
    #[test]
    fn archives_are_compressed_and_format_1_still_reads() {
        let model = ModelName::new("m").expect("name");
        let records: Vec<LogRecord> = (1..=100)
            .map(|seq| {
                rec(
                    seq,
                    &format!(r#"{{"format":1,"seq":{seq},"event":{{"type":"metrics_added"}}}}"#),
                )
            })
            .collect();
        let raw: usize = records.iter().map(|r| r.bytes.len()).sum();
        let bytes = encode(&records).expect("encode");
        assert!(bytes.len() * 3 < raw, "{} bytes for {raw}", bytes.len());
        assert_eq!(decode(&model, 1, 100, &bytes).expect("decode"), records);

        // Format 1, as written before: the header, then the records as they are.
        let nl = bytes.iter().position(|&b| b == b'\n').expect("header");
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[..nl]).expect("json");
        header["format"] = 1.into();
        let mut v1 = serde_json::to_vec(&header).expect("json");
        v1.push(b'\n');
        for r in &records {
            v1.extend_from_slice(&r.bytes);
        }
        assert_eq!(
            decode(&model, 1, 100, &Bytes::from(v1.clone())).expect("format 1"),
            records
        );
        // The compressed body under a format 1 header, and the raw one under
        // format 2's: neither adds up.
        let mut mislabelled = v1[..nl + 1].to_vec();
        mislabelled.extend_from_slice(&bytes[nl + 1..]);
        assert!(decode(&model, 1, 100, &Bytes::from(mislabelled)).is_err());
        header["format"] = ARCHIVE_FORMAT.into();
        let mut raw_as_2 = serde_json::to_vec(&header).expect("json");
        raw_as_2.extend_from_slice(&v1[nl..]);
        assert!(decode(&model, 1, 100, &Bytes::from(raw_as_2)).is_err());
    }

    /// A body that inflates past what the header announces (a bomb, or
    /// lengths that lie) is refused without inflating it all, as is a header
    /// announcing a record larger than any event can be.
    #[test]
    fn archives_never_inflate_past_their_header() {
        let model = ModelName::new("m").expect("name");
        let records = vec![rec(1, "a"), rec(2, "b")];
        let bytes = encode(&records).expect("encode");
        let nl = bytes.iter().position(|&b| b == b'\n').expect("header");
        let header: serde_json::Value = serde_json::from_slice(&bytes[..nl]).expect("json");
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![b'x'; 8 << 20], 1);
        let mut archive = bytes[..nl + 1].to_vec();
        archive.extend_from_slice(&bomb);
        let err = decode(&model, 1, 2, &Bytes::from(archive)).expect_err("a bomb");
        assert!(err.to_string().contains("inflate"), "{err}");

        let mut huge = header.clone();
        huge["lengths"] = serde_json::json!([1, MAX_RECORD_BYTES + 1]);
        let mut archive = serde_json::to_vec(&huge).expect("json");
        archive.push(b'\n');
        archive.extend_from_slice(&bytes[nl + 1..]);
        let err = decode(&model, 1, 2, &Bytes::from(archive)).expect_err("too large");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn the_tail_stays_consecutive_and_bounded() {
        let mut t = Tail::default();
        for s in 1..=10 {
            t.push(rec(s, "x"), 4);
        }
        assert_eq!(t.span(), Some((7, 10)));
        t.push(rec(9, "y"), 4);
        assert_eq!(t.span(), Some((7, 10)));
        assert_eq!(
            t.range(1, 8).iter().map(|r| r.seq).collect::<Vec<_>>(),
            [7, 8]
        );
        t.push(rec(12, "z"), 4);
        assert_eq!(t.span(), Some((12, 12)));
        assert!(t.range(1, 11).is_empty());
    }
}
