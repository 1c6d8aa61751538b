//! The content key of what a COPY or a bind mount reads from a stage or image filesystem.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{CopyError, Source, expand};
use crate::context::glob;
use crate::plan::step::{Copy, CopySource};
use crate::snapshot::view::View;

/// The digest of what a COPY reads from a stage or image filesystem: for each source (after
/// wildcards, with the top-level symlink followed as the copy follows it), every path below
/// it with its type, mode, owner, link target and content. Times are left out, as in BuildKit's
/// content checksums: a stage that is rebuilt into the same files gives the same digest.
pub fn digest_view_sources(view: &View, op: &Copy) -> Result<crate::digest::Digest, CopyError> {
    let mut rels = Vec::new();
    for source in &op.sources {
        let CopySource::Path(p) = source else {
            continue;
        };
        match expand(&Source::View(view), p) {
            Ok(found) => rels.extend(found),
            Err(_) if glob::has_meta(p) => {}
            Err(e) => return Err(e),
        }
    }
    digest_view_paths(view, &rels)
}

/// The digest of paths in a view and everything below them, as [`digest_view_sources`] makes
/// it (a bind mount's `source` in a stage, too).
pub fn digest_view_paths(view: &View, rels: &[String]) -> Result<crate::digest::Digest, CopyError> {
    let mut h = crate::digest::KeyHasher::new("view-paths/v1");
    for rel in rels {
        let root = view.resolve(Path::new(rel), true)?;
        h.str("root").str(rel);
        view.walk(&root, &mut |path, found| {
            let meta = &found.meta;
            let inside = path.strip_prefix(&root).unwrap_or(path);
            h.str(&inside.to_string_lossy()).str(&format!(
                "{:o} {} {}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ));
            if meta.file_type().is_symlink() {
                h.str(&fs::read_link(&found.real)?.to_string_lossy());
            } else if meta.is_file() {
                let mut hashing = crate::digest::HashingWriter::new(io::sink());
                io::copy(&mut File::open(&found.real)?, &mut hashing)?;
                h.str(hashing.finish().0.as_str());
            }
            Ok(())
        })?;
    }
    Ok(h.finish())
}
