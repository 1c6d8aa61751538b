//! Turning a snapshot directory into a layer tarball.
//!
//! A snapshot directory holds one layer's changes in overlayfs "upper" format: new and changed
//! files as they are, a deleted path as a character device 0:0 (a whiteout), and a directory
//! whose lower content is hidden marked with the `overlay.opaque` xattr. The OCI image spec's
//! layer format says the same with names: a deleted `a/b` is an empty file `a/.wh.b`, and an
//! opaque directory `a/` holds the empty file `a/.wh..wh..opq`.
//!
//! The tarball is deterministic: entries in depth-first order of byte-sorted names (the order of
//! Go's `filepath.Walk`, which BuildKit produces), no user or group names, no access or change
//! times, and with `SOURCE_DATE_EPOCH` every modification time clamped to it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// The whiteout prefix of the OCI layer format.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker of the OCI layer format.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// xattrs that overlayfs uses for its own bookkeeping; never part of an image.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// Options of a layer tarball.
#[derive(Debug, Clone, Copy, Default)]
pub struct TarOptions {
    /// Clamp every modification time to this many seconds since the epoch.
    pub source_date_epoch: Option<i64>,
}

/// What a layer holds, counted while writing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarStats {
    pub entries: u64,
    pub whiteouts: u64,
}

/// Is this directory entry an overlayfs whiteout?
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Is this directory marked opaque by overlayfs (as root: `trusted.`, rootless: `user.`)?
pub fn is_opaque(path: &Path) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(
        |prefix| matches!(xattr::get(path, format!("{prefix}opaque")), Ok(Some(v)) if v == b"y"),
    )
}

/// Write the changes of a snapshot directory as a layer tarball.
pub fn write_tar<W: Write>(dir: &Path, opts: &TarOptions, out: W) -> io::Result<(W, TarStats)> {
    let mut writer = LayerWriter {
        builder: tar::Builder::new(out),
        opts: *opts,
        links: HashMap::new(),
        stats: TarStats::default(),
    };
    writer.builder.follow_symlinks(false);
    writer.walk(dir, Path::new(""))?;
    let out = writer.builder.into_inner()?;
    Ok((out, writer.stats))
}

struct LayerWriter<W: Write> {
    builder: tar::Builder<W>,
    opts: TarOptions,
    /// Hardlinked files already written in this layer: (dev, inode) → path.
    links: HashMap<(u64, u64), PathBuf>,
    stats: TarStats,
}

