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
    // The commit the binary is built from, written into every run's summary (results say which
    // code produced them). "-dirty" when tracked files differ from it, results/ and paper/ aside
    // (a run rewrites them, the code stays the same); "unknown" outside git.
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&[
                "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!paper",
            ])
            .is_some_and(|s| !s.is_empty());
            format!("{c}{}", if dirty { "-dirty" } else { "" })
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=ALIGNLAB_GIT_COMMIT={commit}");
    for f in [".git/HEAD", ".git/index", "src", "Cargo.toml", "build.rs"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
