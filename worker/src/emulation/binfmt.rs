//! The kernel's `binfmt_misc` table: reading its handlers, and registering QEMU's.
//!
//! The kernel documents the interface (`Documentation/admin-guide/binfmt-misc.rst`):
//! - a handler is registered by writing `:name:type:offset:magic:mask:interpreter:flags` to
//!   `register`; `magic` and `mask` may hold `\xHH` escapes;
//! - each handler is then a file named after it that reads `enabled`, `interpreter PATH`,
//!   `flags: ...`, `offset N`, `magic HEX`, `mask HEX`; writing `-1` to it removes it;
//! - the `F` (fix binary) flag opens the interpreter when the handler is registered, so it
//!   runs in any mount namespace, even one where its path does not exist: a RUN step's root is
//!   the image's, and only `F` handlers work there;
//! - since Linux 6.7 the table belongs to the user namespace that mounted `binfmt_misc` (a
//!   namespace without its own uses its parent's), and it lives as long as a mount of it does:
//!   handlers registered through a mount that goes away are gone with it. So registering means
//!   mounting it where it stays, at `/proc/sys/fs/binfmt_misc`, as systemd does.
//!
//! Debian's `qemu-user-static` ships one rule per architecture in `/usr/lib/binfmt.d`
//! (`qemu-aarch64.conf`, flags `POF`), for systemd-binfmt; `kiln binfmt --install` registers
//! those, with `F` added when a rule lacks it.

use std::io;
use std::path::{Path, PathBuf};

/// Where `binfmt_misc` is mounted.
pub const MOUNT: &str = "/proc/sys/fs/binfmt_misc";

/// Where systemd-binfmt looks for rules, in order; a file in an earlier directory hides one of
/// the same name in a later one.
pub const RULE_DIRS: &[&str] = &["/etc/binfmt.d", "/run/binfmt.d", "/usr/lib/binfmt.d"];

/// A registered handler, as its file in `binfmt_misc` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    /// The flag letters (`POF`).
    pub flags: String,
    pub offset: usize,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

impl Handler {
    /// Parse a handler's file.
    pub fn parse(name: &str, text: &str) -> Option<Handler> {
        let mut h = Handler {
            name: name.to_string(),
            enabled: false,
            interpreter: PathBuf::new(),
            flags: String::new(),
            offset: 0,
            magic: vec![],
            mask: vec![],
        };
        for line in text.lines() {
            match line.split_once(' ') {
                None if line == "enabled" => h.enabled = true,
                None if line == "disabled" => h.enabled = false,
                Some(("interpreter", v)) => h.interpreter = PathBuf::from(v),
                Some(("flags:", v)) => h.flags = v.trim().to_string(),
                Some(("offset", v)) => h.offset = v.trim().parse().ok()?,
                Some(("magic", v)) => h.magic = hex::decode(v.trim()).ok()?,
                Some(("mask", v)) => h.mask = hex::decode(v.trim()).ok()?,
                // Extension handlers (`extension .exe`) match names, not content.
                Some(("extension", _)) => return None,
                _ => {}
            }
        }
        (!h.magic.is_empty()).then_some(h)
    }

    /// Whether the kernel would hand `program` to this handler: its bytes at `offset`, masked,
    /// equal the magic.
    pub fn matches(&self, program: &[u8]) -> bool {
        matches(self.offset, &self.magic, &self.mask, program)
    }

    /// Whether the handler opens its interpreter at registration (`F`).
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }
}

fn matches(offset: usize, magic: &[u8], mask: &[u8], program: &[u8]) -> bool {
    let Some(bytes) = program.get(offset..offset + magic.len()) else {
        return false;
    };
    bytes
        .iter()
        .zip(magic)
        .enumerate()
        .all(|(i, (b, m))| (b ^ m) & mask.get(i).copied().unwrap_or(0xff) == 0)
}

/// What the table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// `binfmt_misc` is not mounted here: no handler can be seen (nor, in this namespace,
    /// registered).
    NotMounted,
    /// Mounted; `enabled` is the `status` file's word.
    Mounted {
        enabled: bool,
        handlers: Vec<Handler>,
    },
}

impl Table {
    /// Read the table at `dir` (normally [`MOUNT`]).
    pub fn read(dir: &Path) -> Table {
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            return Table::NotMounted;
        };
        let mut handlers = vec![];
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "status" || name == "register" {
                    continue;
                }
                if let Some(h) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| Handler::parse(&name, &t))
                {
                    handlers.push(h);
                }
            }
        }
        handlers.sort_by(|a, b| a.name.cmp(&b.name));
        Table::Mounted {
            enabled: status.trim() == "enabled",
            handlers,
        }
    }

    /// The handler that would run `program`, if any.
    pub fn handler_for(&self, program: &[u8]) -> Option<&Handler> {
        match self {
            Table::NotMounted => None,
            Table::Mounted { handlers, .. } => handlers.iter().find(|h| h.matches(program)),
        }
    }
}

