//! `kiln prune` and the automatic GC at the end of a build, with `docker builder prune`'s policy:
//! filters pick the candidates, `--keep-storage` turns the removal into an LRU cap, and
//! `--keep-duration` spares what was used recently.
//!
//! Removal is a rename out of the store first (so a record disappears whole, and a reader sees
//! it or not), then a delete. Records a running build uses are never touched: step results,
//! layers, blobs and sources only go when no build holds the store lock, and a cache-mount
//! instance only when its own lock can be taken.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Kind, Record, StoreLock, records};
use crate::store::remove_tree;

/// Which records a prune considers.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only records last used at least this long ago (`until=24h`, `unused-for=24h`).
    pub until: Option<Duration>,
    /// Only these kinds (`type=cache-mount`); several values are alternatives.
    pub kinds: Vec<Kind>,
    /// Only records whose id starts with one of these (`id=...`).
    pub ids: Vec<String>,
    /// Only records whose description contains one of these (`description=...`).
    pub descriptions: Vec<String>,
}

impl Filters {
    /// Parse `--filter KEY=VALUE` options.
    pub fn parse(specs: &[String]) -> Result<Filters, String> {
        let mut f = Filters::default();
        for spec in specs {
            let (key, value) = spec
                .split_once("==")
                .or_else(|| spec.split_once('='))
                .ok_or_else(|| format!("--filter {spec:?}: expected KEY=VALUE"))?;
            match key {
                "until" | "unused-for" | "unused_for" => {
                    f.until = Some(parse_duration(value).map_err(|e| format!("--filter {spec:?}: {e}"))?);
                }
                "type" => f.kinds.push(Kind::parse(value).ok_or_else(|| {
                    format!("--filter {spec:?}: unknown type; use step, layer, cache-mount, source or blob")
                })?),
                "id" => f.ids.push(value.to_string()),
                "description" | "description~" => f.descriptions.push(value.to_string()),
                other => {
                    return Err(format!(
                        "--filter {spec:?}: unknown filter {other:?}; use until, type, id or description"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// Whether a record passes the filters at time `now` (seconds since the epoch).
    pub fn selects(&self, r: &Record, now: u64) -> bool {
        if let Some(until) = self.until
            && r.last_used.saturating_add(until.as_secs()) > now
        {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&r.kind) {
            return false;
        }
        if !self.ids.is_empty() && !self.ids.iter().any(|id| r.id.starts_with(id.as_str())) {
            return false;
        }
        if !self.descriptions.is_empty()
            && !self
                .descriptions
                .iter()
                .any(|d| r.description.contains(d.as_str()))
        {
            return false;
        }
        true
    }
}

/// What to remove.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Every kind, base image layers included. Without it, layers of base images stay (they are
    /// what `docker builder prune` without `--all` keeps: images, not build cache).
    pub all: bool,
    pub filters: Filters,
    /// Remove least-recently-used candidates only until the cache is at most this big.
    pub keep_storage: Option<u64>,
    /// Spare records used within this time.
    pub keep_duration: Option<Duration>,
    /// Report what would go, remove nothing.
    pub dry_run: bool,
}

/// What a prune did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub removed: Vec<Record>,
    /// Bytes freed (or that would be, in a dry run).
    pub freed: u64,
    /// The cache's size before.
    pub before: u64,
    /// Records left alone because a running build holds them.
    pub in_use: usize,
    /// True when builds were running, so only unused cache-mount instances could go.
    pub builds_running: bool,
    pub dry_run: bool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Prune the store at `root`.
pub fn prune(root: &Path, policy: &Policy) -> io::Result<Report> {
    let _exclusive = StoreLock::try_exclusive(root)?;
    let builds_running = _exclusive.is_none();
    if !builds_running && !policy.dry_run {
        // Nothing runs: whatever is in tmp/ is left over.
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = remove_tree(&entry.path());
            }
        }
        clean_cache_mount_leftovers(root);
    }
    let all = records(root)?;
    let now = now_secs();
    let before: u64 = all.iter().map(|r| r.size).sum();
    let mut report = Report {
        before,
        builds_running,
        dry_run: policy.dry_run,
        ..Report::default()
    };
    let mut candidates: Vec<&Record> = Vec::new();
    for r in &all {
        let default_kind = policy.all || r.kind != Kind::Layer || !policy.filters.kinds.is_empty();
        if !default_kind || !policy.filters.selects(r, now) {
            continue;
        }
        if let Some(keep) = policy.keep_duration
            && r.last_used.saturating_add(keep.as_secs()) > now
        {
            continue;
        }
        if r.in_use || (builds_running && r.kind != Kind::CacheMount) {
            report.in_use += 1;
            continue;
        }
        candidates.push(r);
    }
    // Least recently used first, so that a storage cap removes the oldest.
    candidates.sort_by_key(|r| (r.last_used, r.id.clone()));
    let mut total = before;
    let mut chosen: Vec<&Record> = Vec::new();
    for r in candidates {
        if policy.keep_storage.is_some_and(|keep| total <= keep) {
            break;
        }
        total = total.saturating_sub(r.size);
        chosen.push(r);
    }
    // A blob that a kept record still refers to stays, whoever it was counted under.
    let chosen_ids: HashSet<(Kind, &str)> =
        chosen.iter().map(|r| (r.kind, r.id.as_str())).collect();
    let kept_blobs: HashSet<&Path> = all
        .iter()
        .filter(|r| !chosen_ids.contains(&(r.kind, r.id.as_str())))
        .flat_map(|r| r.refers.iter().map(PathBuf::as_path))
        .collect();
    for r in chosen {
        let removed = if policy.dry_run {
            true
        } else {
            remove_record(root, r, &kept_blobs)?
        };
        if removed {
            report.freed += r.size;
            report.removed.push(r.clone());
        } else {
            report.in_use += 1;
        }
    }
    if !policy.dry_run {
        clean_dangling_aliases(root);
    }
    Ok(report)
}

/// Remove one record; `false` when a build took it in the meantime (cache-mount instances).
fn remove_record(root: &Path, r: &Record, kept_blobs: &HashSet<&Path>) -> io::Result<bool> {
    let trash = |n: usize| {
        root.join("tmp").join(format!(
            "prune-{}-{}-{n}",
            std::process::id(),
            r.id.replace(['/', '#'], "_")
        ))
    };
    match r.kind {
        Kind::CacheMount => {
            // Take the instance's lock, as a step would: a step that holds it keeps the instance.
            let Some(lock) = r.lock.as_ref() else {
                return Ok(false);
            };
            let Ok(file) = File::open(lock) else {
                return Ok(false);
            };
            if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                return Ok(false);
            }
            for p in &r.paths {
                remove_path(p, &trash(0))?;
            }
            Ok(true)
        }
        _ => {
            for (n, p) in r.paths.iter().enumerate() {
                if !kept_blobs.contains(p.as_path()) {
                    remove_path(p, &trash(n))?;
                }
            }
            Ok(true)
        }
    }
}

/// Move a path out of the way, then delete it.
fn remove_path(path: &Path, trash: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    // Moving (rather than deleting in place) makes the record vanish in one step.
    match fs::rename(path, trash) {
        Ok(()) => remove_tree(trash),
        Err(_) => remove_tree(path),
    }
}

/// Aliases (definition keys of a COPY from a stage) whose step result is gone.
fn clean_dangling_aliases(root: &Path) {
    let Ok(entries) = fs::read_dir(root.join("aliases")) else {
        return;
    };
    for entry in entries.flatten() {
        let gone = fs::read_link(entry.path())
            .map(|id| !root.join("snapshots").join(id).join("meta.json").exists())
            .unwrap_or(true);
        if gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Cache-mount instances half made by a crashed process (`<n>.new-<owner>-<seq>`, the owner's
/// lock no longer held).
fn clean_cache_mount_leftovers(root: &Path) {
    let Ok(keys) = fs::read_dir(root.join("cache-mounts")) else {
        return;
    };
    for key in keys.flatten() {
        let Ok(entries) = fs::read_dir(key.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, rest)) = name.split_once(".new-") else {
                continue;
            };
            let token = rest.split('-').next().unwrap_or_default();
            if !crate::store::owner::is_live(&key.path(), token) {
                let _ = remove_tree(&entry.path());
            }
        }
    }
}

/// A duration as `docker builder prune` takes it: Go's format (`24h`, `90m`), or days (`7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Some(days) = text.strip_suffix('d')
        && let Ok(n) = days.parse::<f64>()
        && n >= 0.0
    {
        return Duration::try_from_secs_f64(n * 86400.0).map_err(|e| e.to_string());
    }
    kiln_crds::duration::parse(text).map_err(|e| e.to_string())
}

/// A size as Docker (`10GB`, `512mb`, binary multiples) or Kubernetes (`10Gi`, `500M`) write it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let digits = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits);
    let docker_unit = match unit.trim() {
        "" | "b" => Some(1u64),
        "k" | "kb" => Some(1 << 10),
        "m" | "mb" => Some(1 << 20),
        "g" | "gb" => Some(1 << 30),
        "t" | "tb" => Some(1 << 40),
        _ => None,
    };
    if let (Ok(n), Some(unit)) = (number.parse::<f64>(), docker_unit)
        && n >= 0.0
    {
        return Ok((n * unit as f64).ceil() as u64);
    }
    kiln_crds::quantity::parse_bytes(t)
        .map_err(|_| format!("{text:?} is not a size such as 10GB, 512MB or 10Gi"))
}

/// Bytes for people: `1.2GB`, `340MB`, `12kB`, as Docker shows them (decimal units).
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    let (value, unit) = match bytes {
        0..1_000 => return format!("{bytes}B"),
        1_000..1_000_000 => (format!("{:.1}", b / 1e3), "kB"),
        1_000_000..1_000_000_000 => (format!("{:.1}", b / 1e6), "MB"),
        _ => (format!("{:.2}", b / 1e9), "GB"),
    };
    let value = value.trim_end_matches('0').trim_end_matches('.');
    format!("{value}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_docker_and_kubernetes_units() {
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1GB").is_err());
    }

