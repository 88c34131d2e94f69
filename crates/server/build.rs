//! Embeds the committed browser app (`web/dist`, CONTRACT §13) in the binary, so serving it
//! needs no Node at build time. Writes `$OUT_DIR/web_assets.rs`: one `(path, bytes)` entry per
//! file, each an `include_bytes!`. A plain build script rather than an embedding crate because
//! `cargo:rerun-if-changed` on the directory makes Cargo notice every added, changed or removed
//! file there (a proc macro's include cannot see files that are added).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    let dist = manifest.join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut found = Vec::new();
    files(&dist, &mut found);
    found.sort();
    let mut code = String::from(
        "/// The web app's files: (URL path, bytes), sorted by path.\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for path in &found {
        let relative = path.strip_prefix(&dist).expect("under dist");
        let url: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let absolute = path.canonicalize().expect("a file that exists");
        writeln!(
            code,
            "    ({:?}, include_bytes!({:?})),",
            format!("/{}", url.join("/")),
            absolute.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by Cargo")).join("web_assets.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