/// A rule of a `binfmt.d` file: what a registration writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// `M` (magic) or `E` (extension).
    pub kind: String,
    pub offset: usize,
    /// Unescaped, for matching.
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
    pub interpreter: PathBuf,
    pub flags: String,
    /// The line as written, for the kernel (it unescapes `\xHH` itself).
    line: String,
    /// The file it came from.
    pub file: PathBuf,
}

impl Rule {
    /// Parse one line: `:name:type:offset:magic:mask:interpreter:flags`, the first character
    /// being the separator. Comments and blank lines give `None`.
    pub fn parse(line: &str, file: &Path) -> Option<Rule> {
        let line = line.trim_end();
        let sep = line.chars().next()?;
        if sep == '#' || sep == ';' {
            return None;
        }
        let fields: Vec<&str> = line[sep.len_utf8()..].split(sep).collect();
        let [name, kind, offset, magic, mask, interpreter, rest @ ..] = fields.as_slice() else {
            return None;
        };
        if *kind != "M" {
            return None;
        }
        Some(Rule {
            name: name.to_string(),
            kind: kind.to_string(),
            offset: if offset.is_empty() {
                0
            } else {
                offset.parse().ok()?
            },
            magic: unescape(magic),
            mask: unescape(mask),
            interpreter: PathBuf::from(interpreter),
            flags: rest.first().copied().unwrap_or("").to_string(),
            line: line.to_string(),
            file: file.to_path_buf(),
        })
    }

    pub fn matches(&self, program: &[u8]) -> bool {
        matches(self.offset, &self.magic, &self.mask, program)
    }

    /// The registration line, with `F` among the flags.
    pub fn registration(&self) -> String {
        let sep = self.line.chars().next().unwrap_or(':');
        let mut fields: Vec<String> = self.line[sep.len_utf8()..]
            .split(sep)
            .map(str::to_string)
            .collect();
        fields.resize(7, String::new());
        if !fields[6].contains('F') {
            fields[6].push('F');
        }
        format!("{sep}{}", fields.join(&sep.to_string()))
    }
}

/// `\xHH` and `\\` escapes, as the kernel reads them.
fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// QEMU's rules (`qemu-*`) from `dirs`, an earlier directory's file hiding a later one's of
/// the same name, as systemd-binfmt reads them.
pub fn qemu_rules(dirs: &[&Path]) -> Vec<Rule> {
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let Some(name) = f.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if !name.starts_with("qemu-") || !name.ends_with(".conf") || !seen.insert(name) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            out.extend(text.lines().filter_map(|l| Rule::parse(l, &f)));
        }
    }
    out
}

/// What `install` did with one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Registered,
    /// A handler of that name was there already, with `F`: left as it is.
    Present,
    /// A handler of that name was there without `F` (or with another interpreter), and
    /// `force` replaced it.
    Replaced,
    /// Not registered, and why.
    Skipped(String),
}

/// Mount `binfmt_misc` at `dir` unless it is mounted there.
pub fn mount(dir: &Path) -> io::Result<()> {
    if dir.join("status").exists() {
        return Ok(());
    }
    rustix::mount::mount(
        "binfmt_misc",
        dir,
        "binfmt_misc",
        rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC,
        None,
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mounting binfmt_misc at {}: {e}", dir.display()),
        )
    })
}

/// Register `rules` in the table at `dir` (mounted), each with `F`. A rule whose interpreter
/// is missing is skipped, and so is one that would take this machine's own programs (`host`
/// is the host's probe program). A handler already there is kept unless it lacks `F` or has
/// another interpreter and `force` is set.
pub fn install(
    dir: &Path,
    rules: &[Rule],
    host: &[u8],
    force: bool,
) -> io::Result<Vec<(Rule, Outcome)>> {
    let mut out = vec![];
    for rule in rules {
        let outcome = install_one(dir, rule, host, force)?;
        out.push((rule.clone(), outcome));
    }
    Ok(out)
}

