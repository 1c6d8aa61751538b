//! `RUN --mount=...` options.
//!
//! BuildKit's rules (`parseMount`):
//! - The value is one CSV record (Go's `encoding/csv`: `"` quotes a whole field, `""` inside
//!   quotes is a quote, a stray `"` is an error). Each field is `key=value`; keys are
//!   case-insensitive. `ro`/`readonly`, `rw`/`readwrite` and `required` may stand alone.
//! - Fields apply in order, so `required` must come after `type=secret` or `type=ssh`.
//! - `type` is `bind` (the default), `cache`, `tmpfs`, `secret` or `ssh`. `src` and `source`,
//!   `dst`, `destination` and `target` are aliases.
//! - Every value is expanded with the stage's variables, except `from`, which may not contain a
//!   variable at all ("define alias stage instead").
//! - `mode`, `uid` and `gid` are only for cache, secret and ssh mounts; `sharing` only for cache;
//!   `size` only for tmpfs; `required` only for secret and ssh. A secret mount takes no `from`
//!   and needs an `id`, a `source` or a `target`.
//! - Bind and secret and ssh mounts are read-only unless `rw`; cache and tmpfs are writable
//!   unless `ro`.

use super::directives::parse_go_bool;

/// The type of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A `--mount` as written, with values expanded and checked, before defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    /// `shared`, `private` or `locked`, lowercased.
    pub sharing: Option<String>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub env: Option<String>,
}

/// A bad `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    pub message: String,
    pub help: Option<String>,
}

fn fail<T>(message: impl Into<String>) -> Result<T, MountError> {
    Err(MountError {
        message: message.into(),
        help: None,
    })
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Split one CSV record as Go's `encoding/csv` reader does (comma separator, strict quotes).
pub(crate) fn csv_fields(value: &str) -> Result<Vec<String>, MountError> {
    let prefix = "failed to parse csv mounts";
    if value.is_empty() {
        return fail(format!("{prefix}: EOF"));
    }
    let line = value.trim_end_matches(['\r', '\n']);
    let line = if line.is_empty() { value } else { line };
    let chars: Vec<char> = line.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        if chars.get(i) != Some(&'"') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == ',')
                .map_or(chars.len(), |p| i + p);
            let field: String = chars[i..end].iter().collect();
            if let Some(q) = field.find('"') {
                let col = i + field[..q].chars().count() + 1;
                return fail(format!(
                    "{prefix}: parse error on line 1, column {col}: bare \" in non-quoted-field"
                ));
            }
            fields.push(field);
            if end == chars.len() {
                return Ok(fields);
            }
            i = end + 1;
            continue;
        }
        i += 1;
        let mut field = String::new();
        loop {
            match chars.get(i) {
                None => {
                    return fail(format!(
                        "{prefix}: parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                        i + 1
                    ));
                }
                Some('"') => match chars.get(i + 1) {
                    Some('"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some(',') => {
                        fields.push(std::mem::take(&mut field));
                        i += 2;
                        break;
                    }
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(_) => {
                        return fail(format!(
                            "{prefix}: parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                            i + 2
                        ));
                    }
                },
                Some(&c) => {
                    field.push(c);
                    i += 1;
                }
            }
        }
        if i >= chars.len() {
            fields.push(String::new());
            return Ok(fields);
        }
    }
}

/// The `from=` of a mount, unexpanded, as the plan needs it before anything is expanded.
/// Errors for a `from` with a variable in it.
pub(crate) fn raw_from(value: &str) -> Result<Option<String>, MountError> {
    let mut from = None;
    for field in csv_fields(value)? {
        if let Some((k, v)) = field.split_once('=')
            && k.eq_ignore_ascii_case("from")
        {
            if let Some(i) = v.find('$')
                && i + 1 != v.len()
            {
                return Err(MountError {
                    message: "'from' doesn't support variable expansion, define alias stage instead"
                        .into(),
                    help: Some(
                        "add `FROM <image> AS <name>` with the variable there, and mount `from=<name>`"
                            .into(),
                    ),
                });
            }
            from = Some(v.to_string());
        }
    }
    Ok(from)
}

