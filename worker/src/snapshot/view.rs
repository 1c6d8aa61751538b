//! The merged view of a stack of snapshot directories, read without mounting anything.
//!
//! It answers what an overlayfs mount of the same layers would show: the topmost layer that has
//! a path wins; a whiteout hides the path in every layer below; a directory merges with the
//! directories below it unless it is opaque or a layer below has a non-directory there. COPY
//! uses it to read other stages and to find where its destination lands, `--chown` uses it to
//! read `/etc/passwd`, and the local exporter uses it to write the final filesystem.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::diff::{is_opaque, is_whiteout};

/// A stack of layer directories, topmost first.
#[derive(Debug, Clone, Default)]
pub struct View {
    layers: Vec<PathBuf>,
}

/// A path found in the view.
#[derive(Debug)]
pub struct Found {
    /// The real path, inside the layer that provides it.
    pub real: PathBuf,
    pub meta: fs::Metadata,
    /// Index of that layer, 0 being the topmost.
    pub layer: usize,
}

impl View {
    pub fn new(layers: Vec<PathBuf>) -> View {
        View { layers }
    }

    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The layers a path's merge draws on: for a directory, every layer it merges from.
    fn stack(&self, rel: &Path) -> Option<(Found, Vec<usize>)> {
        let comps: Vec<_> = normal_components(rel);
        let mut active: Vec<usize> = (0..self.layers.len()).collect();
        if comps.is_empty() {
            let real = self.layers.first()?.clone();
            let meta = fs::symlink_metadata(&real).ok()?;
            return Some((
                Found {
                    real,
                    meta,
                    layer: 0,
                },
                active,
            ));
        }
        let mut prefix = PathBuf::new();
        for (i, comp) in comps.iter().enumerate() {
            prefix.push(comp);
            let mut found: Option<Found> = None;
            let mut next = Vec::new();
            for &l in &active {
                let real = self.layers[l].join(&prefix);
                let Ok(meta) = fs::symlink_metadata(&real) else {
                    continue;
                };
                if is_whiteout(&meta) {
                    break;
                }
                let is_dir = meta.is_dir();
                if !is_dir && found.is_some() {
                    break;
                }
                let opaque = is_dir && is_opaque(&real);
                if found.is_none() {
                    found = Some(Found {
                        real,
                        meta,
                        layer: l,
                    });
                }
                if !is_dir {
                    break;
                }
                next.push(l);
                if opaque {
                    break;
                }
            }
            let found = found?;
            if i + 1 == comps.len() {
                return Some((found, next));
            }
            if !found.meta.is_dir() {
                return None;
            }
            active = next;
        }
        None
    }

    /// `lstat` of a merged path. Symlinks are not followed, in any component.
    pub fn lstat(&self, rel: &Path) -> Option<Found> {
        self.stack(rel).map(|(found, _)| found)
    }

    /// The real directories that make up a merged directory, topmost first: the lower layers an
    /// overlay of just that directory needs (a bind mount `from` a stage with a `source`).
    pub fn dir_layers(&self, rel: &Path) -> Option<Vec<PathBuf>> {
        let (found, layers) = self.stack(rel)?;
        if !found.meta.is_dir() {
            return None;
        }
        let rel = rel_clean(rel);
        Some(layers.iter().map(|&l| self.layers[l].join(&rel)).collect())
    }

    /// The names in a merged directory, sorted by bytes.
    pub fn read_dir(&self, rel: &Path) -> io::Result<Vec<OsString>> {
        let (found, layers) = self.stack(rel).ok_or_else(|| not_found(rel))?;
        if !found.meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let mut names: BTreeMap<Vec<u8>, (OsString, bool)> = BTreeMap::new();
        for &l in &layers {
            let dir = self.layers[l].join(rel_clean(rel));
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let key = name.as_bytes().to_vec();
                if names.contains_key(&key) {
                    continue;
                }
                let hidden = entry.metadata().map(|m| is_whiteout(&m)).unwrap_or(false);
                names.insert(key, (name, hidden));
            }
        }
        Ok(names
            .into_values()
            .filter(|(_, hidden)| !hidden)
            .map(|(n, _)| n)
            .collect())
    }

    /// Resolve symlinks in a path the way the kernel would inside a chroot at the view's root:
    /// `..` and absolute targets never leave the root. The last component is followed only when
    /// `follow_last` is set. The result need not exist.
    pub fn resolve(&self, rel: &Path, follow_last: bool) -> io::Result<PathBuf> {
        crate::fsroot::resolve_lexically(rel, follow_last, &mut |candidate| match self
            .lstat(candidate)
        {
            Some(f) if f.meta.file_type().is_symlink() => Ok(Some(fs::read_link(&f.real)?)),
            _ => Ok(None),
        })
    }

    /// Read a whole file, following symlinks inside the root.
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        let resolved = self.resolve(rel, true)?;
        let found = self.lstat(&resolved).ok_or_else(|| not_found(rel))?;
        if !found.meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file", rel.display()),
            ));
        }
        fs::read(found.real)
    }

    /// Walk a merged tree depth-first in byte order, calling `visit` with each path relative to
    /// the view's root (the start included).
    pub fn walk(
        &self,
        start: &Path,
        visit: &mut dyn FnMut(&Path, &Found) -> io::Result<()>,
    ) -> io::Result<()> {
        let found = self.lstat(start).ok_or_else(|| not_found(start))?;
        visit(start, &found)?;
        if found.meta.is_dir() {
            for name in self.read_dir(start)? {
                self.walk(&start.join(name), visit)?;
            }
        }
        Ok(())
    }
}

