use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use tar::Header;

use super::*;

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h
}

/// Build a tarball; `path` is written raw, so tests can use names the builder would refuse.
fn tarball(entries: &[(&str, EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut h = header(*kind, 0o644, data.len() as u64);
        {
            let g = h.as_gnu_mut().unwrap();
            g.name = [0; 100];
            g.name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                g.linkname = [0; 100];
                g.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn layer_opts() -> UnpackOptions {
    let root = rustix::process::geteuid().is_root();
    UnpackOptions {
        layer: true,
        overlay_xattr_prefix: if root { "trusted" } else { "user" },
        chown: None,
        ignore_chown_errors: !root,
        limits: None,
    }
}

#[test]
fn dotdot_escapes_are_refused() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[("../evil", EntryType::Regular, b"x", "")]);
    let err = unpack(&tar[..], dest.path(), &layer_opts()).unwrap_err();
    assert!(matches!(err, ExtractError::Escape(_)), "{err}");
    let tar = tarball(&[("a/../../evil", EntryType::Regular, b"x", "")]);
    assert!(matches!(
        unpack(&tar[..], dest.path(), &layer_opts()),
        Err(ExtractError::Escape(_))
    ));
    assert!(!dest.path().parent().unwrap().join("evil").exists());
}

#[test]
fn absolute_names_stay_inside() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[("/etc/passwd", EntryType::Regular, b"root", "")]);
    unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
    assert_eq!(fs::read(dest.path().join("etc/passwd")).unwrap(), b"root");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    let tar = tarball(&[
        ("a", EntryType::Symlink, b"", target),
        ("a/passwd", EntryType::Regular, b"pwned", ""),
    ]);
    let err = unpack(&tar[..], dest.path(), &layer_opts()).unwrap_err();
    assert!(matches!(err, ExtractError::ThroughSymlink(..)), "{err}");
    assert!(!outside.path().join("passwd").exists());
}

#[test]
fn a_relative_symlink_climbing_out_is_not_followed_either() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[
        ("up", EntryType::Symlink, b"", "../../.."),
        ("up/x", EntryType::Regular, b"pwned", ""),
    ]);
    assert!(matches!(
        unpack(&tar[..], dest.path(), &layer_opts()),
        Err(ExtractError::ThroughSymlink(..))
    ));
}

#[test]
fn a_symlink_replacing_a_file_then_written_to_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let target = outside.path().join("f");
    fs::write(&target, b"safe").unwrap();
    let tar = tarball(&[
        ("f", EntryType::Regular, b"one", ""),
        ("f", EntryType::Symlink, b"", target.to_str().unwrap()),
        ("f", EntryType::Regular, b"pwned", ""),
    ]);
    unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
    assert_eq!(
        fs::read(&target).unwrap(),
        b"safe",
        "the symlink was replaced, not followed"
    );
    assert_eq!(fs::read(dest.path().join("f")).unwrap(), b"pwned");
}

#[test]
fn hardlinks_must_point_inside() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[("h", EntryType::Link, b"", "../../etc/passwd")]);
    assert!(matches!(
        unpack(&tar[..], dest.path(), &layer_opts()),
        Err(ExtractError::BadLink(..))
    ));
    let tar = tarball(&[
        ("f", EntryType::Regular, b"data", ""),
        ("h", EntryType::Link, b"", "f"),
    ]);
    unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
    let a = fs::metadata(dest.path().join("f")).unwrap();
    let b = fs::metadata(dest.path().join("h")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn whiteouts_and_opaque_markers_become_overlay_format() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[
        ("etc/", EntryType::Directory, b"", ""),
        ("etc/.wh.gone", EntryType::Regular, b"", ""),
        ("var/", EntryType::Directory, b"", ""),
        ("var/.wh..wh..opq", EntryType::Regular, b"", ""),
    ]);
    let opts = layer_opts();
    unpack(&tar[..], dest.path(), &opts).unwrap();
    let wh = fs::symlink_metadata(dest.path().join("etc/gone")).unwrap();
    assert!(super::super::diff::is_whiteout(&wh));
    assert!(super::super::diff::is_opaque(&dest.path().join("var")));
    assert!(!dest.path().join("var/.wh..wh..opq").exists());
}

#[test]
fn outside_layer_mode_whiteout_names_are_plain_files() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[(".wh.keep", EntryType::Regular, b"k", "")]);
    unpack(&tar[..], dest.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(dest.path().join(".wh.keep")).unwrap(), b"k");
}

