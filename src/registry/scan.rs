//! Format scans: the registry reads a version's files through the scanner
//! (which only ever sees bytes) and records the verdicts in the log, where the
//! [`FormatPolicy`](crate::GateSpec::FormatPolicy) gate reads them.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::{IntoVersionRef, Registry, pinned_version};
use crate::digest::Digest;
use crate::domain::scan::{
    FileFormat, FileVerdict, SCANNER_VERSION, ScanLimits, ScanStep, Scanner,
};
use crate::domain::{Actor, EventKind, FormatScan};
use crate::error::{Error, Result};
use crate::offload::offload;
use crate::store::ArtifactStore;

/// How many files are scanned at once.
const CONCURRENCY: usize = 4;

impl Registry {
    /// The implementation of [`Session::scan_formats`](super::Session::scan_formats).
    pub(crate) async fn scan_formats(
        &self,
        version: impl IntoVersionRef,
        actor: &Actor,
    ) -> Result<FormatScan> {
        let r = version.into_version_ref()?;
        let v = self.resolve(&r).await?;
        super::retention::live(&v)?;
        let manifest = self.verified_manifest(&v.artifact).await?;
        let store = Arc::clone(&self.inner.artifacts);
        let limits = self.inner.scan_limits.clone();
        let verdicts: Vec<FileVerdict> = futures::stream::iter(manifest.entries().iter().cloned())
            .map(|e| {
                let (store, limits) = (Arc::clone(&store), limits.clone());
                async move { scan_blob(store, e.path.as_str(), e.digest, e.size, limits).await }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let (files, data): (Vec<FileVerdict>, Vec<FileVerdict>) = verdicts
            .into_iter()
            .partition(|f| f.format != FileFormat::Data || !f.passed());
        let data_files = data.len() as u64;
        // Pinned to the version resolved above: the files scanned are its files.
        let pinned = v.reference();
        let mut number = None;
        let (_, record) = self
            .commit(&r.model, actor, |s, _| {
                let n = pinned_version(s, &pinned, &mut number)?.number;
                Ok(EventKind::FormatsScanned {
                    version: n,
                    scanner: SCANNER_VERSION,
                    files: files.clone(),
                    data_files,
                })
            })
            .await?;
        record
            .and_then(|v| v.scan)
            .ok_or_else(|| Error::version_not_found(&r.model, &r))
    }
}

/// Scans one stored file, reading the ranges the scanner asks for; the scanner
/// runs on the blocking pool (a large pickle is a lot of opcodes).
async fn scan_blob(
    store: Arc<dyn ArtifactStore>,
    path: &str,
    digest: Digest,
    size: u64,
    limits: ScanLimits,
) -> Result<FileVerdict> {
    let mut scanner = Scanner::new(path, size, limits);
    loop {
        let (s, step) = offload(move || {
            let step = scanner.step();
            (scanner, step)
        })
        .await?;
        scanner = s;
        match step {
            ScanStep::Done(v) => return Ok(v),
            ScanStep::Need(range) => {
                let want = range.end - range.start;
                let bytes = store.get_range(&digest, range.clone()).await?;
                if bytes.len() as u64 != want {
                    return Err(Error::corrupt(
                        format!("blob {digest} (file '{path}')"),
                        format!(
                            "{} bytes read at {}..{}, {want} expected",
                            bytes.len(),
                            range.start,
                            range.end
                        ),
                    ));
                }
                scanner.supply(range.start, bytes);
            }
        }
    }
}
