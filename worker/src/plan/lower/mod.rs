//! Lowering a stage: its instructions, with variables expanded, become [`Step`]s and an image
//! config, exactly as BuildKit's dispatcher would build them.
//!
//! The rules implemented here (BuildKit's `dockerfile2llb` dispatch):
//! - The stage starts from its base image config. If the config lacks `PATH`, the default is
//!   added to it. The base's `OnBuild` triggers run first and are not inherited.
//! - Variables: the config's `Env`, then every `ENV` and every `ARG` with a value, in order: a
//!   later one replaces an earlier one of the same name, so ENV shadows an earlier ARG. An `ARG`
//!   takes the build argument of that name if given, else its default (expanded), else the
//!   global value of that name. A stage built `FROM <stage>` inherits that stage's ARGs.
//! - Expansion happens in ADD, COPY (sources, destination, `--chown`, `--chmod`, ADD's
//!   `--checksum`), ENV and LABEL (keys and values), EXPOSE (split into words), STOPSIGNAL,
//!   USER, VOLUME, WORKDIR, ARG defaults, `RUN --mount` values and unquoted COPY/ADD heredocs.
//!   Never in RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER, `--from`, `--exclude`.
//! - History (`created_by`): `RUN` is `RUN ` + the argv joined by spaces, prefixed by
//!   `|N K=V ...` when build arguments are in scope (their current values), and suffixed by
//!   ` # buildkit`; COPY and ADD are `COPY [--parents] [--chown=X] [--chmod=Y] src... <<heredoc...
//!   dest # buildkit`; the others are the instruction with its resolved values, formatted as Go
//!   prints them (`CMD ["/bin/sh" "-c" "x"]`, `VOLUME [/a /b]`, `EXPOSE map[80/tcp:{}]`).
//! - ENTRYPOINT drops an inherited CMD unless this stage set CMD before it. CMD sets
//!   `ArgsEscaped`. Shell forms are wrapped in the current SHELL (default `/bin/sh -c`).
//! - WORKDIR joins a relative path to the current directory and makes a layer unless it is `/`.
//! - A RUN that is exactly one heredoc runs its body with the shell, or, if it starts with
//!   `#!`, as a file mounted at `/dev/pipes/<name>`; other heredoc RUNs hand the shell the
//!   command line followed by each body and delimiter.

use std::collections::BTreeMap;

mod copy;
mod run;
mod values;

use super::gofmt;
use super::path;
use super::{HistoryStyle, PROXY_ARGS, Plan};
use crate::dockerfile::diagnostic::Severity;
use crate::dockerfile::expand::{EnvList, Lexer};
use crate::dockerfile::instruction::{self, Instruction, Kind};
use crate::dockerfile::{Diagnostic, Diagnostics, Span, suggest};
use crate::image::config::{DEFAULT_PATH, Empty, Healthcheck, ImageConfig, default_shell};
use crate::plan::step::{LoweredStage, Op, Step};
use values::{check_signal, port_keys};

/// The build arguments in scope at the end of a stage, for a `FROM <stage>` child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Declared ARGs in order, with their values (`None`: declared without a value).
    pub args: Vec<(String, Option<String>)>,
    /// Variables whose last writer was an ARG, with their values.
    pub arg_env: Vec<(String, String)>,
    /// The steps whose `--mount` options used a variable that the (not yet known) base image
    /// may define: their mounts are only as exact as that.
    pub inexact_mounts: Vec<usize>,
}

/// Lower a stage of the plan at build time, given its base image config: the image's config for
/// `FROM <image>`, an empty config for `FROM scratch`, or the lowered config of the base stage
/// for `FROM <stage>`. Fails with the problems found, each pointing at its instruction.
pub fn lower(
    plan: &Plan,
    stage: usize,
    base_config: &ImageConfig,
) -> Result<LoweredStage, Diagnostics> {
    lower_stage(plan, stage, base_config, false).map(|(l, _, _)| l)
}

