//! Opening an `object_store` driver from a URL and options, as an operator configures one.
//!
//! | URL | driver | feature |
//! |---|---|---|
//! | `memory://` | in memory (tests) | `object-store` |
//! | `file:///absolute/dir` | local filesystem | `object-store` |
//! | `s3://bucket[/prefix]` | S3-compatible, signs URLs | `s3` |
//! | `gs://bucket[/prefix]` | Google Cloud Storage, signs URLs | `gcs` |
//! | `az://container[/prefix]` | Azure Blob Storage, signs URLs | `azure` |
//!
//! A failed request is retried twice within 30 s at most. Options are the driver's own
//! configuration keys (`aws_endpoint`, `aws_region`,
//! `aws_access_key_id`, `aws_allow_http`, `google_service_account`, `azure_storage_account_name`,
//! …) and override the driver's environment variables, which are read too (`AWS_…`, `GOOGLE_…`,
//! `AZURE_…`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use object_store::signer::Signer;

/// A driver ready for [`super::ObjectBlobStore::from_driver`].
pub struct Driver {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix every key lives under (the URL's path).
    pub root: Path,
    /// Signs URLs for presigned redirects, when the driver can.
    pub signer: Option<Arc<dyn Signer>>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("store", &self.store.to_string())
            .field("root", &self.root.as_ref())
            .field("signer", &self.signer.is_some())
            .finish()
    }
}

/// Why a driver could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("object store {url}: {reason}")]
pub struct DriverError {
    url: String,
    reason: String,
}

impl Driver {
    /// Opens the driver `url` names, configured by `options` (see the module's table).
    pub fn from_url(url: &str, options: &BTreeMap<String, String>) -> Result<Self, DriverError> {
        let error = |reason: String| DriverError {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| error("expected <scheme>://<bucket>[/<prefix>]".to_owned()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let root = Path::parse(prefix.trim_matches('/')).map_err(|e| error(e.to_string()))?;
        let no_options = || {
            if options.is_empty() {
                Ok(())
            } else {
                Err(error(format!("the {scheme} driver takes no options")))
            }
        };
        match scheme {
            "memory" => {
                no_options()?;
                Ok(Driver {
                    store: Arc::new(object_store::memory::InMemory::new()),
                    root,
                    signer: None,
                })
            }
            "file" => {
                no_options()?;
                let dir = std::path::Path::new(rest);
                if !dir.is_absolute() {
                    return Err(error("file:// takes an absolute directory".to_owned()));
                }
                std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| error(e.to_string()))?;
                Ok(Driver {
                    store: Arc::new(local),
                    root: Path::default(),
                    signer: None,
                })
            }
            #[cfg(feature = "s3")]
            "s3" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut builder = AmazonS3Builder::from_env()
                    .with_url(format!("s3://{bucket}"))
                    .with_retry(retries());
                for (key, value) in options {
                    let key: AmazonS3ConfigKey = key.parse().map_err(|e| error(format!("{e}")))?;
                    builder = builder.with_config(key, value);
                }
                let s3 = Arc::new(builder.build().map_err(|e| error(e.to_string()))?);
                Ok(Driver {
                    store: Arc::clone(&s3) as Arc<dyn ObjectStore>,
                    root,
                    signer: Some(s3),
                })
            }
            #[cfg(feature = "gcs")]
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_url(format!("gs://{bucket}"))
                    .with_retry(retries());
                for (key, value) in options {
                    let key: GoogleConfigKey = key.parse().map_err(|e| error(format!("{e}")))?;
                    builder = builder.with_config(key, value);
                }
                let gcs = Arc::new(builder.build().map_err(|e| error(e.to_string()))?);
                Ok(Driver {
                    store: Arc::clone(&gcs) as Arc<dyn ObjectStore>,
                    root,
                    signer: Some(gcs),
                })
            }
            #[cfg(feature = "azure")]
            "az" => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_url(format!("az://{bucket}"))
                    .with_retry(retries());
                for (key, value) in options {
                    let key: AzureConfigKey = key.parse().map_err(|e| error(format!("{e}")))?;
                    builder = builder.with_config(key, value);
                }
                let azure = Arc::new(builder.build().map_err(|e| error(e.to_string()))?);
                Ok(Driver {
                    store: Arc::clone(&azure) as Arc<dyn ObjectStore>,
                    root,
                    signer: Some(azure),
                })
            }
            other => {
                let _ = bucket;
                Err(error(format!(
                    "unknown or not compiled in: {other}:// (this build has memory, file{})",
                    compiled_cloud_schemes()
                )))
            }
        }
    }
}

/// Retries of a failed request to a cloud store: few and short, so that a store that hangs
/// fails the request within about a minute (each attempt times out after 30 s, the `timeout`
/// option), well before a client's connection is closed as idle.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(30),
        ..object_store::RetryConfig::default()
    }
}

fn compiled_cloud_schemes() -> &'static str {
    match (
        cfg!(feature = "s3"),
        cfg!(feature = "gcs"),
        cfg!(feature = "azure"),
    ) {
        (true, true, true) => ", s3, gs, az",
        (true, true, false) => ", s3, gs",
        (true, false, true) => ", s3, az",
        (false, true, true) => ", gs, az",
        (true, false, false) => ", s3",
        (false, true, false) => ", gs",
        (false, false, true) => ", az",
        (false, false, false) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(url: &str, options: &[(&str, &str)]) -> Result<Driver, DriverError> {
        let options = options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Driver::from_url(url, &options)
    }

    #[test]
    fn urls_name_their_driver_and_root() {
        let memory = open("memory://", &[]).unwrap();
        assert!(memory.signer.is_none());
        assert_eq!(memory.root.as_ref(), "");
        let dir = tempfile::tempdir().unwrap();
        let file = open(&format!("file://{}", dir.path().display()), &[]).unwrap();
        assert_eq!(file.root.as_ref(), "");
        assert!(open("file://relative/dir", &[]).is_err());
        assert!(open("memory://", &[("aws_region", "x")]).is_err());
        let unknown = open("ftp://host/x", &[]).unwrap_err().to_string();
        assert!(unknown.contains("ftp://"), "{unknown}");
        assert!(open("no-scheme", &[]).is_err());
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_takes_its_options_and_signs() {
        let s3 = open(
            "s3://bucket/some/prefix/",
            &[
                ("aws_endpoint", "http://127.0.0.1:1"),
                ("aws_region", "us-east-1"),
                ("aws_access_key_id", "id"),
                ("aws_secret_access_key", "secret"),
                ("aws_allow_http", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s3.root.as_ref(), "some/prefix");
        assert!(s3.signer.is_some());
        let bad = open("s3://bucket", &[("no_such_key", "x")]).unwrap_err();
        assert!(bad.to_string().contains("no_such_key"), "{bad}");
    }

    #[cfg(feature = "gcs")]
    #[test]
    fn gcs_builds_with_a_service_account_key() {
        let bad = open("gs://bucket", &[("no_such_key", "x")]).unwrap_err();
        assert!(bad.to_string().contains("no_such_key"), "{bad}");
    }

    #[cfg(feature = "azure")]
    #[test]
    fn azure_builds_with_an_account_and_key() {
        let azure = open(
            "az://container/p",
            &[
                ("azure_storage_account_name", "account"),
                ("azure_storage_account_key", "a2V5"),
            ],
        )
        .unwrap();
        assert_eq!(azure.root.as_ref(), "p");
        assert!(azure.signer.is_some());
    }
}
