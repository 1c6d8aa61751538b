//! Whether an ADD source is a tar archive (then it is extracted): a tar header in the first
//! block, after decompression if the file is compressed.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::snapshot::extract;

/// Whether a file is a tar archive, compressed or not (its first block is a tar header).
pub(crate) fn is_archive(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 512];
    let mut f = File::open(path)?;
    let n = read_up_to(&mut f, &mut head)?;
    if extract::sniff(&head[..n]) != extract::Format::Plain {
        // A compressed file is an archive only if it holds a tar.
        let mut inner = extract::decompress(File::open(path)?)?;
        let mut block = [0u8; 512];
        let n = match read_up_to(&mut inner, &mut block) {
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        return Ok(n == 512 && is_tar_header(&block));
    }
    Ok(n == 512 && is_tar_header(&head))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn is_tar_header(block: &[u8]) -> bool {
    let magic = &block[257..263];
    if magic == b"ustar\0" || &block[257..262] == b"ustar" {
        return true;
    }
    // A v7 tar has no magic: check the header checksum.
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    stored == Some(sum) && block[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_are_recognised() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(1);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(is_tar_header(&t[..512]));
        assert!(!is_tar_header(&[0u8; 512]));
        assert!(!is_tar_header(&[b'a'; 512]));
    }
}
