//! Go's `fmt` output, for the history entries BuildKit writes with `%q` and `%v`.

use crate::dockerfile::duration;
use crate::dockerfile::instruction::Healthcheck;

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `strconv.QuoteRune` of an integer, as `%q` prints an `int`.
pub fn quote_rune(n: i64) -> String {
    let c = u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{fffd}');
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_print(c) => out.push(c),
        c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// An approximation of Go's `unicode.IsPrint`: graphic characters and the ASCII space.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let n = c as u32;
    !matches!(n,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f | 0x2028..=0x202e
        | 0x2060..=0x206f | 0xe000..=0xf8ff | 0xfdd0..=0xfdef | 0xfeff | 0xfff9..=0xfffb
        | 0xfffe | 0xffff | 0xf0000.. )
}

/// `%q` of a `[]string`: `["a" "b"]`.
pub fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// `%v` of a `[]string`: `[a b]`.
pub fn list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// The HEALTHCHECK history text.
///
/// - Current BuildKit (`dispatchHealthcheck` on the docker-image-spec config) writes
///   `fmt.Sprintf("HEALTHCHECK %+v", *config)`: field names, the test list unquoted, durations
///   by their String method: `{Test:[CMD-SHELL curl -f x] Interval:30s Timeout:3s
///   StartPeriod:0s StartInterval:0s Retries:3}`.
/// - BuildKit v0.8 wrote `%q` of the pointer, without a start interval:
///   `&{["CMD-SHELL" "curl -f x"] "30s" "3s" "0s" '\x03'}`.
pub fn healthcheck(h: &Healthcheck, current: bool) -> String {
    if current {
        return format!(
            "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            list(&h.test),
            duration::format(h.interval),
            duration::format(h.timeout),
            duration::format(h.start_period),
            duration::format(h.start_interval),
            h.retries
        );
    }
    format!(
        "&{{{} {} {} {} {}}}",
        quote_list(&h.test),
        quote(&duration::format(h.interval)),
        quote(&duration::format(h.timeout)),
        quote(&duration::format(h.start_period)),
        quote_rune(h.retries)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_in_both_history_styles() {
        // BuildKit v0.8 (tests/reference, healthcheck-options) and current BuildKit.
        let h = Healthcheck {
            test: vec!["CMD".into(), "/bin/true".into(), "arg".into()],
            interval: 45_000_000_000,
            timeout: 5_000_000_000,
            start_period: 90_000_000_000,
            start_interval: 0,
            retries: 7,
        };
        assert_eq!(
            healthcheck(&h, false),
            "&{[\"CMD\" \"/bin/true\" \"arg\"] \"45s\" \"5s\" \"1m30s\" '\\a'}"
        );
        assert_eq!(
            healthcheck(&h, true),
            "{Test:[CMD /bin/true arg] Interval:45s Timeout:5s StartPeriod:1m30s StartInterval:0s Retries:7}"
        );
    }

    #[test]
    fn quoting_like_go() {
        assert_eq!(quote("a\"b\\c\n\té"), "\"a\\\"b\\\\c\\n\\té\"");
        assert_eq!(quote("\u{1}\u{a0}\u{200b}"), "\"\\x01\\u00a0\\u200b\"");
        assert_eq!(quote_rune(3), "'\\x03'");
        assert_eq!(quote_rune(10), "'\\n'");
        assert_eq!(quote_rune(65), "'A'");
        assert_eq!(quote_rune(-1), "'�'");
        assert_eq!(
            quote_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            "[\"/bin/sh\" \"-c\" \"echo \\\"hi\\\"\"]"
        );
        assert_eq!(list(&["/a".into(), "/b".into()]), "[/a /b]");
    }
}