impl<W: Write> LayerWriter<W> {
    fn walk(&mut self, dir: &Path, rel: &Path) -> io::Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let meta = fs::symlink_metadata(&path)?;
            if is_whiteout(&meta) {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                self.marker(&rel.with_file_name(wh), 0o600)?;
                self.stats.whiteouts += 1;
                continue;
            }
            let ft = meta.file_type();
            if ft.is_socket() {
                // Sockets cannot be stored in a tarball; BuildKit drops them too.
                continue;
            }
            self.entry(&path, &rel, &meta)?;
            if ft.is_dir() {
                if is_opaque(&path) {
                    self.marker(&rel.join(OPAQUE_MARKER), meta.mode() & 0o7777)?;
                }
                self.walk(&path, &rel)?;
            }
        }
        Ok(())
    }

    fn mtime(&self, meta: &fs::Metadata) -> u64 {
        let t = meta.mtime().max(0);
        match self.opts.source_date_epoch {
            Some(epoch) if t > epoch => epoch.max(0) as u64,
            _ => t as u64,
        }
    }

    /// An empty regular file: a whiteout (mode 0600) or the opaque marker (the directory's
    /// mode), as moby's overlay differ writes them.
    fn marker(&mut self, rel: &Path, mode: u32) -> io::Result<()> {
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header.set_mtime(0);
        self.append(header, rel, None, &[], io::empty())
    }

    fn entry(&mut self, path: &Path, rel: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let ft = meta.file_type();
        let mut header = Header::new_ustar();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(meta.uid() as u64);
        header.set_gid(meta.gid() as u64);
        header.set_mtime(self.mtime(meta));
        header.set_size(0);
        let xattrs = image_xattrs(path);
        self.stats.entries += 1;
        if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            return self.append(header, rel, None, &xattrs, io::empty());
        }
        if ft.is_symlink() {
            header.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(path)?;
            return self.append(header, rel, Some(&target), &xattrs, io::empty());
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    header.set_entry_type(EntryType::Link);
                    return self.append(header, rel, Some(&first), &xattrs, io::empty());
                }
                self.links.insert(key, rel.to_path_buf());
            }
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            let file = File::open(path)?;
            return self.append(header, rel, None, &xattrs, io::Read::take(file, meta.len()));
        }
        if ft.is_fifo() {
            header.set_entry_type(EntryType::Fifo);
        } else if ft.is_char_device() || ft.is_block_device() {
            header.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let rdev = meta.rdev();
            header.set_device_major(libc::major(rdev))?;
            header.set_device_minor(libc::minor(rdev))?;
        }
        self.append(header, rel, None, &xattrs, io::empty())
    }

    /// Append one entry, with PAX records for long names, long link targets and xattrs.
    fn append(
        &mut self,
        mut header: Header,
        rel: &Path,
        link: Option<&Path>,
        xattrs: &[(String, Vec<u8>)],
        data: impl io::Read,
    ) -> io::Result<()> {
        let mut name = rel.as_os_str().as_bytes().to_vec();
        if header.entry_type() == EntryType::Directory {
            name.push(b'/');
        }
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if set_ustar_path(&mut header, &name).is_err() {
            pax.push(("path".into(), name.clone()));
            header.as_ustar_mut().expect("ustar").name[..100]
                .copy_from_slice(&truncated(&name, 100));
        }
        if let Some(link) = link {
            let bytes = link.as_os_str().as_bytes();
            // Literally: a symlink's target is kept byte for byte (`x/.` is not `x`).
            if bytes.len() > 100 || header.set_link_name_literal(bytes).is_err() {
                pax.push(("linkpath".into(), bytes.to_vec()));
                header.as_ustar_mut().expect("ustar").linkname[..100]
                    .copy_from_slice(&truncated(bytes, 100));
            }
        }
        for (key, value) in xattrs {
            pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        header.set_cksum();
        self.builder.append(&header, data)
    }
}

/// Put a name in a ustar header: in `name` if it fits, else split at a `/` into `prefix`.
fn set_ustar_path(header: &mut Header, name: &[u8]) -> Result<(), ()> {
    let ustar = header.as_ustar_mut().ok_or(())?;
    if name.len() <= 100 {
        ustar.name = [0; 100];
        ustar.name[..name.len()].copy_from_slice(name);
        return Ok(());
    }
    // The split must leave at most 155 bytes of prefix and at most 100 of name.
    let search_end = name.len().min(156);
    let split = name[..search_end]
        .iter()
        .rposition(|&b| b == b'/')
        .filter(|&i| i > 0 && name.len() - i - 1 <= 100 && name.len() - i - 1 > 0)
        .ok_or(())?;
    ustar.prefix = [0; 155];
    ustar.prefix[..split].copy_from_slice(&name[..split]);
    ustar.name = [0; 100];
    ustar.name[..name.len() - split - 1].copy_from_slice(&name[split + 1..]);
    Ok(())
}

