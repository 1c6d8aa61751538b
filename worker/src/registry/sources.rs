//! Where a blob is known to be, for cross-repository mounts.
//!
//! `<store>/blob-sources/<hex>` lists `registry/repository` lines: the repositories a blob was
//! pulled from or pushed to. Pushing to another repository of the same registry can then ask
//! the registry to mount the blob (`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`)
//! instead of uploading it. Lines are appended with single writes; a duplicate is harmless and
//! dropped on reading.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::digest::Digest;
use crate::store::Store;

/// The source records of a store.
#[derive(Debug, Clone)]
pub struct Sources {
    dir: PathBuf,
}

impl Sources {
    pub fn new(store: &Store) -> Sources {
        Sources {
            dir: store.root().join("blob-sources"),
        }
    }

    /// Record that `digest` is in `repository` (`registry/path`).
    pub fn add(&self, digest: &Digest, repository: &str) -> io::Result<()> {
        if self.get(digest).iter().any(|r| r == repository) {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(digest.hex()))?;
        f.write_all(format!("{repository}\n").as_bytes())
    }

    /// The repositories `digest` is known to be in, oldest first.
    pub fn get(&self, digest: &Digest) -> Vec<String> {
        let text = fs::read_to_string(self.dir.join(digest.hex())).unwrap_or_default();
        let mut out: Vec<String> = vec![];
        for line in text.lines().filter(|l| !l.is_empty()) {
            if !out.iter().any(|o| o == line) {
                out.push(line.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recorded_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = Sources::new(&store);
        let d = Digest::of(b"x");
        assert!(s.get(&d).is_empty());
        s.add(&d, "r:5000/a").unwrap();
        s.add(&d, "r:5000/b").unwrap();
        s.add(&d, "r:5000/a").unwrap();
        assert_eq!(s.get(&d), vec!["r:5000/a", "r:5000/b"]);
    }
}