fn install_one(dir: &Path, rule: &Rule, host: &[u8], force: bool) -> io::Result<Outcome> {
    if rule.matches(host) {
        return Ok(Outcome::Skipped(
            "it would take this machine's own programs".into(),
        ));
    }
    if !rule.interpreter.exists() {
        return Ok(Outcome::Skipped(format!(
            "its interpreter {} is missing",
            rule.interpreter.display()
        )));
    }
    let existing = std::fs::read_to_string(dir.join(&rule.name))
        .ok()
        .and_then(|t| Handler::parse(&rule.name, &t));
    let replaced = match existing {
        Some(h) if h.fix_binary() && h.interpreter == rule.interpreter => {
            return Ok(Outcome::Present);
        }
        Some(h) if !force => {
            return Ok(Outcome::Skipped(format!(
                "a handler {} is registered already ({}, flags {:?}); --force replaces it",
                h.name,
                h.interpreter.display(),
                h.flags
            )));
        }
        Some(_) => {
            std::fs::write(dir.join(&rule.name), "-1")?;
            true
        }
        None => false,
    };
    std::fs::write(dir.join("register"), rule.registration()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("registering {} in {}: {e}", rule.name, dir.display()),
        )
    })?;
    Ok(if replaced {
        Outcome::Replaced
    } else {
        Outcome::Registered
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP";

    #[test]
    fn rules_parse_and_register_with_fix_binary() {
        let r = Rule::parse(AARCH64, Path::new("qemu-aarch64.conf")).unwrap();
        assert_eq!(r.name, "qemu-aarch64");
        assert_eq!(r.magic.len(), 20);
        assert_eq!(r.magic[18], 0xb7);
        assert_eq!(r.mask[7], 0);
        assert!(r.registration().ends_with(":OPF"), "{}", r.registration());
        let f = Rule::parse(&format!("{AARCH64}F"), Path::new("x")).unwrap();
        assert!(f.registration().ends_with(":OPF"));
        assert!(Rule::parse("# comment", Path::new("x")).is_none());
        assert!(Rule::parse("", Path::new("x")).is_none());
        assert!(Rule::parse(":DOSWin:E::exe::/usr/bin/wine:", Path::new("x")).is_none());
    }

    #[test]
    fn handlers_parse_from_their_files() {
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let h = Handler::parse("qemu-aarch64", text).unwrap();
        assert!(h.enabled && h.fix_binary());
        let rule = Rule::parse(AARCH64, Path::new("x")).unwrap();
        assert_eq!((h.magic.clone(), h.mask.clone()), (rule.magic, rule.mask));
        let arm64 = super::super::elf::Arch::of(
            &crate::image::oci::Platform::parse("linux/arm64").unwrap(),
        )
        .unwrap()
        .program();
        let amd64 = super::super::elf::Arch::of(
            &crate::image::oci::Platform::parse("linux/amd64").unwrap(),
        )
        .unwrap()
        .program();
        assert!(h.matches(&arm64) && !h.matches(&amd64));
        let h = Handler::parse(
            "x",
            &text.replace("enabled", "disabled").replace("POF", "PO"),
        )
        .unwrap();
        assert!(!h.enabled && !h.fix_binary());
        assert!(
            Handler::parse("w", "enabled\ninterpreter /w\nflags: \nextension .exe\n").is_none()
        );
    }

    #[test]
    fn installing_skips_the_host_and_missing_interpreters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let arm64 = Rule::parse(AARCH64, Path::new("x")).unwrap();
        let host = super::super::elf::Arch::of(
            &crate::image::oci::Platform::parse("linux/arm64").unwrap(),
        )
        .unwrap()
        .program();
        let done = install(dir.path(), std::slice::from_ref(&arm64), &host, false).unwrap();
        assert!(matches!(&done[0].1, Outcome::Skipped(why) if why.contains("own programs")));
        let mut missing = arm64.clone();
        missing.interpreter = dir.path().join("nope");
        let done = install(dir.path(), &[missing], b"", false).unwrap();
        assert!(matches!(&done[0].1, Outcome::Skipped(why) if why.contains("missing")));
        // A handler with F and the same interpreter is left alone; one without F is kept
        // unless forced.
        let mut present = arm64.clone();
        present.interpreter = dir.path().join("qemu");
        std::fs::write(&present.interpreter, "").unwrap();
        let file = |flags: &str| {
            format!(
                "enabled\ninterpreter {}\nflags: {flags}\noffset 0\nmagic 7f454c46\nmask ffffffff\n",
                present.interpreter.display()
            )
        };
        std::fs::write(dir.path().join("qemu-aarch64"), file("POF")).unwrap();
        let done = install(dir.path(), std::slice::from_ref(&present), b"", false).unwrap();
        assert_eq!(done[0].1, Outcome::Present);
        std::fs::write(dir.path().join("qemu-aarch64"), file("PO")).unwrap();
        let done = install(dir.path(), std::slice::from_ref(&present), b"", false).unwrap();
        assert!(matches!(&done[0].1, Outcome::Skipped(why) if why.contains("--force")));
        // (A plain directory stands in for binfmt_misc: "forcing" writes -1 over the file,
        // then the registration to `register`.)
        let done = install(dir.path(), std::slice::from_ref(&present), b"", true).unwrap();
        assert_eq!(done[0].1, Outcome::Replaced);
        assert!(
            std::fs::read_to_string(dir.path().join("register"))
                .unwrap()
                .ends_with(":OPF")
        );
    }

    #[test]
    fn the_table_reads_as_not_mounted_without_status() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Table::read(dir.path()), Table::NotMounted);
    }
}
