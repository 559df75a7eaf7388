//! Cache keys: a stage's settings as text, and the short hash naming its run folder.

use sha2::{Digest, Sha256};

/// A configuration as TOML text. Cache keys are built from these: a key follows the settings'
/// names and values, never a type's name or its `Debug` output, so moving or renaming a type
/// neither changes a key nor keeps one whose settings changed.
pub fn key_of<T: serde::Serialize>(x: &T) -> String {
    #[derive(serde::Serialize)]
    struct Key<'a, T> {
        v: &'a T,
    }
    toml::to_string(&Key { v: x }).expect("configurations serialize to TOML")
}

/// Short content hash naming a stage's run folder.
pub fn stage_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
