//! A complete registry in memory on a random loopback port, in one line — the way a test
//! harness starts one before pointing a real client at it.
//!
//! `cargo run -p registry-server --example in_memory`

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let registry = registry_http::serve::RunningRegistry::in_memory().await?;

    println!("registry listening on http://{}/v2/", registry.host());
    println!(
        "try: skopeo copy --dest-tls-verify=false oci:layout:tag docker://{}/demo/app:tag",
        registry.host()
    );
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    registry.stop().await
}