/// Lower a stage; with `unknown_env`, problems that may disappear once the base image's
/// variables are known are reported as warnings.
pub(crate) fn lower_stage(
    plan: &Plan,
    index: usize,
    base_config: &ImageConfig,
    unknown_env: bool,
) -> Result<(LoweredStage, Scope, Vec<Diagnostic>), Diagnostics> {
    let Some(def) = plan.dockerfile.stages.get(index) else {
        return Err(Diagnostic::global(
            plan.dockerfile.source.name(),
            format!("no stage {index} in the plan"),
        )
        .into());
    };
    let mut cfg = base_config.clone();
    let triggers = std::mem::take(&mut cfg.on_build);
    if cfg.env_get("PATH").is_none() {
        cfg.env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut env = EnvList::from_kv(&cfg.env);
    let mut scope = Scope::default();
    if let crate::plan::step::Base::Stage(b) = &plan.stages[index].base
        && let Some(Some(s)) = plan.scopes.get(*b)
    {
        for (k, v) in &s.arg_env {
            env.set(k, v);
        }
        scope.arg_env = s.arg_env.clone();
        scope.inexact_mounts.clear();
        if plan.history == HistoryStyle::Current {
            scope.args = s.args.clone();
        }
    }
    if matches!(plan.stages[index].base, crate::plan::step::Base::Scratch)
        && cfg.working_dir.is_empty()
    {
        cfg.working_dir = "/".into();
    }
    let workdir = if cfg.working_dir.is_empty() {
        "/".to_string()
    } else {
        let wd = path::normalize_workdir(&cfg.working_dir, &cfg.working_dir);
        cfg.working_dir = wd.clone();
        wd
    };
    let mut l = Lowerer {
        plan,
        src: &plan.dockerfile.source,
        lexer: Lexer::new(plan.dockerfile.escape),
        cfg,
        author: String::new(),
        env,
        scope,
        workdir,
        workdir_set: matches!(plan.stages[index].base, crate::plan::step::Base::Stage(_))
            && !base_config.working_dir.is_empty(),
        cmd_set: false,
        steps: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        unknown_env,
        uncertain: false,
    };
    for t in &triggers {
        match crate::dockerfile::parse_trigger(t) {
            Ok(mut i) => {
                i.location = def.from.location.clone();
                i.span = def.from.span;
                i.keyword_span = def.from.keyword_span;
                i.args_span = def.from.span;
                l.dispatch(&i, true);
            }
            Err(e) => l.errors.push(
                Diagnostic::error(
                    l.src,
                    def.from.keyword_span,
                    format!("ONBUILD trigger {t:?} of the base image cannot run: {e}"),
                )
                .with_help("the base image was built with an invalid ONBUILD instruction"),
            ),
        }
    }
    for i in &def.instructions {
        l.dispatch(i, false);
    }
    if !l.errors.is_empty() {
        let mut d = Diagnostics { items: l.errors };
        d.items.extend(l.warnings);
        return Err(d);
    }
    Ok((
        LoweredStage {
            steps: l.steps,
            config: l.cfg,
            author: l.author,
        },
        l.scope,
        l.warnings,
    ))
}

struct Lowerer<'p> {
    plan: &'p Plan,
    src: &'p crate::dockerfile::SourceFile,
    lexer: Lexer,
    cfg: ImageConfig,
    author: String,
    env: EnvList,
    scope: Scope,
    workdir: String,
    workdir_set: bool,
    cmd_set: bool,
    steps: Vec<Step>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    unknown_env: bool,
    /// The current instruction used a variable that may come from the unknown base image.
    uncertain: bool,
}

/// Variables BuildKit never turns into environment variables.
const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

