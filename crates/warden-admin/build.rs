//! Embeds the dashboard (`assets/`) in the binary: each file is gzip-compressed here, once, and
//! `ui.rs` serves the table this writes (`$OUT_DIR/assets.rs`): path, media type, the raw and
//! the compressed bytes (both `include_bytes!`), and an ETag from the content.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let assets = root.join("assets");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=assets");
    let mut files = Vec::new();
    walk(&assets, &mut files);
    files.sort();
    let mut table = String::from("pub(crate) static ASSETS: &[Asset] = &[\n");
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel =
            file.strip_prefix(&assets).expect("under assets").to_string_lossy().replace('\\', "/");
        let bytes = std::fs::read(&file).expect("readable asset");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).expect("in memory");
        let gz = gz.finish().expect("in memory");
        let gz_path = out.join(format!("{}.gz", rel.replace('/', "__")));
        std::fs::write(&gz_path, &gz).expect("OUT_DIR is writable");
        writeln!(
            table,
            "    Asset {{ path: {rel:?}, mime: {:?}, raw: include_bytes!({:?}), gz: include_bytes!({:?}), etag: \"\\\"{:016x}\\\"\" }},",
            mime(&rel),
            file.display().to_string(),
            gz_path.display().to_string(),
            fnv1a(&bytes),
        )
        .expect("to a string");
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets.rs"), table).expect("OUT_DIR is writable");
}

fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("assets/ exists") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, into);
        } else {
            into.push(path);
        }
    }
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// FNV-1a, 64 bits: a stable content hash for the ETag (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
