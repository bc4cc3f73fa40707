//! Opening stores by URL (`s3://`, `gs://`, `az://`, `file://`, `memory://`), and
//! the layout of a registry's two stores below one prefix.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;

use super::{ObjectArtifactStore, ObjectMetadataStore, Root};
use crate::error::{Error, Result};

/// The two stores of a registry at `prefix` in `store`: metadata under
/// `<prefix>/metadata`, blobs under `<prefix>/artifacts`, the layout
/// [`Registry::open_url`](crate::Registry::open_url) uses.
pub fn stores_in(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
) -> (ObjectMetadataStore, ObjectArtifactStore) {
    let label = format!("object store {store} at '{prefix}'");
    named_stores(store, prefix, &label, None)
}

fn named_stores(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
    label: &str,
    url_base: Option<String>,
) -> (ObjectMetadataStore, ObjectArtifactStore) {
    let metadata = prefix.clone().join("metadata");
    let artifacts = prefix.clone().join("artifacts");
    (
        ObjectMetadataStore {
            root: Root::new(
                Arc::clone(&store),
                metadata,
                Some(format!("{label} (metadata)")),
                url_base.clone(),
            ),
        },
        ObjectArtifactStore::at(Root::new(
            store,
            artifacts,
            Some(format!("{label} (artifacts)")),
            url_base,
        )),
    )
}

/// The two stores of the registry a URL names, configured from the environment:
/// [`object_store_from_url`], then [`stores_in`] at the URL's path. Errors name the
/// store by its URL.
pub fn stores_from_url(url: &str) -> Result<(ObjectMetadataStore, ObjectArtifactStore)> {
    let (store, prefix) = object_store_from_url(url)?;
    let label = format!("object store {}", url.trim_end_matches('/'));
    let base = url::Url::parse(url)
        .ok()
        .and_then(|parsed| url_base(&parsed, &prefix));
    let (metadata, artifacts) = named_stores(store, &prefix, &label, base);
    // A `file://` tree may be a local registry's: its artifact store writes
    // blobs where only it and this look (`blobs/v2`).
    let local = url::Url::parse(url).is_ok_and(|parsed| parsed.scheme() == "file");
    let artifacts = if local {
        artifacts.reading_local_layout()
    } else {
        artifacts
    };
    Ok((metadata, artifacts))
}

/// What an object's key is appended to for its URL: the URL without the `prefix`
/// it gives inside the store (`s3://bucket/` for `s3://bucket/reg`). `None` when
/// the URL does not end in the prefix as written (a form such as
/// `https://account.blob.core.windows.net/container/reg`), and keys are then named
/// with their store instead.
fn url_base(parsed: &url::Url, prefix: &Path) -> Option<String> {
    let mut url = parsed.clone();
    url.set_query(None);
    url.set_fragment(None);
    let whole = url.as_str();
    if prefix.as_ref().is_empty() {
        return Some(if whole.ends_with('/') {
            whole.to_owned()
        } else {
            format!("{whole}/")
        });
    }
    let base = whole.trim_end_matches('/').strip_suffix(prefix.as_ref())?;
    base.ends_with('/').then(|| base.to_owned())
}

/// The object store a URL names, configured from the environment, and the path the
/// URL gives inside it.
///
/// | URL | store | configuration |
/// |---|---|---|
/// | `s3://bucket/prefix` | Amazon S3 or compatible (feature `aws`) | `AWS_*` variables, as `AmazonS3Builder::from_env` |
/// | `gs://bucket/prefix` | Google Cloud Storage (feature `gcp`) | `GOOGLE_*` variables, as `GoogleCloudStorageBuilder::from_env` |
/// | `az://container/prefix` | Azure Blob Storage (feature `azure`) | `AZURE_*` variables, as `MicrosoftAzureBuilder::from_env` |
/// | `file:///path` | local files (object_store's `LocalFileSystem`, fsync on) | – |
/// | `memory://` | a new, empty in-memory store | – |
///
/// What the URL says (bucket, container) wins over the environment. Other URL forms
/// object_store understands (`https://…amazonaws.com/…`, `abfss://…`) work too.
/// Nothing is contacted here: bad credentials show on first use. Use it to wrap the
/// store (with object_store's `LimitStore`, a cache, instrumentation) before
/// handing it to [`stores_in`].
///
/// Fails with [`Error::InvalidInput`] for a URL that does not parse, a scheme that is
/// not an object store, or one whose feature this build lacks, and with
/// [`Error::Storage`] when the store's configuration is incomplete.
pub fn object_store_from_url(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid_input(format!("URL '{url}'"), e.to_string()))?;
    let (scheme, prefix) = object_store::ObjectStoreScheme::parse(&parsed)
        .map_err(|e| Error::invalid_input(format!("URL '{url}'"), e.to_string()))?;
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    let failed = |e| Error::storage(format!("object store {url}"), "open", url, e);
    use object_store::ObjectStoreScheme as Scheme;
    let store: Arc<dyn ObjectStore> = match scheme {
        Scheme::Memory => Arc::new(object_store::memory::InMemory::new()),
        // Durable like the local stores: files and directories are synced.
        Scheme::Local => Arc::new(object_store::local::LocalFileSystem::new().with_fsync(true)),
        #[cfg(feature = "aws")]
        Scheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(feature = "gcp")]
        Scheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(feature = "azure")]
        Scheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(not(feature = "aws"))]
        Scheme::AmazonS3 => return Err(lacks_feature(url, "aws")),
        #[cfg(not(feature = "gcp"))]
        Scheme::GoogleCloudStorage => return Err(lacks_feature(url, "gcp")),
        #[cfg(not(feature = "azure"))]
        Scheme::MicrosoftAzure => return Err(lacks_feature(url, "azure")),
        other => {
            return Err(Error::invalid_input(
                format!("URL '{url}'"),
                format!("{other:?} is not an object store modelreg opens"),
            ));
        }
    };
    Ok((store, prefix))
}

/// The error for a URL whose store this build was compiled without.
#[cfg(not(all(feature = "aws", feature = "gcp", feature = "azure")))]
fn lacks_feature(url: &str, feature: &str) -> Error {
    Error::invalid_input(
        format!("URL '{url}'"),
        format!("this build of modelreg lacks the `{feature}` feature"),
    )
}
