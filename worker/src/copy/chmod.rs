//! `COPY --chmod`: octal or symbolic modes, as BuildKit reads them.

/// A `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    /// `(who mask, op, permission bits, X)` clauses.
    Symbolic(Vec<(u32, char, u32, bool)>),
}

impl Chmod {
    pub fn parse(text: &str) -> Option<Chmod> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(text, 8).ok()?;
            return (mode <= 0o7777).then_some(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            let op_at = clause.find(['+', '-', '='])?;
            let (who, rest) = clause.split_at(op_at);
            let mut who_mask = 0;
            for c in who.chars() {
                who_mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return None,
                };
            }
            if who.is_empty() {
                who_mask = 0o7777;
            }
            let op = rest.chars().next()?;
            let mut bits = 0;
            let mut big_x = false;
            for c in rest[1..].chars() {
                bits |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' => {
                        big_x = true;
                        0
                    }
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return None,
                };
            }
            clauses.push((who_mask, op, bits, big_x));
        }
        (!clauses.is_empty()).then_some(Chmod::Symbolic(clauses))
    }

    /// The mode a file of mode `mode` (permission bits) gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            // BuildKit drops the setuid, setgid and sticky bits of an octal --chmod.
            Chmod::Octal(m) => *m & 0o777,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for &(who, op, bits, big_x) in clauses {
                    let mut b = bits;
                    if big_x && (is_dir || m & 0o111 != 0) {
                        b |= 0o111;
                    }
                    let b = b & who;
                    match op {
                        '+' => m |= b,
                        '-' => m &= !b,
                        _ => m = (m & !who) | b,
                    }
                }
                m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(Chmod::parse("0755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-w,a+r").unwrap().apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o644, true), 0o755);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o644, false), 0o644);
        assert_eq!(Chmod::parse("u=rw,go=").unwrap().apply(0o777, false), 0o600);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o600, false), 0o711);
        assert!(Chmod::parse("99999").is_none());
        assert!(Chmod::parse("z+x").is_none());
        assert!(Chmod::parse("").is_none());
    }
}