impl Lowerer<'_> {
    /// Record a problem with the current instruction. When it may come from a variable of a base
    /// image not known yet, it is a warning now and is checked again at build time.
    fn fail(&mut self, d: Diagnostic, env_dependent: bool) {
        if self.unknown_env && (self.uncertain || env_dependent) {
            let mut d = d.with_help(
                "this depends on variables the base image may set; it is checked again at build time",
            );
            d.severity = Severity::Warning;
            self.warnings.push(d);
        } else {
            self.errors.push(d);
        }
    }

    fn expand(&mut self, word: &str, span: Span) -> Option<String> {
        match self.lexer.word(word, &self.env) {
            Ok(e) => {
                self.note_unmatched(&e.unmatched, span);
                Some(e.value)
            }
            Err(e) => {
                let d = Diagnostic::error(
                    self.src,
                    span,
                    format!("failed to process {word:?}: {}", e.message),
                );
                self.fail(d, e.env_dependent);
                None
            }
        }
    }

    fn expand_words(&mut self, word: &str, span: Span) -> Option<Vec<String>> {
        match self.lexer.word(word, &self.env) {
            Ok(e) => {
                self.note_unmatched(&e.unmatched, span);
                Some(e.words)
            }
            Err(e) => {
                let d = Diagnostic::error(
                    self.src,
                    span,
                    format!("failed to process {word:?}: {}", e.message),
                );
                self.fail(d, e.env_dependent);
                None
            }
        }
    }

    /// The keys and values of an ENV or LABEL, all expanded with the variables in effect before
    /// the instruction; `None` when one fails (the problem is recorded).
    fn expand_pairs(
        &mut self,
        kvs: &[crate::dockerfile::args::KeyValue],
        span: Span,
    ) -> Option<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            out.push((self.expand(&kv.key, span)?, self.expand(&kv.value, span)?));
        }
        Some(out)
    }

    fn note_unmatched(&mut self, unmatched: &std::collections::BTreeSet<String>, span: Span) {
        if unmatched.is_empty() {
            return;
        }
        if self.unknown_env {
            self.uncertain = true;
            return;
        }
        for name in unmatched {
            if self.scope.args.iter().any(|(k, _)| k == name)
                || NON_ENV_ARGS.contains(&name.as_str())
            {
                continue;
            }
            let keys: Vec<&str> = self.env.keys().collect();
            let mut d = Diagnostic::warning(
                self.src,
                span,
                format!("Usage of undefined variable '${name}'"),
            )
            .with_rule("UndefinedVar");
            if let Some(s) = suggest::closest(name, &keys) {
                d = d.with_help(format!("did you mean ${s}?"));
            }
            self.warnings.push(d);
        }
    }

    fn warn(&mut self, span: Span, rule: &str, msg: String) {
        self.warnings
            .push(Diagnostic::warning(self.src, span, msg).with_rule(rule));
    }

    fn shell(&self) -> Vec<String> {
        if self.cfg.shell.is_empty() {
            default_shell()
        } else {
            self.cfg.shell.clone()
        }
    }

    fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut out = self.shell();
        out.push(args.join(" "));
        out
    }

    /// The instruction as BuildKit's progress shows it: variables expanded where known, the
    /// keyword uppercased.
    fn display(&self, text: &str, raw_quotes: bool, onbuild: bool) -> String {
        let mut lex = self.lexer;
        if raw_quotes {
            lex.raw_quotes = true;
            lex.skip_unset = true;
        }
        let shown = lex
            .word(text, &self.env)
            .map(|e| e.value)
            .unwrap_or_else(|_| text.to_string());
        let shown = uppercase_first(&shown);
        if onbuild {
            format!("ONBUILD {shown}")
        } else {
            shown
        }
    }

    fn push(&mut self, i: &Instruction, display: String, created_by: String, op: Op) {
        self.steps.push(Step {
            location: i.location.clone(),
            display,
            created_by,
            op,
        });
    }

    fn config_step(&mut self, i: &Instruction, onbuild: bool, created_by: String) {
        let display = if onbuild {
            format!("ONBUILD {}", uppercase_first(&i.original))
        } else {
            uppercase_first(&i.original)
        };
        self.push(i, display, created_by, Op::Config);
    }

    fn dispatch(&mut self, i: &Instruction, onbuild: bool) {
        self.uncertain = false;
        match &i.kind {
            Kind::From(_) => {}
            Kind::Env(kvs) => {
                // Every key and value is expanded before any is set (BuildKit expands the whole
                // instruction, then dispatches it): `ENV abc=bye def=$abc` sees the old `abc`.
                let Some(pairs) = self.expand_pairs(kvs, i.args_span) else {
                    return;
                };
                let mut msg = String::from("ENV");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    self.env.set(&k, &v);
                    self.scope.arg_env.retain(|(a, _)| *a != k);
                    self.cfg.env_set(&k, &v);
                }
                self.config_step(i, onbuild, msg);
            }
            Kind::Label(kvs) => {
                let Some(pairs) = self.expand_pairs(kvs, i.args_span) else {
                    return;
                };
                let mut msg = String::from("LABEL");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    self.cfg.labels.insert(k, v);
                }
                self.config_step(i, onbuild, msg);
            }
            Kind::Maintainer(name) => {
                self.author = name.clone();
                self.config_step(i, onbuild, format!("MAINTAINER {name}"));
            }
            Kind::Arg(defs) => self.arg(i, defs, onbuild),
            Kind::Run(r) => self.run(i, r, onbuild),
            Kind::Copy(c) => self.copy(i, c, onbuild),
            Kind::Cmd(c) => {
                let args = if c.json {
                    c.args.clone()
                } else {
                    self.with_shell(&c.args)
                };
                if !c.json && self.cfg.shell.is_empty() {
                    self.warn(
                        i.keyword_span,
                        "JSONArgsRecommended",
                        "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals".into(),
                    );
                }
                let msg = format!("CMD {}", gofmt::quote_list(&args));
                self.cfg.cmd = Some(args);
                self.cfg.args_escaped = true;
                self.cmd_set = true;
                self.config_step(i, onbuild, msg);
            }
            Kind::Entrypoint(c) => {
                let args: Option<Vec<String>> = if c.json {
                    (!c.args.is_empty()).then(|| c.args.clone())
                } else {
                    Some(self.with_shell(&c.args))
                };
                if !c.json && self.cfg.shell.is_empty() {
                    self.warn(
                        i.keyword_span,
                        "JSONArgsRecommended",
                        "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals".into(),
                    );
                }
                let msg = format!(
                    "ENTRYPOINT {}",
                    gofmt::quote_list(args.as_deref().unwrap_or_default())
                );
                self.cfg.entrypoint = args;
                if !self.cmd_set {
                    self.cfg.cmd = None;
                }
                self.config_step(i, onbuild, msg);
            }
            Kind::Shell(args) => {
                self.cfg.shell = args.clone();
                self.config_step(i, onbuild, format!("SHELL {}", gofmt::list(args)));
            }
            Kind::Healthcheck(h) => {
                self.cfg.healthcheck = Some(Healthcheck {
                    test: h.test.clone(),
                    interval: h.interval,
                    timeout: h.timeout,
                    start_period: h.start_period,
                    start_interval: h.start_interval,
                    retries: h.retries,
                });
                let text = gofmt::healthcheck(h, self.plan.history == HistoryStyle::Current);
                self.config_step(i, onbuild, format!("HEALTHCHECK {text}"));
            }
            Kind::Expose(ports) => {
                let mut specs = Vec::new();
                for p in ports {
                    let Some(words) = self.expand_words(p, i.args_span) else {
                        return;
                    };
                    specs.extend(words);
                }
                let mut keys = BTreeMap::new();
                for spec in &specs {
                    match port_keys(spec) {
                        Ok(ks) => {
                            for k in ks {
                                keys.insert(k, Empty {});
                            }
                        }
                        Err(e) => {
                            let d = Diagnostic::error(self.src, i.args_span, e)
                                .with_help("ports are written 80, 80/tcp, 53/udp or 8000-8010/tcp");
                            self.fail(d, false);
                            return;
                        }
                    }
                }
                let msg = format!(
                    "EXPOSE map[{}]",
                    keys.keys()
                        .map(|k| format!("{k}:{{}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                self.cfg.exposed_ports.extend(keys);
                self.config_step(i, onbuild, msg);
            }
            Kind::User(u) => {
                let Some(u) = self.expand(u, i.args_span) else {
                    return;
                };
                self.cfg.user = u.clone();
                self.config_step(i, onbuild, format!("USER {u}"));
            }
            Kind::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let Some(v) = self.expand(v, i.args_span) else {
                        return;
                    };
                    if v.is_empty() {
                        let d = Diagnostic::error(
                            self.src,
                            i.args_span,
                            "VOLUME specified can not be an empty string",
                        );
                        self.fail(d, false);
                        return;
                    }
                    out.push(v);
                }
                for v in &out {
                    self.cfg.volumes.insert(v.clone(), Empty {});
                }
                self.config_step(i, onbuild, format!("VOLUME {}", gofmt::list(&out)));
            }
            Kind::StopSignal(s) => {
                let Some(s) = self.expand(s, i.args_span) else {
                    return;
                };
                if let Err(e) = check_signal(&s) {
                    let d = Diagnostic::error(self.src, i.args_span, e)
                        .with_help("use a signal name such as SIGTERM or SIGQUIT, or a number");
                    self.fail(d, false);
                    return;
                }
                self.cfg.stop_signal = s.clone();
                self.config_step(i, onbuild, format!("STOPSIGNAL {s}"));
            }
            Kind::Workdir(p) => {
                let Some(p) = self.expand(p, i.args_span) else {
                    return;
                };
                if !self.workdir_set && !path::is_abs(&p) {
                    self.warn(
                        i.args_span,
                        "WorkdirRelativePath",
                        format!("Relative workdir {p:?} can have unexpected results if the base image changes"),
                    );
                }
                self.workdir_set = true;
                let wd = path::normalize_workdir(&self.cfg.working_dir, &p);
                self.cfg.working_dir = wd.clone();
                self.workdir = wd.clone();
                let display = self.display(&i.original, false, onbuild);
                let op = if wd == "/" {
                    Op::Config
                } else {
                    Op::Workdir {
                        path: wd.clone(),
                        user: self.cfg.user.clone(),
                    }
                };
                self.push(i, display, format!("WORKDIR {wd}"), op);
            }
            Kind::Onbuild(o) => {
                // ONBUILD only records the trigger; BuildKit writes no history entry for it.
                self.cfg.on_build.push(o.expression.clone());
            }
        }
    }

    fn arg(&mut self, i: &Instruction, defs: &[instruction::ArgDef], onbuild: bool) {
        let mut parts = Vec::new();
        for def in defs {
            let provided = self.plan.build_args.get(&def.key).cloned();
            let mut value = def.value.clone();
            if def.value.is_none() && provided.is_none() {
                use crate::dockerfile::expand::Env;
                if let Some(v) = self.plan.global_args.get(&def.key) {
                    value = Some(v.to_string());
                }
            }
            let mut shown_default = None;
            if let Some(default) = &def.value
                && (provided.is_none() || self.plan.history == HistoryStyle::Dockerd20)
            {
                let Some(v) = self.expand(default, i.args_span) else {
                    return;
                };
                shown_default = Some(v.clone());
                value = Some(v);
            }
            if let Some(p) = provided {
                value = Some(p);
            }
            if let Some(v) = &value
                && !NON_ENV_ARGS.contains(&def.key.as_str())
            {
                self.env.set(&def.key, v);
                self.scope.arg_env.retain(|(k, _)| *k != def.key);
                self.scope.arg_env.push((def.key.clone(), v.clone()));
            }
            self.scope.args.push((def.key.clone(), value.clone()));
            let shown = match self.plan.history {
                HistoryStyle::Current => &value,
                HistoryStyle::Dockerd20 => &shown_default,
            };
            parts.push(match shown {
                Some(v) => format!("{}={v}", def.key),
                None => def.key.clone(),
            });
        }
        self.config_step(i, onbuild, format!("ARG {}", parts.join(" ")));
    }

    /// `|N K=V ...` for the build arguments in scope, as BuildKit's `runCommandString`.
    fn run_command_string(&self, args: &[String]) -> String {
        use crate::dockerfile::expand::Env;
        let mut vars: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.scope.args {
            let val = self
                .env
                .get(k)
                .map(str::to_string)
                .unwrap_or_else(|| v.clone().unwrap_or_default());
            match vars.iter_mut().find(|(a, _)| a == k) {
                Some(slot) => slot.1 = val,
                None => vars.push((k.clone(), val)),
            }
        }
        let mut parts: Vec<String> = Vec::new();
        if !vars.is_empty() {
            parts.push(format!("|{}", vars.len()));
            parts.extend(vars.into_iter().map(|(k, v)| format!("{k}={v}")));
        }
        parts.extend(args.iter().cloned());
        parts.join(" ")
    }
}

fn uppercase_first(s: &str) -> String {
    match s.split_once(' ') {
        Some((a, b)) => format!("{} {b}", a.to_uppercase()),
        None => s.to_uppercase(),
    }
}
