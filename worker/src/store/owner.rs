//! Who owns a temporary entry, decided by a lock rather than by a pid.
//!
//! Two `kiln` processes can share a store or a cache directory from different pid namespaces
//! (two pods on one volume): a pid from one means nothing in the other, and "no such process"
//! there is no proof that the owner is gone. So each process names its temporary entries with
//! an *owner token* and holds `flock(LOCK_EX)` on `.owner-<token>.lock` in the same directory
//! for as long as it lives. An entry is stale exactly when that lock can be taken: the kernel
//! drops a lock when its holder dies, in any namespace, on any node that shares the lock.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const PREFIX: &str = ".owner-";
const SUFFIX: &str = ".lock";

/// This process's token: hex only (no `-`, so it can sit between dashes in a name), unique
/// across pid namespaces (the pid alone is not).
pub fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        // Short: it ends up in socket paths (108 bytes at most) below the store.
        let mut random = [0u8; 6];
        if File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .is_err()
        {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            random.copy_from_slice(&nanos.to_le_bytes()[..6]);
        }
        format!("{:x}x{}", std::process::id(), hex::encode(random))
    })
}

/// Take (once per directory, for the life of the process) this process's owner lock in `dir`,
/// and return the token to put in the names of the entries made there.
pub fn claim(dir: &Path) -> io::Result<&'static str> {
    let mut held = held();
    if !held.contains_key(dir) {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(dir, token()))?;
        crate::fsroot::lock(&file, true, true)?;
        held.insert(dir.to_path_buf(), file);
    }
    Ok(token())
}

fn held() -> std::sync::MutexGuard<'static, HashMap<PathBuf, File>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Remove this process's owner lock files, at a clean exit: nothing it made is left to own
/// (a later `claim` takes a new lock).
pub fn release_all() {
    for (dir, file) in held().drain() {
        let _ = std::fs::remove_file(lock_path(&dir, token()));
        drop(file);
    }
}

fn lock_path(dir: &Path, token: &str) -> PathBuf {
    dir.join(format!("{PREFIX}{token}{SUFFIX}"))
}

/// Whether the owner of `token` in `dir` is alive: its lock file exists and is held.
pub fn is_live(dir: &Path, token: &str) -> bool {
    if token == self::token() {
        return true;
    }
    let Ok(file) = File::open(lock_path(dir, token)) else {
        return false;
    };
    !matches!(crate::fsroot::lock(&file, true, false), Ok(true))
}

/// The token of an owner lock file's name, if `name` is one.
pub fn lock_token(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)
}

/// Remove the lock file of a dead owner (`is_live` said no). Taken first, so a live owner's is
/// never removed.
pub fn remove_dead(dir: &Path, token: &str) {
    let path = lock_path(dir, token);
    if let Ok(file) = File::open(&path)
        && matches!(crate::fsroot::lock(&file, true, false), Ok(true))
    {
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_lock_not_the_pid() {
        let d = tempfile::tempdir().unwrap();
        let me = claim(d.path()).unwrap();
        assert!(!me.contains('-'));
        assert!(is_live(d.path(), me));
        // Another owner whose lock nobody holds (its process died) is not live, even if its
        // pid happens to be ours or another running process's.
        let dead = format!("{:x}x00x1", std::process::id());
        std::fs::write(lock_path(d.path(), &dead), b"").unwrap();
        assert!(!is_live(d.path(), &dead));
        // One that holds its lock (another process, here another open file) is live.
        let other = "1x11x1";
        let f = File::create(lock_path(d.path(), other)).unwrap();
        crate::fsroot::lock(&f, true, true).unwrap();
        assert!(is_live(d.path(), other));
        remove_dead(d.path(), other);
        assert!(lock_path(d.path(), other).exists());
        drop(f);
        assert!(!is_live(d.path(), other));
        remove_dead(d.path(), other);
        assert!(!lock_path(d.path(), other).exists());
        assert!(!is_live(d.path(), "nobody"));
    }
}
