//! The streaming cutter: reads a file once through one reused buffer and cuts
//! each region as its plan says.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut, select_masks};

use super::{Chunk, ChunkParams, Cut, Region};
use crate::digest::Digest;
use crate::error::Error;

/// The normalization level of content-defined chunking: level 1 (the `fastcdc`
/// crate's default) keeps most chunks within a factor of two of the average
/// without pushing many to the minimum or maximum.
const NORMALIZATION: Normalization = Normalization::Level1;

/// The smallest read buffer: large sequential reads whatever the chunk sizes.
const MIN_BUFFER: usize = 4 << 20;

/// Chunks at least this long are hashed on every core (as `Digest::of` does
/// for large buffers); shorter ones on the calling thread.
const PARALLEL_HASH: usize = 256 << 10;

/// Why a run stopped.
pub(super) enum RunError {
    /// Reading the source failed.
    Io(io::Error),
    /// The sink returned an error.
    Sink(Error),
}

/// A window over the source: `buf[lo..hi]` holds the unconsumed bytes read.
struct Window<R> {
    source: R,
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// Makes at least `want` bytes available from `lo` (fewer only at the end
    /// of the source) and returns how many are. `want` must not exceed the
    /// buffer's length.
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        debug_assert!(want <= self.buf.len());
        if self.hi - self.lo >= want || self.eof {
            return Ok(self.hi - self.lo);
        }
        if self.lo + want > self.buf.len() {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.hi -= self.lo;
            self.lo = 0;
        }
        while self.hi - self.lo < want {
            match self.source.read(&mut self.buf[self.hi..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.hi += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.hi - self.lo)
    }
}

fn hash(bytes: &[u8]) -> Digest {
    if bytes.len() >= PARALLEL_HASH {
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(bytes);
        Digest::from_bytes(*hasher.finalize().as_bytes())
    } else {
        Digest::from_bytes(*blake3::hash(bytes).as_bytes())
    }
}

/// Cuts `source` as `regions` say (contiguous, from offset 0), then any bytes
/// past the last region (a file that grew) content-defined, calling `sink`
/// with each chunk and its bytes in order. Stops early, without error, where
/// the source ends.
pub(super) fn run<R: Read>(
    source: R,
    regions: &[Region],
    params: &ChunkParams,
    mut sink: impl FnMut(&Chunk, &[u8]) -> Result<(), Error>,
) -> Result<(), RunError> {
    let block = params.tensor_block as usize;
    let (min, avg, max) = (
        params.cdc_min as usize,
        params.cdc_avg as usize,
        params.cdc_max as usize,
    );
    let (mask_s, mask_l) = select_masks(avg, NORMALIZATION);
    let mut w = Window {
        source,
        buf: vec![0; MIN_BUFFER.max(2 * block.max(max))],
        lo: 0,
        hi: 0,
        eof: false,
    };
    let tail = Region {
        end: u64::MAX,
        cut: Cut::Cdc,
    };
    let mut pos = 0u64;
    for region in regions.iter().chain(std::iter::once(&tail)) {
        while pos < region.end {
            let left = region.end - pos;
            let limit = match region.cut {
                Cut::Blocks => block,
                Cut::Cdc => max,
            };
            let want = usize::try_from(left).map_or(limit, |l| l.min(limit));
            let avail = w.fill(want).map_err(RunError::Io)?;
            if avail == 0 {
                return Ok(());
            }
            let window = &w.buf[w.lo..w.lo + want.min(avail)];
            let len = match region.cut {
                Cut::Blocks => window.len(),
                // Given at least `max` bytes, or every byte up to the region's
                // end, the cut is the one the whole region in memory would get.
                Cut::Cdc => {
                    cut(
                        window,
                        min,
                        avg,
                        max,
                        mask_s,
                        mask_l,
                        mask_s << 1,
                        mask_l << 1,
                    )
                    .1
                }
            };
            let bytes = &window[..len];
            let chunk = Chunk {
                offset: pos,
                // `len` is at most 16 MiB (`ChunkParams`' invariant).
                len: len as u32,
                hash: hash(bytes),
            };
            sink(&chunk, bytes).map_err(RunError::Sink)?;
            w.lo += len;
            pos += len as u64;
        }
    }
    Ok(())
}