/// Parse and check a `--mount` value, expanding each value (except `from`) with `expand`.
pub fn parse(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<MountSpec, MountError> {
    let fields = csv_fields(value)?;
    let mut m = MountSpec {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" => {
                    if matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        m.required = true;
                    } else {
                        return Err(MountError {
                            message: format!(
                                "unexpected key '{key}' for mount type '{}'",
                                m.kind.as_str()
                            ),
                            help: Some(
                                "`required` applies to secret and ssh mounts, and must come after `type=`"
                                    .into(),
                            ),
                        });
                    }
                }
                _ => return fail(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let value = if key == "from" {
            value.to_string()
        } else {
            expand(value).map_err(|e| MountError {
                message: e,
                help: None,
            })?
        };
        let bad = |what: &str| MountError {
            message: format!("invalid value for {key}: {what}"),
            help: None,
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                        return Err(MountError {
                            message: format!("unsupported mount type {value:?}"),
                            help: Some(match super::suggest::closest(&value, &types) {
                                Some(s) => format!("did you mean `type={s}`?"),
                                None => "the types are bind, cache, tmpfs, secret and ssh".into(),
                            }),
                        });
                    }
                };
            }
            "from" => {
                if let Some(i) = value.find('$')
                    && i + 1 != value.len()
                {
                    return fail(
                        "'from' doesn't support variable expansion, define alias stage instead",
                    );
                }
                m.from = Some(value);
            }
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_go_bool(&value).ok_or_else(|| bad(&value))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_go_bool(&value).ok_or_else(|| bad(&value))?;
                ro_auto = false;
            }
            "required" => {
                if matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    m.required = parse_go_bool(&value).ok_or_else(|| bad(&value))?;
                } else {
                    return Err(MountError {
                        message: format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.as_str()
                        ),
                        help: Some(
                            "`required` applies to secret and ssh mounts, and must come after `type=`"
                                .into(),
                        ),
                    });
                }
            }
            "size" => {
                if m.kind == MountType::Tmpfs {
                    m.size = Some(ram_in_bytes(&value).ok_or_else(|| bad(&value))?);
                } else {
                    return Err(MountError {
                        message: format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.as_str()
                        ),
                        help: Some("`size` applies to tmpfs mounts, after `type=tmpfs`".into()),
                    });
                }
            }
            "id" => m.id = Some(value),
            "sharing" => {
                let v = value.to_lowercase();
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(MountError {
                        message: format!("unsupported sharing value {value:?}"),
                        help: Some("sharing is shared, private or locked".into()),
                    });
                }
                m.sharing = Some(v);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .ok()
                        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| MountError {
                            message: format!("invalid value {value} for mode"),
                            help: Some("mode is an octal number such as 0755".into()),
                        })?,
                );
            }
            "uid" | "gid" => {
                let n = value
                    .parse::<u32>()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| MountError {
                        message: format!("invalid value {value} for {key}"),
                        help: Some(format!("{key} is a number")),
                    })?;
                if key == "uid" {
                    m.uid = Some(n);
                } else {
                    m.gid = Some(n);
                }
            }
            "env" => m.env = Some(value),
            _ => {
                return Err(MountError {
                    message: format!("unexpected key '{key}' in '{field}'"),
                    help: super::suggest::closest(&key, KEYS)
                        .map(|s| format!("did you mean `{s}`?")),
                });
            }
        }
    }
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return fail(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind.as_str()
                ));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return fail(format!(
            "invalid cache sharing set for {} mount",
            m.kind.as_str()
        ));
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return fail("secret mount should not have a from");
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError {
                message: "invalid secret mount. one of source, target required".into(),
                help: Some("give the secret an `id=`, or a `target=` to derive it from".into()),
            });
        }
        if m.source.is_some() && m.id.is_some() {
            return fail("both source and id can't be set");
        }
    }
    if m.kind == MountType::Ssh && m.source.is_some() {
        return fail("ssh does not support source");
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err(MountError {
            message: format!("unexpected key 'env' for mount type '{}'", m.kind.as_str()),
            help: Some("`env` applies to secret mounts".into()),
        });
    }
    Ok(m)
}

