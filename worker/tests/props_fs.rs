//! Property tests of the filesystem side: a tree written as a layer tarball and unpacked again
//! is the same tree (names, types, modes, contents, link targets, times).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_worker::snapshot::diff::{TarOptions, write_tar};
use kiln_worker::snapshot::extract::{UnpackOptions, unpack};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(String),
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (
            prop::collection::vec(any::<u8>(), 0..300),
            prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o2750, 0o444])
        )
            .prop_map(|(c, m)| Node::File(c, m)),
        prop::sample::select(vec![0o755u32, 0o700, 0o555, 0o1777]).prop_map(Node::Dir),
        "(/|\\.\\./)?[a-c./]{1,8}".prop_map(Node::Link),
    ]
}

fn tree() -> impl Strategy<Value = Vec<(String, Node, i64)>> {
    prop::collection::vec(
        (
            "[a-c]{1,2}(/[a-c]{1,2}){0,2}",
            node(),
            1_000_000i64..2_000_000_000,
        ),
        1..16,
    )
}

/// Make the tree under `root`; a path whose parent is not a directory is skipped.
fn make(root: &Path, entries: &[(String, Node, i64)]) {
    let mut dirs = Vec::new();
    for (path, node, mtime) in entries {
        let p = root.join(path);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        let parent_ok = p.parent().is_some_and(|parent| {
            let mut cur = root.to_path_buf();
            for c in parent.strip_prefix(root).unwrap().components() {
                cur.push(c);
                match std::fs::symlink_metadata(&cur) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return false,
                    Err(_) => std::fs::create_dir(&cur).unwrap(),
                }
            }
            true
        });
        if !parent_ok {
            continue;
        }
        match node {
            Node::File(content, mode) => {
                std::fs::write(&p, content).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                set_mtime(&p, *mtime);
            }
            Node::Dir(mode) => {
                std::fs::create_dir(&p).unwrap();
                dirs.push((p, *mode, *mtime));
            }
            Node::Link(target) => {
                std::os::unix::fs::symlink(target, &p).unwrap();
                set_mtime(&p, *mtime);
            }
        }
    }
    for (p, mode, mtime) in dirs.into_iter().rev() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&p, mtime);
    }
}

fn set_mtime(p: &Path, secs: i64) {
    kiln_worker::snapshot::extract::set_mtime(p, secs).unwrap();
}

/// Every path below `root` with what the round trip must keep. Directory times are left out
/// when the directory holds entries made after it was timed (the parents created on the way).
fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let m = std::fs::symlink_metadata(entry.path()).unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
        let what = if m.file_type().is_symlink() {
            format!(
                "link {} {}",
                std::fs::read_link(entry.path()).unwrap().display(),
                m.mtime()
            )
        } else if m.is_dir() {
            format!("dir {:o}", m.mode() & 0o7777)
        } else {
            format!(
                "file {:o} {} {:?}",
                m.mode() & 0o7777,
                m.mtime(),
                std::fs::read(entry.path()).unwrap()
            )
        };
        out.insert(rel, what);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_tree_survives_a_tar_round_trip(entries in tree()) {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        make(&src, &entries);
        let (tar, _) = write_tar(&src, &TarOptions::default(), Vec::new()).unwrap();
        let opts = UnpackOptions {
            ignore_chown_errors: true,
            ..UnpackOptions::default()
        };
        unpack(&tar[..], &dst, &opts).unwrap();
        prop_assert_eq!(describe(&src), describe(&dst));
        // Nothing appeared beside the destination.
        let beside: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        prop_assert_eq!(beside.len(), 2);
    }
}
