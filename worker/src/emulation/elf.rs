//! The smallest programs that prove a platform runs here: for each architecture Kiln knows, an
//! ELF executable of one segment whose code calls `exit(0)`. Executing it answers the only
//! question that matters (does the kernel run this architecture's programs, natively or
//! through a `binfmt_misc` handler?), and its first bytes are what a handler's magic must
//! match, which tells which handler would run it.
//!
//! BuildKit asks the same question the same way (`util/archutil` executes a tiny program per
//! architecture). These programs are assembled here from their instruction words.

use crate::image::oci::Platform;

/// What an ELF header says about an architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// QEMU's name for it (`qemu-aarch64`'s `aarch64`), as Debian names its handlers.
    pub qemu: &'static str,
    /// `ELFCLASS64` (true) or `ELFCLASS32`.
    wide: bool,
    big_endian: bool,
    /// `e_machine`.
    machine: u16,
    /// `e_flags`.
    flags: u32,
    /// The code: `exit(0)`.
    code: &'static [u8],
}

/// `exit(0)` on x86-64: `mov eax, 60; xor edi, edi; syscall`.
const AMD64: &[u8] = &[0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
/// On i386: `mov eax, 1; xor ebx, ebx; int 0x80`.
const I386: &[u8] = &[0xb8, 0x01, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80];
/// On AArch64: `movz x0, #0; movz x8, #93; svc #0`.
const ARM64: &[u8] = &words_le([0xd280_0000, 0xd280_0ba8, 0xd400_0001]);
/// On 32-bit ARM (EABI): `mov r0, #0; mov r7, #1; svc #0`.
const ARM: &[u8] = &words_le([0xe3a0_0000, 0xe3a0_7001, 0xef00_0000]);
/// On RISC-V 64: `li a0, 0; li a7, 93; ecall`.
const RISCV64: &[u8] = &words_le([0x0000_0513, 0x05d0_0893, 0x0000_0073]);
/// On POWER little-endian: `li r0, 1; li r3, 0; sc`.
const PPC64LE: &[u8] = &words_le([0x3800_0001, 0x3860_0000, 0x4400_0002]);
/// On s390x: `lghi %r2, 0; svc 1`.
const S390X: &[u8] = &[0xa7, 0x29, 0, 0, 0x0a, 0x01];

const fn words_le(words: [u32; 3]) -> [u8; 12] {
    let mut out = [0u8; 12];
    let mut i = 0;
    while i < 3 {
        let b = words[i].to_le_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

impl Arch {
    /// The architecture of an OCI platform (`linux/arm64`, `linux/arm/v7`), when Kiln has a
    /// probe for it.
    pub fn of(platform: &Platform) -> Option<Arch> {
        if platform.os != "linux" {
            return None;
        }
        let arch = |qemu, wide, big_endian, machine, flags, code| Arch {
            qemu,
            wide,
            big_endian,
            machine,
            flags,
            code,
        };
        Some(match platform.architecture.as_str() {
            "amd64" => arch("x86_64", true, false, 62, 0, AMD64),
            "386" => arch("i386", false, false, 3, 0, I386),
            "arm64" => arch("aarch64", true, false, 183, 0, ARM64),
            // EF_ARM_EABI_VER5.
            "arm" => arch("arm", false, false, 40, 0x0500_0000, ARM),
            // Double-float ABI, compressed instructions.
            "riscv64" => arch("riscv64", true, false, 243, 0x5, RISCV64),
            // ELFv2 ABI.
            "ppc64le" => arch("ppc64le", true, false, 21, 2, PPC64LE),
            "s390x" => arch("s390x", true, true, 22, 0, S390X),
            _ => return None,
        })
    }

    /// The probe program.
    pub fn program(&self) -> Vec<u8> {
        let (ehsize, phsize, base): (usize, usize, u64) = if self.wide {
            (64, 56, 0x40_0000)
        } else {
            (52, 32, 0x1_0000)
        };
        let size = (ehsize + phsize + self.code.len()) as u64;
        let entry = base + (ehsize + phsize) as u64;
        let mut out = Vec::with_capacity(size as usize);
        let be = self.big_endian;
        let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u64b = |v: u64| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        // The address-sized fields: 8 bytes in ELF64, 4 in ELF32.
        let addr = |v: u64| -> Vec<u8> {
            if self.wide {
                u64b(v).to_vec()
            } else {
                u32b(v as u32).to_vec()
            }
        };
        // e_ident: magic, class, data, version, OS ABI (System V), padding.
        out.extend_from_slice(b"\x7fELF");
        out.push(if self.wide { 2 } else { 1 });
        out.push(if be { 2 } else { 1 });
        out.push(1);
        out.extend_from_slice(&[0; 9]);
        out.extend_from_slice(&u16b(2)); // e_type: ET_EXEC
        out.extend_from_slice(&u16b(self.machine));
        out.extend_from_slice(&u32b(1)); // e_version
        out.extend(addr(entry)); // e_entry
        out.extend(addr(ehsize as u64)); // e_phoff
        out.extend(addr(0)); // e_shoff
        out.extend_from_slice(&u32b(self.flags));
        out.extend_from_slice(&u16b(ehsize as u16));
        out.extend_from_slice(&u16b(phsize as u16));
        out.extend_from_slice(&u16b(1)); // e_phnum
        out.extend_from_slice(&u16b(0)); // e_shentsize
        out.extend_from_slice(&u16b(0)); // e_shnum
        out.extend_from_slice(&u16b(0)); // e_shstrndx
        debug_assert_eq!(out.len(), ehsize);
        // One PT_LOAD segment, readable and executable, covering the whole file.
        out.extend_from_slice(&u32b(1));
        if self.wide {
            out.extend_from_slice(&u32b(5)); // p_flags (ELF64 puts them second)
            out.extend(addr(0)); // p_offset
            out.extend(addr(base)); // p_vaddr
            out.extend(addr(base)); // p_paddr
            out.extend(addr(size)); // p_filesz
            out.extend(addr(size)); // p_memsz
            out.extend(addr(0x1000)); // p_align
        } else {
            out.extend(addr(0));
            out.extend(addr(base));
            out.extend(addr(base));
            out.extend(addr(size));
            out.extend(addr(size));
            out.extend_from_slice(&u32b(5));
            out.extend(addr(0x1000));
        }
        debug_assert_eq!(out.len(), ehsize + phsize);
        out.extend_from_slice(self.code);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn programs_have_the_header_their_handlers_match() {
        // Debian's qemu-aarch64 handler: magic and mask over the first 20 bytes.
        let magic =
            b"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
        let mask =
            b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
        let prog = Arch::of(&p("linux/arm64")).unwrap().program();
        assert!((0..20).all(|i| (prog[i] ^ magic[i]) & mask[i] == 0));
        // And qemu-arm's.
        let magic =
            b"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00";
        let prog = Arch::of(&p("linux/arm/v7")).unwrap().program();
        assert!((0..20).all(|i| (prog[i] ^ magic[i]) & mask[i] == 0));
        // s390x is big-endian: e_machine 22 reads 00 16.
        let prog = Arch::of(&p("linux/s390x")).unwrap().program();
        assert_eq!(&prog[5..6], &[2]);
        assert_eq!(&prog[18..20], &[0, 22]);
        assert!(Arch::of(&p("linux/mips64le")).is_none());
        assert!(Arch::of(&p("windows/amd64")).is_none());
    }

    /// Each foreign probe is a correct program: QEMU runs it to `exit(0)` (run directly, no
    /// binfmt_misc needed; an architecture whose `qemu-*-static` is missing is said and
    /// skipped).
    #[test]
    fn foreign_probes_exit_zero_under_qemu() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for platform in [
            "linux/amd64",
            "linux/386",
            "linux/arm64",
            "linux/arm/v7",
            "linux/riscv64",
            "linux/ppc64le",
            "linux/s390x",
        ] {
            let arch = Arch::of(&p(platform)).unwrap();
            let qemu = format!("/usr/bin/qemu-{}-static", arch.qemu);
            if !std::path::Path::new(&qemu).exists() {
                eprintln!("SKIPPED {platform}: {qemu} is missing (Debian's qemu-user-static)");
                continue;
            }
            let path = dir.path().join(arch.qemu);
            std::fs::write(&path, arch.program()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let out = std::process::Command::new(&qemu)
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{platform}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn the_host_runs_its_own_probe() {
        use std::os::unix::fs::PermissionsExt;
        let Some(arch) = Arch::of(&Platform::host()) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe");
        std::fs::write(&path, arch.program()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new(&path).status().unwrap();
        assert!(status.success(), "{status}");
    }
}