/// docker/go-units `RAMInBytes`: `64m`, `1g`, `512k`, `1.5GiB`, `1024` (binary multiples).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let num_len = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (num, mut rest) = s.split_at(num_len);
    if num.is_empty() || !num.as_bytes()[0].is_ascii_digit() || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let mult: f64 = match chars.peek().map(char::to_ascii_lowercase) {
        Some('k') => 1024f64,
        Some('m') => 1024f64.powi(2),
        Some('g') => 1024f64.powi(3),
        Some('t') => 1024f64.powi(4),
        Some('p') => 1024f64.powi(5),
        _ => 1.0,
    };
    if mult > 1.0 {
        chars.next();
    }
    if matches!(chars.peek(), Some('i' | 'I')) {
        chars.next();
    }
    if matches!(chars.peek(), Some('b' | 'B')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let bytes = value * mult;
    (bytes.is_finite() && bytes < 9.2e18).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Result<MountSpec, String> {
        parse(v, &mut |s| Ok(s.replace("$DIR", "/cache"))).map_err(|e| e.message)
    }

    #[test]
    fn csv_records() {
        assert_eq!(csv_fields("a=1,b=2").unwrap(), ["a=1", "b=2"]);
        assert_eq!(csv_fields("\"a=1,2\",b").unwrap(), ["a=1,2", "b"]);
        assert_eq!(csv_fields("\"a=\"\"q\"\"\"").unwrap(), ["a=\"q\""]);
        assert_eq!(csv_fields("a,").unwrap(), ["a", ""]);
        assert!(
            csv_fields("a=\"x\"")
                .unwrap_err()
                .message
                .contains("bare \"")
        );
        assert!(
            csv_fields("\"a")
                .unwrap_err()
                .message
                .contains("extraneous")
        );
        assert!(csv_fields("").unwrap_err().message.ends_with("EOF"));
    }

    #[test]
    fn defaults_and_aliases() {
        let m = p("type=cache,dst=$DIR").unwrap();
        assert_eq!(
            (m.kind, m.target.as_deref(), m.readonly),
            (MountType::Cache, Some("/cache"), false)
        );
        let m = p("target=/src,from=build,source=/out").unwrap();
        assert_eq!((m.kind, m.readonly), (MountType::Bind, true));
        let m = p("target=/src,rw").unwrap();
        assert!(!m.readonly);
        let m = p("type=secret,id=tok,required,mode=0444,uid=1,gid=2").unwrap();
        assert_eq!(
            (m.required, m.mode, m.uid, m.gid),
            (true, Some(0o444), Some(1), Some(2))
        );
        let m = p("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = p("TYPE=SSH,Required=true").unwrap();
        assert!(m.required);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(p("type=nfs").unwrap_err(), "unsupported mount type \"nfs\"");
        assert_eq!(
            p("type=cache,sharing=weird").unwrap_err(),
            "unsupported sharing value \"weird\""
        );
        assert_eq!(
            p("required,type=secret,id=a").unwrap_err(),
            "unexpected key 'required' for mount type 'bind'"
        );
        assert_eq!(
            p("type=bind,mode=0755,target=/x").unwrap_err(),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            p("type=cache,target=/x,mode=999").unwrap_err(),
            "invalid value 999 for mode"
        );
        assert_eq!(
            p("type=cache,target=/x,uid=-1").unwrap_err(),
            "invalid value -1 for uid"
        );
        assert_eq!(
            p("type=secret").unwrap_err(),
            "invalid secret mount. one of source, target required"
        );
        assert_eq!(
            p("target=/x,sharing=locked").unwrap_err(),
            "invalid cache sharing set for bind mount"
        );
        assert_eq!(
            p("type=cache,target=/x,ro=maybe").unwrap_err(),
            "invalid value for ro: maybe"
        );
        assert_eq!(
            p("type=cache,taget=/x").unwrap_err(),
            "unexpected key 'taget' in 'taget=/x'"
        );
        assert_eq!(
            p("type=cache,target").unwrap_err(),
            "invalid field 'target' must be a key=value pair"
        );
        assert_eq!(
            p("type=cache,size=1m,target=/x").unwrap_err(),
            "unexpected key 'size' for mount type 'cache'"
        );
        assert_eq!(
            p("from=$X,target=/x").unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(ram_in_bytes("1024"), Some(1024));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(1536 << 20));
        assert_eq!(ram_in_bytes("2 MB"), Some(2 << 20));
        assert_eq!(ram_in_bytes("x"), None);
        assert_eq!(ram_in_bytes("1q"), None);
    }
}