fn not_found(rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", rel.display()),
    )
}

fn rel_clean(rel: &Path) -> PathBuf {
    normal_components(rel).iter().collect()
}

fn normal_components(rel: &Path) -> Vec<OsString> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::snapshot::extract::{mknod_whiteout, set_opaque};

    fn prefix() -> &'static str {
        if rustix::process::geteuid().is_root() {
            "trusted"
        } else {
            "user"
        }
    }

    /// Three layers: bottom has /etc/{passwd,group}, /var/{a,b}, /data (file);
    /// middle deletes /etc/group and makes /var opaque with /var/c;
    /// top replaces the file /data with a directory and adds /etc/hosts.
    fn stack() -> (tempfile::TempDir, View) {
        let d = tempfile::tempdir().unwrap();
        let (top, mid, bot) = (
            d.path().join("top"),
            d.path().join("mid"),
            d.path().join("bot"),
        );
        for dir in [
            &bot.join("etc"),
            &bot.join("var"),
            &mid.join("etc"),
            &mid.join("var"),
            &top.join("etc"),
            &top.join("data"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(bot.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(bot.join("etc/group"), "root:x:0:\n").unwrap();
        fs::write(bot.join("var/a"), "a").unwrap();
        fs::write(bot.join("var/b"), "b").unwrap();
        fs::write(bot.join("data"), "file").unwrap();
        mknod_whiteout(&mid.join("etc/group")).unwrap();
        set_opaque(&mid.join("var"), prefix()).unwrap();
        fs::write(mid.join("var/c"), "c").unwrap();
        fs::write(top.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(top.join("data/inner"), "i").unwrap();
        (d, View::new(vec![top, mid, bot]))
    }

    #[test]
    fn merges_like_overlayfs() {
        let (_d, view) = stack();
        let names = |p: &str| -> Vec<String> {
            view.read_dir(Path::new(p))
                .unwrap()
                .into_iter()
                .map(|n| n.into_string().unwrap())
                .collect()
        };
        assert_eq!(names("etc"), ["hosts", "passwd"]);
        assert_eq!(names("var"), ["c"], "opaque hides the lower a and b");
        assert_eq!(names("data"), ["inner"]);
        assert_eq!(names(""), ["data", "etc", "var"]);
        assert!(view.lstat(Path::new("etc/group")).is_none());
        assert!(view.lstat(Path::new("var/a")).is_none());
        assert_eq!(view.lstat(Path::new("etc/passwd")).unwrap().layer, 2);
        assert!(view.lstat(Path::new("data")).unwrap().meta.is_dir());
        assert_eq!(
            view.read(Path::new("/etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (d, view) = stack();
        let top = d.path().join("top");
        symlink("/etc", top.join("etc-abs")).unwrap();
        symlink("../../../../etc/passwd", top.join("etc/climb")).unwrap();
        symlink("loop2", top.join("loop1")).unwrap();
        symlink("loop1", top.join("loop2")).unwrap();
        assert_eq!(
            view.resolve(Path::new("etc-abs/passwd"), true).unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(
            view.resolve(Path::new("etc/climb"), true).unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(
            view.resolve(Path::new("etc/climb"), false).unwrap(),
            Path::new("etc/climb")
        );
        assert_eq!(
            view.read(Path::new("etc-abs/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(
            view.resolve(Path::new("loop1"), true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            view.resolve(Path::new("../../x"), true).unwrap(),
            Path::new("x")
        );
    }

    #[test]
    fn walk_visits_the_merged_tree_in_order() {
        let (_d, view) = stack();
        let mut seen = Vec::new();
        view.walk(Path::new(""), &mut |p, _| {
            seen.push(p.display().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "",
                "data",
                "data/inner",
                "etc",
                "etc/hosts",
                "etc/passwd",
                "var",
                "var/c"
            ]
        );
    }
}
