//! oras (the PyPI `oras` client) against the example server: artifacts pushed monolithically and
//! in chunks, pulled back byte for byte, tags listed, a tag deleted.

mod support;

use support::{Server, run, workdir};

const SCRIPT: &str = r#"
import filecmp, os, sys
import oras.client

host = sys.argv[1]
os.chdir(sys.argv[2])
with open("artifact.txt", "w") as f:
    f.write("hello from oras\n")
with open("blob.bin", "wb") as f:
    f.write(os.urandom(3 * 1024 * 1024 + 17))

c = oras.client.OrasClient(hostname=host, insecure=True)
r = c.push(files=["artifact.txt"], target=f"{host}/oras/artifact:v1",
           manifest_annotations={"org.example": "yes"})
assert r.status_code == 201, r.text
r = c.push(files=["blob.bin"], target=f"{host}/oras/artifact:chunked",
           do_chunked=True, chunk_size=1024 * 1024)
assert r.status_code == 201, r.text

tags = c.get_tags(f"{host}/oras/artifact")
assert sorted(tags) == ["chunked", "v1"], tags
manifest = c.get_manifest(f"{host}/oras/artifact:v1")
assert manifest["annotations"]["org.example"] == "yes", manifest

for tag, name in [("v1", "artifact.txt"), ("chunked", "blob.bin")]:
    files = c.pull(target=f"{host}/oras/artifact:{tag}", outdir=f"out-{tag}")
    pulled = [f for f in files if os.path.basename(f) == name]
    assert pulled and filecmp.cmp(pulled[0], name, shallow=False), (tag, files)

c.delete_tag(f"{host}/oras/artifact", "chunked")
assert c.get_tags(f"{host}/oras/artifact") == ["v1"]
print("oras ok")
"#;

#[test]
fn push_pull_chunked_tags_and_delete() {
    let server = Server::start(&[]);
    let (_dir, work) = workdir();
    let script = work.join("oras_test.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let python = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/clients/bin/python"
    );
    let out = run(
        python,
        &[
            script.to_str().unwrap(),
            &server.host(),
            work.to_str().unwrap(),
        ],
        &work,
    );
    assert!(out.contains("oras ok"), "{out}\n{}", server.log());
}
