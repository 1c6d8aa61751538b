//! Cache mounts on volumes the caller provides: the operator mounts one PersistentVolumeClaim
//! per cache and says, with `--cache-volume`, which cache each one holds. A step's cache mount
//! whose identity (id, owner, mode and seed, as BuildKit keys a cache) matches a volume uses
//! that volume as the root of its cache instead of the state directory; everything inside it,
//! instances and `flock` sharing, is [`super::cache`]'s, unchanged. So two pods that mount the
//! same claim coordinate exactly as two steps of one build do.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::Deserialize;

use crate::plan::step::Input;

/// One `--cache-volume`: a cache's identity and the directory that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheVolume {
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The seed (`from=`), as the plan writes it.
    #[serde(default)]
    pub from: Option<Input>,
    /// The path in `from` that seeds the cache; absent (or `/`) for its root.
    #[serde(default)]
    pub source: Option<String>,
    pub dir: PathBuf,
}

impl CacheVolume {
    /// Reads a `--cache-volume` value: a JSON object (`{"id":…,"uid":…,"gid":…,"mode":…,
    /// "from":…,"source":…,"dir":…}`), as the operator writes it.
    pub fn parse(text: &str) -> Result<CacheVolume, String> {
        serde_json::from_str(text).map_err(|e| {
            format!("--cache-volume {text:?}: {e} (expected a JSON object with id, uid, gid, mode, dir and optionally from and source)")
        })
    }

    /// Whether a step's cache mount is this volume's cache.
    pub fn matches(&self, m: &Identity<'_>) -> bool {
        let Identity {
            id,
            uid,
            gid,
            mode,
            from,
            source,
        } = *m;
        let seed_path = |s: Option<&str>| match s {
            None | Some("/") | Some("") => "/".to_string(),
            Some(p) => p.to_string(),
        };
        self.id == id
            && self.uid == uid
            && self.gid == gid
            && self.mode == mode
            && self.from.as_ref() == from
            && (from.is_none() || seed_path(self.source.as_deref()) == seed_path(Some(source)))
    }
}

/// A step's cache mount, as far as its identity goes.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub id: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub from: Option<&'a Input>,
    pub source: &'a str,
}

/// The root directory for a cache mount: the matching volume's, else `default`.
pub fn root_for<'a>(volumes: &'a [CacheVolume], default: &'a Path, m: &Identity<'_>) -> &'a Path {
    volumes
        .iter()
        .find(|v| v.matches(m))
        .map(|v| v.dir.as_path())
        .unwrap_or(default)
}

/// `kiln prepare-volumes`: gives each volume's root directory to `uid:gid`, mode 0700, so that
/// a rootless worker can use a volume that its storage created owned by root (a hostPath
/// provisioner ignores `fsGroup`). Run by an init container that may only chown.
///
/// It works on the directory through one descriptor opened without following a symlink, and
/// touches nothing below it.
pub fn prepare(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let named = |e: rustix::io::Errno, what: &str| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("{what} {}: {e}", dir.display()),
        )
    };
    // O_PATH: the directory's own permissions do not matter to look at it, and a volume that
    // an earlier build prepared (0700, the worker's) must not fail the next one.
    let path_fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| named(e, "opening"))?;
    let st = rustix::fs::fstat(&path_fd).map_err(|e| named(e, "stat"))?;
    if st.st_uid == uid && st.st_gid == gid && st.st_mode & 0o7777 == 0o700 {
        return Ok(());
    }
    // The same inode, opened for real through the descriptor (no path lookup that a swap could
    // redirect): root owns a fresh volume, so it may read it.
    let file = File::from(
        rustix::fs::open(
            format!("/proc/self/fd/{}", path_fd.as_raw_fd()),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| named(e, "opening"))?,
    );
    // The mode first: once the directory is given away, only CAP_FOWNER could change it, and
    // the init container holds CAP_CHOWN alone.
    if st.st_mode & 0o7777 != 0o700 {
        rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(0o700))
            .map_err(|e| named(e, "chmod"))?;
    }
    if st.st_uid != uid || st.st_gid != gid {
        rustix::fs::fchown(
            file.as_fd(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| named(e, "chown"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn vol(from: Option<Input>, source: Option<&str>) -> CacheVolume {
        CacheVolume {
            id: "go".into(),
            uid: 0,
            gid: 0,
            mode: 0o755,
            from,
            source: source.map(Into::into),
            dir: "/kiln/caches/x".into(),
        }
    }

    fn ident<'a>(
        id: &'a str,
        uid: u32,
        mode: u32,
        from: Option<&'a Input>,
        source: &'a str,
    ) -> Identity<'a> {
        Identity {
            id,
            uid,
            gid: 0,
            mode,
            from,
            source,
        }
    }

    #[test]
    fn the_operators_json_parses_and_matches_by_identity() {
        let v = CacheVolume::parse(
            r#"{"id":"go","uid":0,"gid":0,"mode":493,"from":null,"source":null,"dir":"/kiln/caches/x"}"#,
        )
        .unwrap();
        assert_eq!(v, vol(None, None));
        assert!(v.matches(&ident("go", 0, 0o755, None, "/")));
        assert!(
            !v.matches(&ident("go", 1000, 0o755, None, "/")),
            "another owner is another cache"
        );
        assert!(!v.matches(&ident("go", 0, 0o700, None, "/")));
        assert!(!v.matches(&ident("npm", 0, 0o755, None, "/")));
        assert!(!v.matches(&ident("go", 0, 0o755, Some(&Input::Stage(1)), "/")));
        let seeded = CacheVolume::parse(
            r#"{"id":"go","uid":0,"gid":0,"mode":493,"from":{"stage":1},"source":"/seed","dir":"/v"}"#,
        )
        .unwrap();
        assert!(seeded.matches(&ident("go", 0, 0o755, Some(&Input::Stage(1)), "/seed")));
        assert!(!seeded.matches(&ident("go", 0, 0o755, Some(&Input::Stage(1)), "/")));
        assert!(vol(Some(Input::Context), None).matches(&ident(
            "go",
            0,
            0o755,
            Some(&Input::Context),
            "/"
        )));
        let err = CacheVolume::parse(r#"{"id":"go"}"#).unwrap_err();
        assert!(err.contains("--cache-volume"), "{err}");
    }

    #[test]
    fn a_volume_root_is_given_to_the_worker_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("claim");
        std::fs::create_dir(&vol).unwrap();
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o750)).unwrap();
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        prepare(&vol, me.0, me.1).unwrap();
        let m = std::fs::metadata(&vol).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        // A symlink planted in place of the volume is refused, and its target untouched.
        let target = d.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(prepare(&link, me.0, me.1).is_err());
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o755);
    }
}
