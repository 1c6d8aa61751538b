//! HEALTHCHECK: `NONE`, or `CMD` with `--interval`, `--timeout`, `--start-period`,
//! `--start-interval` and `--retries`.
//!
//! BuildKit's rules: the type is the first word, case-insensitive; `NONE` takes nothing else
//! (and its flags are not looked at); `CMD` takes a command in exec or shell form, the shell
//! form becoming `CMD-SHELL`. Durations use Go's syntax; zero means the default, anything else
//! below 1ms is an error. Retries are a 32-bit integer, not negative.

use super::diagnostic::Diagnostic;
use super::duration;
use super::flags::Kind as F;
use super::instruction::{Ctx, Healthcheck, Kind, Parts, check_flags, keyword_error, maybe_json};

pub(super) fn parse_healthcheck(
    ctx: &Ctx<'_>,
    parts: &Parts,
    diags: &mut Vec<Diagnostic>,
) -> Option<Kind> {
    let rest = parts.args.as_str();
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        diags.push(
            keyword_error(ctx, parts, "HEALTHCHECK requires at least one argument")
                .with_help("write `HEALTHCHECK [options] CMD command` or `HEALTHCHECK NONE`"),
        );
        return None;
    }
    let typ = rest[..sep].to_uppercase();
    let next = rest[sep..].len() - rest[sep..].trim_start_matches(char::is_whitespace).len() + sep;
    let cmd_parts = Parts {
        cmd: String::new(),
        cmd_start: 0,
        cmd_end: 0,
        flags: Vec::new(),
        args: rest[next..].to_string(),
        args_start: parts.args_start + next,
    };
    let cmd = maybe_json(ctx, &cmd_parts, diags)?;
    let type_end = parts.args_start + sep;
    if typ == "NONE" {
        if !cmd.args.is_empty() {
            diags.push(ctx.err(
                parts.args_start,
                parts.args_start + rest.len(),
                "HEALTHCHECK NONE takes no arguments",
            ));
            return None;
        }
        return Some(Kind::Healthcheck(Healthcheck {
            test: vec!["NONE".into()],
            interval: 0,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 0,
        }));
    }
    let f = check_flags(
        ctx,
        parts,
        &[
            ("interval", F::Str),
            ("timeout", F::Str),
            ("start-period", F::Str),
            ("start-interval", F::Str),
            ("retries", F::Str),
        ],
        diags,
    );
    if typ != "CMD" {
        diags.push(
            ctx.err(
                parts.args_start,
                type_end,
                format!("Unknown type {:?} in HEALTHCHECK (try CMD)", typ),
            )
            .with_help("write `HEALTHCHECK [options] CMD command` or `HEALTHCHECK NONE`"),
        );
        return None;
    }
    if cmd.args.is_empty() {
        diags.push(ctx.err(
            parts.args_start,
            type_end,
            "Missing command after HEALTHCHECK CMD",
        ));
        return None;
    }
    let mut test = vec![if cmd.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(cmd.args);
    let mut duration = |name: &str| -> i64 {
        let Some(v) = f.str(name) else { return 0 };
        if v.value.is_empty() {
            return 0;
        }
        let result = duration::parse(&v.value).and_then(|d| {
            if d != 0 && d < 1_000_000 {
                Err(format!("Interval {name:?} cannot be less than 1ms"))
            } else {
                Ok(d)
            }
        });
        match result {
            Ok(d) => d,
            Err(e) => {
                diags.push(
                    ctx.err(v.start, v.end, e)
                        .with_help("durations are written like 30s, 1m30s or 500ms"),
                );
                0
            }
        }
    };
    let interval = duration("interval");
    let timeout = duration("timeout");
    let start_period = duration("start-period");
    let start_interval = duration("start-interval");
    let mut retries = 0;
    if let Some(v) = f.str("retries")
        && !v.value.is_empty()
    {
        match v.value.parse::<i32>() {
            Ok(n) if n < 0 => diags.push(ctx.err(
                v.start,
                v.end,
                format!("--retries cannot be negative ({n})"),
            )),
            Ok(n) => retries = i64::from(n),
            Err(_) => diags.push(
                ctx.err(
                    v.start,
                    v.end,
                    format!("strconv.ParseInt: parsing {:?}: invalid syntax", v.value),
                )
                .with_help("--retries is a whole number"),
            ),
        }
    }
    Some(Kind::Healthcheck(Healthcheck {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}