#[test]
fn diff_id_is_the_digest_of_the_uncompressed_stream() {
    let dest = tempfile::tempdir().unwrap();
    let tar = tarball(&[("f", EntryType::Regular, b"content", "")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let out = unpack(&gz[..], dest.path(), &layer_opts()).unwrap();
    assert_eq!(out.diff_id, Digest::of(&tar));
    assert_eq!(out.size, tar.len() as u64);
}

#[test]
fn modes_mtimes_and_readonly_dirs() {
    let dest = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Directory, 0o555, 0);
    h.set_path("ro/").unwrap();
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    let mut h = header(EntryType::Regular, 0o4711, 2);
    h.set_path("ro/suid").unwrap();
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
    let f = fs::metadata(dest.path().join("ro/suid")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o4711);
    assert_eq!(f.mtime(), 1_000_000);
    let d = fs::metadata(dest.path().join("ro")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o555);
    assert_eq!(d.mtime(), 1_000_000);
    fs::set_permissions(dest.path().join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn every_compression_is_detected() {
    let tar = tarball(&[("f", EntryType::Regular, b"z", "")]);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    let bz = bz.finish().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&tar).unwrap();
    let xz = xz.finish().unwrap();
    for data in [zst, bz, xz, tar.clone()] {
        let dest = tempfile::tempdir().unwrap();
        let out = unpack(&data[..], dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(out.diff_id, Digest::of(&tar));
        assert_eq!(fs::read(dest.path().join("f")).unwrap(), b"z");
    }
}

/// RUSTSEC-2026-0067's shape: a directory entry, then a symlink of the same name to a host
/// file. The directory's mode, applied at the end, must not reach the host file.
#[test]
fn a_directory_replaced_by_a_symlink_does_not_chmod_the_target() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"host").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::metadata(&victim).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Directory, 0o6777, 0);
    h.set_path("d/").unwrap();
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    let mut h = header(EntryType::Symlink, 0o777, 0);
    h.set_path("d").unwrap();
    h.set_link_name(&victim).unwrap();
    h.set_mtime(7);
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    let tar = b.into_inner().unwrap();
    for opts in [layer_opts(), UnpackOptions::default()] {
        let _ = unpack(&tar[..], dest.path(), &opts);
        let after = fs::metadata(&victim).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o644);
        assert_eq!(after.mtime(), before.mtime());
        assert_eq!(fs::read(&victim).unwrap(), b"host");
        assert!(
            fs::symlink_metadata(dest.path().join("d"))
                .unwrap()
                .is_symlink()
        );
    }
}

#[test]
fn only_the_xattrs_an_image_may_carry_are_applied() {
    let dest = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.keep", &b"1"[..]),
        ("SCHILY.xattr.user.overlay.opaque", &b"y"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
    ])
    .unwrap();
    let mut h = header(EntryType::Directory, 0o755, 0);
    h.set_path("x/").unwrap();
    h.set_cksum();
    b.append(&h, io::empty()).unwrap();
    let tar = b.into_inner().unwrap();
    unpack(&tar[..], dest.path(), &UnpackOptions::default()).unwrap();
    let names: Vec<String> = xattr::list(dest.path().join("x"))
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("overlay")), "{names:?}");
    if xattr::SUPPORTED_PLATFORM {
        assert_eq!(
            xattr::get(dest.path().join("x"), "user.keep")
                .ok()
                .flatten(),
            Some(b"1".to_vec()),
            "{names:?}"
        );
    }
    assert!(xattr_allowed("security.capability"));
    assert!(!xattr_allowed("security.selinux"));
    assert!(!xattr_allowed("trusted.overlay.opaque"));
    assert!(!xattr_allowed("trusted.x"));
}

#[test]
fn an_archive_bomb_stops_at_the_limits() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o644, 96 << 20);
    h.set_path("zeros").unwrap();
    h.set_cksum();
    b.append(&h, io::repeat(0).take(96 << 20)).unwrap();
    let zst = zstd::encode_all(&b.into_inner().unwrap()[..], 19).unwrap();
    assert!(zst.len() < 64 << 10, "{}", zst.len());
    let limits = crate::fetch::Limits {
        max_bytes: 8 << 30,
        max_ratio: 1000,
        read_timeout: std::time::Duration::from_secs(1),
    };
    let opts = |limits| UnpackOptions {
        limits: Some(limits),
        ..UnpackOptions::default()
    };
    let dest = tempfile::tempdir().unwrap();
    let err = unpack(&zst[..], dest.path(), &opts(limits)).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooLarge(m) if m.contains("KILN_ADD_MAX_RATIO")),
        "{err}"
    );
    let small = crate::fetch::Limits {
        max_bytes: 1 << 20,
        ..limits
    };
    let err = unpack(&zst[..], dest.path(), &opts(small)).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooLarge(m) if m.contains("KILN_ADD_MAX_BYTES")),
        "{err}"
    );
    let plenty = crate::fetch::Limits {
        max_ratio: 1 << 30,
        ..limits
    };
    unpack(&zst[..], dest.path(), &opts(plenty)).unwrap();
}