fn truncated(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let n = bytes.len().min(len);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// The xattrs of a file that belong in an image (all but overlayfs's own), sorted by name;
/// a symlink's own.
pub fn image_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !OVERLAY_XATTR_PREFIXES.iter().any(|p| n.starts_with(p)))
        .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n, v)))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// The entries of a tarball: (path, type, mode, size, link).
    fn entries(tar: &[u8]) -> Vec<(String, char, u32, u64, String)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let kind = match h.entry_type() {
                    EntryType::Directory => 'd',
                    EntryType::Symlink => 'l',
                    EntryType::Link => 'h',
                    EntryType::Regular => 'f',
                    EntryType::Char => 'c',
                    _ => '?',
                };
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                (
                    e.path().unwrap().display().to_string(),
                    kind,
                    h.mode().unwrap(),
                    h.size().unwrap(),
                    link,
                )
            })
            .collect()
    }

    fn tar_of(dir: &Path, opts: TarOptions) -> Vec<u8> {
        write_tar(dir, &opts, Vec::new()).unwrap().0
    }

    #[test]
    fn writes_files_dirs_links_in_sorted_depth_first_order() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/file"), b"hello").unwrap();
        fs::write(root.join("a.txt"), b"a").unwrap();
        fs::create_dir(root.join("a")).unwrap();
        symlink("../a.txt", root.join("b/link")).unwrap();
        fs::hard_link(root.join("b/c/file"), root.join("b/hard")).unwrap();
        fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
        let got = entries(&tar_of(root, TarOptions::default()));
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["a/", "a.txt", "b/", "b/c/", "b/c/file", "b/hard", "b/link"]
        );
        assert_eq!(got[1].2, 0o4755, "setuid bit kept");
        assert_eq!(got[5].1, 'h');
        assert_eq!(got[5].4, "b/c/file");
        assert_eq!(got[6].1, 'l');
        assert_eq!(got[6].4, "../a.txt");
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_oci_markers() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir(root.join("etc")).unwrap();
        // mknod of a 0:0 character device is allowed without privilege (Linux 5.8+).
        let wh = root.join("etc/gone");
        crate::snapshot::extract::mknod_whiteout(&wh).unwrap();
        fs::create_dir(root.join("opaque")).unwrap();
        let prefix = if rustix::process::geteuid().is_root() {
            "trusted"
        } else {
            "user"
        };
        xattr::set(
            root.join("opaque"),
            format!("{prefix}.overlay.opaque"),
            b"y",
        )
        .unwrap();
        let got = entries(&tar_of(root, TarOptions::default()));
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["etc/", "etc/.wh.gone", "opaque/", "opaque/.wh..wh..opq"]
        );
        assert_eq!(got[1].1, 'f');
        assert_eq!(got[1].3, 0);
    }

    #[test]
    fn long_names_and_link_targets_survive() {
        let d = tempfile::tempdir().unwrap();
        let long_dir = "d".repeat(120);
        let long_file = "f".repeat(130);
        fs::create_dir(d.path().join(&long_dir)).unwrap();
        fs::write(d.path().join(&long_dir).join(&long_file), b"x").unwrap();
        let target = "t".repeat(150);
        symlink(&target, d.path().join("l")).unwrap();
        let got = entries(&tar_of(d.path(), TarOptions::default()));
        assert_eq!(got[0].0, format!("{long_dir}/"));
        assert_eq!(got[1].0, format!("{long_dir}/{long_file}"));
        assert_eq!(got[2].4, target);
    }

    #[test]
    fn source_date_epoch_clamps_mtimes_and_output_is_deterministic() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), b"x").unwrap();
        let opts = TarOptions {
            source_date_epoch: Some(1000),
        };
        let a = tar_of(d.path(), opts);
        let mut archive = tar::Archive::new(&a[..]);
        let mtime = archive
            .entries()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .header()
            .mtime()
            .unwrap();
        assert_eq!(mtime, 1000);
        // Touch the file: with the clamp, the tarball does not change.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(d.path().join("f"), b"x").unwrap();
        assert_eq!(tar_of(d.path(), opts), a);
    }

    #[test]
    fn overlay_xattrs_are_not_exported_but_user_xattrs_are() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        if xattr::set(&f, "user.kiln.test", b"v").is_err() {
            return; // the filesystem has no user xattrs
        }
        xattr::set(&f, "user.overlay.origin", b"o").unwrap();
        let tar = tar_of(d.path(), TarOptions::default());
        let mut archive = tar::Archive::new(&tar[..]);
        let mut e = archive.entries().unwrap().next().unwrap().unwrap();
        let exts: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            exts,
            [("SCHILY.xattr.user.kiln.test".to_string(), b"v".to_vec())]
        );
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
    }
}
