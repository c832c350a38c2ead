//! One application: the OCI API, the package APIs, the admin APIs, authentication, the
//! failed-login throttle, request metrics and the external URL, composed once. The example
//! server and [`crate::serve::RunningRegistry`] both use it; an embedder can too, or mount the
//! routers one by one.
//!
//! ```
//! use std::sync::Arc;
//! use registry_core::{Packages, OciRegistry};
//! use registry_storage::memory::{MemoryBlobStore, MemoryMetadataStore};
//!
//! let blobs = Arc::new(MemoryBlobStore::new());
//! let metadata = Arc::new(MemoryMetadataStore::new());
//! let app: axum::Router = registry_http::app::Application::new(
//!     OciRegistry::new(blobs.clone(), metadata.clone()),
//!     Packages::new(blobs, metadata),
//! )
//! .external_url(registry_http::external_url::ExternalUrl::parse("https://registry.example").unwrap())
//! .router();
//! ```

use std::sync::Arc;

use axum::Router;
use registry_core::{OciRegistry, Packages};

use crate::auth::{Auth, AuthMode};
use crate::external_url::ExternalUrl;
use crate::throttle::{LoginThrottle, ThrottleSettings, throttle_logins};

/// The builder of the whole application.
#[derive(Debug)]
pub struct Application {
    registry: OciRegistry,
    packages: Packages,
    auth: Option<Auth>,
    external_url: Option<ExternalUrl>,
    throttle: ThrottleSettings,
    #[cfg(feature = "terraform")]
    download_signer: Option<crate::terraform::DownloadSigner>,
    #[cfg(feature = "proxy")]
    instance: crate::upstream::Instance,
}

impl Application {
    /// An open application (no authentication) over the OCI service and the package service,
    /// which usually share their stores.
    pub fn new(registry: OciRegistry, packages: Packages) -> Self {
        Application {
            registry,
            packages,
            auth: None,
            external_url: None,
            throttle: ThrottleSettings::per_address(),
            #[cfg(feature = "terraform")]
            download_signer: None,
            #[cfg(feature = "proxy")]
            instance: crate::upstream::Instance::random(),
        }
    }

    /// This instance's name in the `Via` header of upstream requests (random by default);
    /// requests that come back with it are refused as a loop.
    #[cfg(feature = "proxy")]
    pub fn instance(&self) -> &crate::upstream::Instance {
        &self.instance
    }

    /// Makes the OCI repositories under each cache's prefix pull-through caches of its
    /// upstream, fetched over HTTP as this instance.
    ///
    /// Errors: [`registry_core::Error::PolicyInvalid`] for a cache that does not validate or
    /// overlapping prefixes.
    #[cfg(feature = "proxy")]
    pub fn pull_through(
        mut self,
        caches: Vec<registry_core::PullThrough>,
    ) -> Result<Self, registry_core::Error> {
        let upstream = Arc::new(crate::upstream::HttpUpstream::new(self.instance.clone()));
        self.registry = self.registry.with_pull_through(caches, upstream)?;
        Ok(self)
    }

    /// Serves the OCI repositories under each virtual registry's prefix from its members
    /// (hosted namespaces and pull-through caches; configure the caches first).
    ///
    /// Errors: [`registry_core::Error::PolicyInvalid`] for a virtual registry that does not
    /// validate.
    pub fn oci_virtual(
        mut self,
        virtuals: Vec<registry_core::OciVirtual>,
    ) -> Result<Self, registry_core::Error> {
        self.registry = self.registry.with_virtual(virtuals)?;
        Ok(self)
    }

    /// Authenticates and authorizes every route with `auth`.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Builds every absolute URL (npm tarballs, PyPI files, the token realm unless the issuer
    /// names one) from `url` instead of the request's `Host`.
    pub fn external_url(mut self, url: ExternalUrl) -> Self {
        self.external_url = Some(url);
        self
    }