    #[test]
    fn durations_take_days_too() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn filters_parse_and_reject_unknown_keys() {
        let f = Filters::parse(&[
            "until=24h".into(),
            "type=cache-mount".into(),
            "type==exec.cachemount".into(),
            "id=abc".into(),
        ])
        .unwrap();
        assert_eq!(f.until, Some(Duration::from_secs(86400)));
        assert_eq!(f.kinds, [Kind::CacheMount, Kind::CacheMount]);
        assert_eq!(f.ids, ["abc"]);
        assert!(
            Filters::parse(&["colour=red".into()])
                .unwrap_err()
                .contains("unknown filter")
        );
        assert!(
            Filters::parse(&["type=image".into()])
                .unwrap_err()
                .contains("unknown type")
        );
        assert!(Filters::parse(&["until".into()]).is_err());
    }

    fn record(kind: Kind, id: &str, last_used: u64) -> Record {
        Record {
            kind,
            id: id.into(),
            size: 1,
            last_used,
            description: "cache mount apt".into(),
            in_use: false,
            paths: vec![],
            refers: vec![],
            lock: None,
        }
    }

    #[test]
    fn filters_match_on_every_key() {
        let now = 100_000;
        let old = record(Kind::Step, "abcdef", now - 90_000);
        let new = record(Kind::CacheMount, "apt#0", now - 10);
        let f = Filters::parse(&["until=24h".into()]).unwrap();
        assert!(f.selects(&old, now) && !f.selects(&new, now));
        let f = Filters::parse(&["type=cache-mount".into()]).unwrap();
        assert!(!f.selects(&old, now) && f.selects(&new, now));
        let f = Filters::parse(&["id=abc".into(), "id=apt".into()]).unwrap();
        assert!(f.selects(&old, now) && f.selects(&new, now));
        let f = Filters::parse(&["id=zzz".into()]).unwrap();
        assert!(!f.selects(&old, now));
        let f = Filters::parse(&["description=apt".into()]).unwrap();
        assert!(f.selects(&new, now));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(12_000), "12kB");
        assert_eq!(human_size(340_000_000), "340MB");
        assert_eq!(human_size(1_250_000), "1.2MB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
    }
}
