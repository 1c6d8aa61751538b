//! Platforms (`linux/amd64`, `linux/arm/v7`), as containerd's `platforms` package parses and
//! normalises them, and the platform of the machine Kiln runs on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OS, architecture and optional variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: &str) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.into(),
        }
    }

    /// The platform of this machine, in Go's names (`amd64`, `arm64`, ...).
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "x86" => ("386", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", ""),
            "powerpc64" => ("ppc64", ""),
            "riscv64" => ("riscv64", ""),
            "s390x" => ("s390x", ""),
            "loongarch64" => ("loong64", ""),
            "mips64" => ("mips64", ""),
            other => (other, ""),
        };
        Platform::new("linux", arch, variant)
    }

    /// Parse `os`, `arch`, `os/arch` or `os/arch/variant`, normalising names as containerd does
    /// (`x86_64` is `amd64`, `aarch64` is `arm64`, `arm` is `arm/v7`, ...).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{spec:?}: {why}");
        if spec.contains('*') {
            return Err(bad("wildcards not yet supported: invalid argument"));
        }
        let parts: Vec<&str> = spec.split('/').collect();
        let host = Platform::host();
        let p = match parts.as_slice() {
            [one] => {
                let lower = one.to_lowercase();
                if is_known_os(&lower) {
                    Platform::new(&lower, &host.architecture, &host.variant)
                } else if is_known_arch(&normalize_arch(&lower, "").0) {
                    let (a, v) = normalize_arch(&lower, "");
                    Platform::new("linux", &a, &v)
                } else {
                    return Err(bad(
                        "unknown operating system or architecture: invalid argument",
                    ));
                }
            }
            [os, arch] => {
                let (a, v) = normalize_arch(&arch.to_lowercase(), "");
                Platform::new(&normalize_os(os), &a, &v)
            }
            [os, arch, variant] => {
                let (a, v) = normalize_arch(&arch.to_lowercase(), &variant.to_lowercase());
                Platform::new(&normalize_os(os), &a, &v)
            }
            _ => return Err(bad("cannot parse platform specifier: invalid argument")),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'_'
                        || b == b'-'
                        || b == b'.'
                })
        };
        if !valid(&p.os) || !valid(&p.architecture) || (!p.variant.is_empty() && !valid(&p.variant))
        {
            return Err(bad("invalid platform component: invalid argument"));
        }
        Ok(p)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

fn normalize_os(os: &str) -> String {
    let os = os.to_lowercase();
    if os == "macos" { "darwin".into() } else { os }
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
            | "wasip1"
            | "macos"
    )
}

fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

/// containerd's `normalizeArch`.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v) = match arch {
        "i386" => ("386", variant),
        "x86_64" | "x86-64" | "amd64" => ("amd64", if variant == "v1" { "" } else { variant }),
        "aarch64" | "arm64" => (
            "arm64",
            match variant {
                "8" | "v8" | "v8.0" => "",
                v => v,
            },
        ),
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => (
            "arm",
            match variant {
                "" | "7" => "v7",
                "5" | "6" | "8" => return ("arm".into(), format!("v{variant}")),
                v => v,
            },
        ),
        other => (other, variant),
    };
    (a.to_string(), v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert_eq!(
            Platform::parse("Linux/AMD64").unwrap().to_string(),
            "linux/amd64"
        );
        assert!(Platform::parse("foo").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
        assert!(Platform::parse("linux/*").is_err());
        assert!(Platform::parse("linux/").is_err());
    }
}
