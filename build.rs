//! Bake libtorch's lib directory into the binary's rpath so it runs without LD_LIBRARY_PATH,
//! and record it so `--device cuda` can load libtorch_cuda.so at run time (the linker drops it
//! as unneeded because nothing references its symbols directly).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib = match std::env::var("LIBTORCH") {
        Ok(root) => {
            let root = PathBuf::from(root);
            // `.cargo/config.toml` gives a path relative to the workspace; canonicalize so the
            // rpath survives `cargo install` and test binaries run from other directories.
            let root = root.canonicalize().unwrap_or(root);
            root.join("lib")
        }
        Err(_) => PathBuf::new(),
    };
    if !lib.as_os_str().is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    println!("cargo:rustc-env=ALIGNLAB_LIBTORCH_LIB={}", lib.display());
}