    /// How failed logins are slowed down per client address
    /// ([`ThrottleSettings::per_address`] by default).
    pub fn login_throttle(mut self, settings: ThrottleSettings) -> Self {
        self.throttle = settings;
        self
    }

    /// Signs the Terraform module archive URLs with `signer` (instances serving one registry
    /// need the same secret); a random secret of this process's own by default.
    #[cfg(feature = "terraform")]
    pub fn download_signer(mut self, signer: crate::terraform::DownloadSigner) -> Self {
        self.download_signer = Some(signer);
        self
    }

    /// The router serving everything.
    pub fn router(self) -> Router {
        let auth = self
            .auth
            .map(|auth| with_realm(auth, self.external_url.as_ref()));
        let packages = self.packages;
        // Proxy repositories fetch over HTTP unless the embedder set a fetcher of its own.
        #[cfg(feature = "proxy")]
        let packages = if packages.has_upstream() {
            packages
        } else {
            packages.with_upstream(Arc::new(crate::upstream::HttpUpstream::new(
                self.instance.clone(),
            )))
        };
        let probes = crate::health::routes(
            std::sync::Arc::clone(self.registry.metadata()),
            std::sync::Arc::clone(self.registry.blob_store()),
        );
        #[cfg(feature = "ui")]
        let ui = crate::ui::router(self.registry.clone(), packages.clone(), auth.clone());
        let oci = match auth.clone() {
            Some(auth) => crate::oci::router_with_auth(self.registry, auth),
            None => crate::oci::router(self.registry),
        };
        let mut app = oci.merge(probes);
        #[cfg(feature = "ui")]
        {
            app = app.merge(ui).route(
                "/",
                axum::routing::get(|| async { axum::response::Redirect::to("/ui/") }),
            );
        }
        #[cfg(feature = "generic")]
        {
            app = app.merge(crate::generic::router(packages.clone(), auth.clone()));
        }
        #[cfg(feature = "maven")]
        {
            app = app.merge(crate::maven::router(packages.clone(), auth.clone()));
        }
        #[cfg(feature = "npm")]
        {
            app = app.merge(crate::npm::router(packages.clone(), auth.clone()));
        }
        #[cfg(feature = "nuget")]
        {
            app = app.merge(crate::nuget::router(packages.clone(), auth.clone()));
        }
        #[cfg(feature = "pypi")]
        {
            app = app.merge(crate::pypi::router(packages.clone(), auth.clone()));
        }
        #[cfg(feature = "terraform")]
        {
            let signer = self
                .download_signer
                .unwrap_or_else(crate::terraform::DownloadSigner::random);
            app = app.merge(crate::terraform::router(
                packages.clone(),
                auth.clone(),
                signer,
            ));
        }
        #[cfg(feature = "packages")]
        {
            app = app.merge(crate::package_admin::router(packages, auth));
        }
        #[cfg(not(feature = "packages"))]
        drop((packages, auth));
        #[cfg(feature = "proxy")]
        {
            app = app
                .layer(axum::middleware::from_fn(crate::upstream::report_proxy))
                .layer(axum::middleware::from_fn_with_state(
                    self.instance,
                    crate::upstream::refuse_loops,
                ));
        }
        if let Some(url) = self.external_url {
            app = app.layer(axum::Extension(url));
        }
        app.layer(axum::middleware::from_fn_with_state(
            LoginThrottle::new(self.throttle),
            throttle_logins,
        ))
        .layer(axum::middleware::from_fn(crate::observe::record))
    }
}

/// Token auth names its endpoint in challenges: under the external URL when the issuer has no
/// realm of its own.
fn with_realm(auth: Auth, url: Option<&ExternalUrl>) -> Auth {
    match (&auth.mode, url) {
        (AuthMode::Token(issuer), Some(url)) if issuer.realm.is_none() => {
            let issuer = (**issuer)
                .clone()
                .with_realm(format!("{}/token", url.as_str()));
            Auth {
                mode: AuthMode::Token(Arc::new(issuer)),
                ..auth
            }
        }
        _ => auth,
    }
}
