//! Content digests of context files, for cache keys.
//!
//! A cache key covers what a step reads by content, never by modification time: touching a
//! file without changing it keeps the cache, changing one byte invalidates it. Hashing every
//! file of a large context on every build would cost the no-op rebuild most of its time, so
//! digests are remembered by (size, mtime, ctime, inode), as git's index does: a file whose
//! stat is unchanged is not read again. A changed stat only means "read it again"; the key is
//! still the content.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter, KeyHasher};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stat {
    fn of(meta: &fs::Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
        }
    }
}

/// Remembered file digests.
#[derive(Debug, Default)]
pub struct HashCache {
    file: Option<PathBuf>,
    entries: HashMap<PathBuf, (Stat, Digest)>,
    dirty: bool,
    /// Files actually read (for tests and progress).
    pub reads: u64,
}

impl HashCache {
    /// A cache persisted in `file` (read now, written by [`HashCache::save`]).
    pub fn load(file: PathBuf) -> HashCache {
        let mut entries = HashMap::new();
        if let Ok(f) = fs::File::open(&file) {
            for line in io::BufReader::new(f).lines().map_while(Result::ok) {
                let mut it = line.split('\t');
                let parsed = (|| {
                    let digest = Digest::parse(it.next()?).ok()?;
                    let stat = Stat {
                        size: it.next()?.parse().ok()?,
                        mtime_ns: it.next()?.parse().ok()?,
                        ctime_ns: it.next()?.parse().ok()?,
                        ino: it.next()?.parse().ok()?,
                    };
                    let path = PathBuf::from(it.next()?);
                    Some((path, (stat, digest)))
                })();
                if let Some((path, value)) = parsed {
                    entries.insert(path, value);
                }
            }
        }
        HashCache {
            file: Some(file),
            entries,
            dirty: false,
            reads: 0,
        }
    }

    /// The content digest of a regular file.
    pub fn file_digest(&mut self, path: &Path, meta: &fs::Metadata) -> io::Result<Digest> {
        let stat = Stat::of(meta);
        if let Some((cached, digest)) = self.entries.get(path)
            && *cached == stat
        {
            return Ok(digest.clone());
        }
        let mut f = fs::File::open(path)?;
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut f, &mut w)?;
        let (digest, _, _) = w.finish();
        self.reads += 1;
        self.entries
            .insert(path.to_path_buf(), (stat, digest.clone()));
        self.dirty = true;
        Ok(digest)
    }

    /// Write the cache back, atomically.
    pub fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        // Digests of the user's files: for this user's eyes (the store is 0700 too).
        let created = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        let mut out = io::BufWriter::new(created);
        for (path, (s, d)) in &self.entries {
            let Some(p) = path.to_str() else { continue };
            if p.contains(['\t', '\n']) {
                continue;
            }
            writeln!(
                out,
                "{d}\t{}\t{}\t{}\t{}\t{p}",
                s.size, s.mtime_ns, s.ctime_ns, s.ino
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?;
        fs::rename(tmp, file)
    }
}

/// The digest of a set of context paths and everything below them: names, types, modes, link
/// targets, file contents and the xattrs COPY carries (a `setcap` changes the key, as in
/// BuildKit's content hash). Ownership and times are left out: COPY from the context gives
/// files to root (or to `--chown`) and the key must not depend on when a file was touched.
pub fn digest_paths(
    ctx: &super::Context,
    rels: &[String],
    cache: &mut HashCache,
) -> io::Result<Digest> {
    let mut h = KeyHasher::new("context-paths/v1");
    for rel in rels {
        h.str("root").str(rel);
        ctx.walk(rel, &mut |p, meta| {
            let kind = if meta.is_dir() {
                "d"
            } else if meta.file_type().is_symlink() {
                "l"
            } else if meta.is_file() {
                "f"
            } else {
                "o"
            };
            h.str(p)
                .str(kind)
                .str(&format!("{:o}", meta.mode() & 0o7777));
            let abs = ctx.root().join(p);
            for (name, value) in crate::snapshot::diff::image_xattrs(&abs) {
                h.str("xattr").str(&name).field(&value);
            }
            if meta.file_type().is_symlink() {
                h.str(&fs::read_link(&abs)?.to_string_lossy());
            } else if meta.is_file() {
                h.str(cache.file_digest(&abs, meta)?.as_str());
            }
            Ok(())
        })?;
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;

    #[test]
    fn digests_follow_content_not_mtime_and_stat_cache_avoids_reads() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ctx");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/a"), "one").unwrap();
        fs::write(root.join("src/b"), "two").unwrap();
        let ctx = Context::from_dir(&root, None).unwrap();
        let cache_file = d.path().join("hashes");
        let mut cache = HashCache::load(cache_file.clone());
        let first = digest_paths(&ctx, &["src".into()], &mut cache).unwrap();
        assert_eq!(cache.reads, 2);
        cache.save().unwrap();

        let mut cache = HashCache::load(cache_file.clone());
        assert_eq!(
            digest_paths(&ctx, &["src".into()], &mut cache).unwrap(),
            first
        );
        assert_eq!(cache.reads, 0, "unchanged files are not read again");

        // Same content, new mtime: same digest (one re-read).
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(root.join("src/a"), "one").unwrap();
        assert_eq!(
            digest_paths(&ctx, &["src".into()], &mut cache).unwrap(),
            first
        );
        assert_eq!(cache.reads, 1);

        // New content: new digest.
        fs::write(root.join("src/a"), "ONE").unwrap();
        assert_ne!(
            digest_paths(&ctx, &["src".into()], &mut cache).unwrap(),
            first
        );

        // A mode change is part of the key.
        fs::write(root.join("src/a"), "one").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("src/b"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(
            digest_paths(&ctx, &["src".into()], &mut cache).unwrap(),
            first
        );
    }

    #[test]
    fn xattrs_are_part_of_the_key() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), "x").unwrap();
        let ctx = Context::from_dir(d.path(), None).unwrap();
        let mut cache = HashCache::default();
        let before = digest_paths(&ctx, &["f".into()], &mut cache).unwrap();
        if xattr::set(d.path().join("f"), "user.kiln.test", b"v").is_err() {
            return; // no user xattrs on this filesystem
        }
        let after = digest_paths(&ctx, &["f".into()], &mut cache).unwrap();
        assert_ne!(before, after);
        xattr::set(d.path().join("f"), "user.kiln.test", b"w").unwrap();
        assert_ne!(
            digest_paths(&ctx, &["f".into()], &mut cache).unwrap(),
            after
        );
    }
}
