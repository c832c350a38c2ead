//! The Rust `oci-client` crate against the server binary: push and pull an image, list tags,
//! pull a manifest, anonymously and through token auth.

mod support;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use support::{Server, workdir};

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

async fn push_and_pull(host: &str, repository: &str, auth: &RegistryAuth) {
    let client = client();
    let reference: Reference = format!("{host}/{repository}:v1").parse().unwrap();
    let layer = b"a layer pushed by oci-client".repeat(1000);
    let layers = vec![ImageLayer::new(
        layer.clone(),
        IMAGE_LAYER_MEDIA_TYPE.to_owned(),
        None,
    )];
    let config = Config::new(
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    );
    client
        .push(&reference, &layers, config, auth, None)
        .await
        .expect("push");

    let image = client
        .pull(&reference, auth, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("pull");
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].data.as_ref(), layer.as_slice());

    let tags = client
        .list_tags(&reference, auth, None, None)
        .await
        .expect("tags");
    assert_eq!(tags.tags, vec!["v1".to_owned()]);
    let (manifest, digest) = client
        .pull_manifest(&reference, auth)
        .await
        .expect("manifest");
    assert!(digest.starts_with("sha256:"));
    assert!(matches!(
        manifest,
        oci_client::manifest::OciManifest::Image(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous() {
    let server = Server::start(&[]);
    push_and_pull(&server.host(), "rust/app", &RegistryAuth::Anonymous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_token_auth() {
    let (_dir, work) = workdir();
    let config = work.join("registry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[auth]
mode = "token"
token_secret = "a test secret that is long enough for HS256"

[auth.users.rust]
password_hash = "{}"
grants = [{{ pattern = "rust/*", role = "maintainer" }}]
"#,
            registry_http::auth::hash_password("pw").unwrap()
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let auth = RegistryAuth::Basic("rust".into(), "pw".into());
    push_and_pull(&server.host(), "rust/secured", &auth).await;

    let denied = client()
        .list_tags(
            &format!("{}/rust/secured:v1", server.host())
                .parse()
                .unwrap(),
            &RegistryAuth::Anonymous,
            None,
            None,
        )
        .await;
    assert!(denied.is_err(), "anonymous callers get no token for rust/*");
}
