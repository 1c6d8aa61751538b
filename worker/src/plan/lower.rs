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

use super::gofmt;
use super::path;
use super::{HistoryStyle, PROXY_ARGS, Plan, input_for};
use crate::dockerfile::diagnostic::Severity;
use crate::dockerfile::expand::{EnvList, Lexer};
use crate::dockerfile::instruction::{self, Instruction, Kind, Source};
use crate::dockerfile::mount::{self, MountType};
use crate::dockerfile::{Diagnostic, Diagnostics, Span, heredoc, suggest};
use crate::image::config::{DEFAULT_PATH, Empty, Healthcheck, ImageConfig, default_shell};
use crate::plan::step::{
    Copy, CopySource, InlineFile, Input, LoweredStage, Mount, Network, Op, Run, Security, Sharing,
    Step,
};

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
                let mut msg = String::from("ENV");
                for kv in kvs {
                    let (Some(k), Some(v)) = (
                        self.expand(&kv.key, i.args_span),
                        self.expand(&kv.value, i.args_span),
                    ) else {
                        return;
                    };
                    msg.push_str(&format!(" {k}={v}"));
                    self.env.set(&k, &v);
                    self.scope.arg_env.retain(|(a, _)| *a != k);
                    self.cfg.env_set(&k, &v);
                }
                self.config_step(i, onbuild, msg);
            }
            Kind::Label(kvs) => {
                let mut msg = String::from("LABEL");
                for kv in kvs {
                    let (Some(k), Some(v)) = (
                        self.expand(&kv.key, i.args_span),
                        self.expand(&kv.value, i.args_span),
                    ) else {
                        return;
                    };
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

    fn run(&mut self, i: &Instruction, r: &instruction::Run, onbuild: bool) {
        let mut mounts = Vec::new();
        let mut ssh_index = 0;
        let mut ok = true;
        let mut inexact = false;
        for (raw, span) in &r.mounts {
            self.uncertain = false;
            let mut expand_err = None;
            let mut unmatched = std::collections::BTreeSet::new();
            let lexer = self.lexer;
            let env = &self.env;
            let parsed = mount::parse(raw, &mut |v| match lexer.word(v, env) {
                Ok(e) => {
                    unmatched.extend(e.unmatched);
                    Ok(e.value)
                }
                Err(e) => {
                    expand_err = Some(e.env_dependent);
                    Err(format!("failed to process {v:?}: {}", e.message))
                }
            });
            self.note_unmatched(&unmatched, *span);
            inexact |= self.unknown_env && !unmatched.is_empty();
            match parsed {
                Ok(spec) => match self.mount(spec, &mut ssh_index) {
                    Ok(m) => mounts.push(m),
                    Err(msg) => {
                        ok = false;
                        let d = Diagnostic::error(self.src, *span, msg);
                        self.fail(d, false);
                    }
                },
                Err(e) => {
                    ok = false;
                    let mut d =
                        Diagnostic::error(self.src, *span, e.message).with_label("in this --mount");
                    if let Some(h) = e.help {
                        d = d.with_help(h);
                    }
                    self.fail(d, expand_err.unwrap_or(false));
                }
            }
        }
        if !ok {
            return;
        }
        let mut args = r.cmd.args.clone();
        let mut files = Vec::new();
        let mut display_text = i.original.clone();
        if !r.heredocs.is_empty() && !r.cmd.json {
            let first = &r.heredocs[0];
            if args.len() == 1 && heredoc::parse_opener(&args[0]).is_some() {
                let data = if first.chomp {
                    heredoc::chomp(&first.content)
                } else {
                    first.content.clone()
                };
                if data.starts_with("#!") {
                    let p = path::join(&["/dev/pipes/", &first.name]);
                    files.push(InlineFile {
                        path: p.clone(),
                        content: data,
                        mode: 0o755,
                    });
                    args = vec![p];
                } else {
                    args = vec![data];
                }
                display_text.push_str(&format!(" ({})", heredoc::summary(&first.content)));
            } else {
                let mut full = args.first().cloned().unwrap_or_default();
                for h in &r.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                args = vec![full];
            }
        }
        let argv = if r.cmd.json {
            args
        } else {
            self.with_shell(&args)
        };
        let mut env = self.env.to_kv();
        for (k, v) in &self.plan.build_args {
            if PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(k)) {
                for name in [k.to_uppercase(), k.to_lowercase()] {
                    if !self.env.contains(&name)
                        && !env.iter().any(|e| e.starts_with(&format!("{name}=")))
                    {
                        env.push(format!("{name}={v}"));
                    }
                }
            }
        }
        if inexact {
            self.scope.inexact_mounts.push(self.steps.len());
        }
        let created_by = format!("RUN {} # buildkit", self.run_command_string(&argv));
        let display = self.display(&display_text, true, onbuild);
        let op = Op::Run(Run {
            args: argv,
            files,
            env,
            user: self.cfg.user.clone(),
            workdir: self.workdir.clone(),
            mounts,
            network: match r.network.as_deref() {
                Some("none") => Network::None,
                Some("host") => Network::Host,
                _ => Network::Default,
            },
            security: match r.security.as_deref() {
                Some("insecure") => Security::Insecure,
                _ => Security::Sandbox,
            },
        });
        self.push(i, display, created_by, op);
    }

    /// Apply BuildKit's defaults to a parsed `--mount`.
    fn mount(&self, m: mount::MountSpec, ssh_index: &mut usize) -> Result<Mount, String> {
        let from_input =
            |from: &Option<String>| from.as_deref().map(|f| input_for(&self.plan.dockerfile, f));
        let resolve_target = |target: &str| -> Result<String, String> {
            let t = if path::is_abs(&path::clean(target)) {
                target.to_string()
            } else {
                path::join(&["/", &self.workdir, target])
            };
            if t == "/" {
                return Err(format!("invalid mount target {t:?}"));
            }
            Ok(t)
        };
        let source = path::join(&["/", m.source.as_deref().unwrap_or_default()]);
        let target_raw = m.target.clone().unwrap_or_default();
        Ok(match m.kind {
            MountType::Bind => Mount::Bind {
                target: resolve_target(&target_raw)?,
                from: from_input(&m.from).unwrap_or(Input::Context),
                source,
                readwrite: !m.readonly,
            },
            MountType::Cache => Mount::Cache {
                id: m.id.clone().unwrap_or_else(|| path::clean(&target_raw)),
                target: resolve_target(&target_raw)?,
                readonly: m.readonly,
                sharing: match m.sharing.as_deref() {
                    Some("private") => Sharing::Private,
                    Some("locked") => Sharing::Locked,
                    _ => Sharing::Shared,
                },
                from: from_input(&m.from),
                source,
                mode: m.mode.unwrap_or(0o755),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            },
            MountType::Tmpfs => Mount::Tmpfs {
                target: resolve_target(&target_raw)?,
                size: m.size,
            },
            MountType::Secret => {
                let id = match (&m.source, &m.id, &m.target) {
                    (Some(s), _, _) => s.clone(),
                    (None, Some(id), _) => id.clone(),
                    (None, None, Some(t)) => path::base(t),
                    (None, None, None) => return Err("one of source, target required".into()),
                };
                let target = match (&m.target, &m.env) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(_)) => None,
                    (None, None) => Some(format!("/run/secrets/{}", path::base(&id))),
                };
                Mount::Secret {
                    id,
                    target,
                    env: m.env.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o400),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
            MountType::Ssh => {
                let target = m
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{}", *ssh_index));
                *ssh_index += 1;
                Mount::Ssh {
                    id: m
                        .id
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "default".into()),
                    target,
                    required: m.required,
                    mode: m.mode.unwrap_or(0o600),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
        })
    }

    fn copy(&mut self, i: &Instruction, c: &instruction::Copy, onbuild: bool) {
        let name = if c.is_add { "ADD" } else { "COPY" };
        let chown = match &c.chown {
            Some(v) => match self.expand(v, i.args_span) {
                Some(v) => Some(v).filter(|v| !v.is_empty()),
                None => return,
            },
            None => None,
        };
        let chmod = match &c.chmod {
            Some((v, span)) => {
                let Some(v) = self.expand(v, *span) else {
                    return;
                };
                if !v.is_empty() && !valid_chmod(&v) {
                    let d = Diagnostic::error(
                        self.src,
                        *span,
                        format!("invalid chmod parameter: '{v}'. it should be octal string and between 0 and 07777"),
                    )
                    .with_help("write an octal mode such as 0755, or a symbolic one such as u+x,go-w");
                    self.fail(d, false);
                    return;
                }
                Some(v).filter(|v| !v.is_empty())
            }
            None => None,
        };
        let checksum = match &c.checksum {
            Some((v, span)) => {
                let Some(v) = self.expand(v, *span) else {
                    return;
                };
                Some((v, *span)).filter(|(v, _)| !v.is_empty())
            }
            None => None,
        };
        let mut sources = Vec::new();
        let mut paths = Vec::new();
        let mut heredocs = Vec::new();
        for s in &c.sources {
            match s {
                Source::Path(p) => {
                    let Some(p) = self.expand(p, i.args_span) else {
                        return;
                    };
                    paths.push(p);
                }
                Source::Heredoc(h) => {
                    let content = if h.expand {
                        let mut lex = Lexer::new('\\');
                        lex.skip_quotes = true;
                        match lex.word(&h.content, &self.env) {
                            Ok(e) => {
                                self.note_unmatched(&e.unmatched, i.args_span);
                                e.value
                            }
                            Err(e) => {
                                let d = Diagnostic::error(
                                    self.src,
                                    i.args_span,
                                    format!("failed to expand heredoc {}: {}", h.name, e.message),
                                )
                                .with_help(format!(
                                    "quote the delimiter (<<\"{}\") to keep the body as written",
                                    h.name
                                ));
                                self.fail(d, e.env_dependent);
                                return;
                            }
                        }
                    } else {
                        h.content.clone()
                    };
                    heredocs.push((h.name.clone(), content));
                }
            }
        }
        let Some(dest) = self.expand(&c.dest, i.args_span) else {
            return;
        };
        for p in &paths {
            let kind = classify_source(p);
            match kind {
                SourceKind::Url if !c.is_add => {
                    let d =
                        Diagnostic::error(self.src, i.args_span, "source can't be a URL for COPY")
                            .with_help("use ADD to download a URL");
                    self.fail(d, false);
                    return;
                }
                SourceKind::Git if !c.is_add => {
                    let d = Diagnostic::error(
                        self.src,
                        i.args_span,
                        "source can't be a git ref for COPY",
                    )
                    .with_help("use ADD to fetch a git repository");
                    self.fail(d, false);
                    return;
                }
                _ => {}
            }
            sources.push(match kind {
                SourceKind::Url => CopySource::Url(p.clone()),
                SourceKind::Git => CopySource::Git(p.clone()),
                SourceKind::Path => CopySource::Path(p.clone()),
            });
        }
        if let Some((sum, span)) = &checksum {
            let err = if paths.len() != 1 || !heredocs.is_empty() {
                Some("checksum can't be specified for multiple sources".to_string())
            } else {
                match classify_source(&paths[0]) {
                    SourceKind::Url => check_digest(sum).err(),
                    SourceKind::Git => (!is_commit(sum)).then(|| {
                        format!("invalid checksum {sum:?} for a git source: expected a commit hash")
                    }),
                    SourceKind::Path => {
                        Some("checksum can't be specified for non-HTTP(S) sources".into())
                    }
                }
            };
            if let Some(e) = err {
                let d = Diagnostic::error(self.src, *span, e)
                    .with_help("--checksum is a digest such as sha256:<64 hex digits>");
                self.fail(d, false);
                return;
            }
        }
        for (n, content) in heredocs {
            sources.push(CopySource::HereDoc { name: n, content });
        }
        let mut created_by = String::from(name);
        if self.plan.history == HistoryStyle::Current {
            if c.parents {
                created_by.push_str(" --parents");
            }
            if let Some(v) = &chown {
                created_by.push_str(&format!(" --chown={v}"));
            }
            if let Some(v) = &chmod {
                created_by.push_str(&format!(" --chmod={v}"));
            }
        }
        for p in &paths {
            created_by.push_str(&format!(" {p}"));
        }
        for s in &sources {
            if let CopySource::HereDoc { name, .. } = s {
                created_by.push_str(&format!(" <<{name}"));
            }
        }
        created_by.push_str(&format!(" {dest} # buildkit"));
        let from = match &c.from {
            Some((f, _)) => input_for(&self.plan.dockerfile, f),
            None => Input::Context,
        };
        let display = self.display(&i.original, false, onbuild);
        let op = Op::Copy(Copy {
            is_add: c.is_add,
            from,
            sources,
            dest,
            workdir: self.workdir.clone(),
            chown,
            chmod,
            link: c.link,
            parents: c.parents,
            exclude: c.exclude.clone(),
            checksum: checksum.map(|(v, _)| v),
            keep_git_dir: c.keep_git_dir,
            unpack: c.is_add,
        });
        self.push(i, display, created_by, op);
    }
}

fn uppercase_first(s: &str) -> String {
    match s.split_once(' ') {
        Some((a, b)) => format!("{} {b}", a.to_uppercase()),
        None => s.to_uppercase(),
    }
}

/// What an ADD or COPY source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Path,
    Url,
    Git,
}

/// BuildKit's `ParseGitRef` and `isHTTPSource`: `git://`, `ssh://`, `user@host:path` and
/// `http(s)://...` URLs whose path ends in `.git` are git repositories; other `http(s)://`
/// URLs are downloads; everything else is a path.
fn classify_source(s: &str) -> SourceKind {
    if s.starts_with("./") || s.starts_with("../") {
        return SourceKind::Path;
    }
    if s.starts_with("git://") || s.starts_with("ssh://") {
        return SourceKind::Git;
    }
    if let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    {
        let path_part = rest.split(['#', '?']).next().unwrap_or_default();
        let path = path_part.split_once('/').map_or("", |(_, p)| p);
        return if path.ends_with(".git") {
            SourceKind::Git
        } else {
            SourceKind::Url
        };
    }
    if let Some((user, rest)) = s.split_once('@')
        && !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && let Some((host, path)) = rest.split_once(':')
        && !host.is_empty()
        && !path.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return SourceKind::Git;
    }
    SourceKind::Path
}

fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `go-digest`'s `Parse`: `algorithm:hex` for a registered algorithm.
fn check_digest(s: &str) -> Result<(), String> {
    let Some((alg, hex)) = s.split_once(':') else {
        return Err(format!("invalid checksum digest format: {s:?}"));
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm: {alg:?}")),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("invalid checksum digest format: {s:?}"));
    }
    Ok(())
}

/// An octal mode up to 07777, or a symbolic mode (`u+x`, `go-w`, `a=rX,u+s`).
fn valid_chmod(s: &str) -> bool {
    if s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return u32::from_str_radix(s, 8).is_ok_and(|m| m <= 0o7777);
    }
    s.split(',').all(|clause| {
        let who_len = clause.bytes().take_while(|b| b"ugoa".contains(b)).count();
        let rest = &clause[who_len..];
        let mut ops = 0;
        let mut chars = rest.bytes().peekable();
        while let Some(op) = chars.next() {
            if !b"+-=".contains(&op) {
                return false;
            }
            ops += 1;
            while let Some(&b) = chars.peek() {
                if b"rwxXstugo".contains(&b) {
                    chars.next();
                } else {
                    break;
                }
            }
        }
        ops > 0
    })
}

/// docker/go-connections `nat.ParsePortSpec`: the `port/proto` keys of one EXPOSE word.
fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    let ip = if n >= 3 {
        parts[..n - 2].join(":")
    } else {
        String::new()
    };
    let (proto, port) = match container.split('/').collect::<Vec<_>>().as_slice() {
        _ if container.is_empty() => ("", ""),
        [p] => ("tcp", *p),
        [p, ""] => ("tcp", *p),
        [p, proto, ..] => (*proto, *p),
        [] => ("", ""),
    };
    if !ip.is_empty() {
        let bare = ip.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
    }
    if port.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (start, end) = port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    let num = |x: &str| -> Option<u16> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    match s.split_once('-') {
        None => num(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (b >= a).then_some((a, b))
        }
    }
}

/// moby/sys `signal.ParseSignal`: a number other than 0, or a Linux signal name with or without
/// `SIG`, any case.
fn check_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<i64>() {
        return if n == 0 {
            Err(format!("invalid signal: {s}"))
        } else {
            Ok(())
        };
    }
    let up = s.to_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX", "UNUSED",
    ];
    let rt = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n) || (prefix == "RTMAX-" && n == 14))
    };
    if NAMES.contains(&name) || rt("RTMIN+") || rt("RTMAX-") {
        Ok(())
    } else {
        Err(format!("invalid signal: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(classify_source("src/"), SourceKind::Path);
        assert_eq!(
            classify_source("https://example.com/a.tar.gz"),
            SourceKind::Url
        );
        assert_eq!(
            classify_source("https://github.com/a/b.git#v1"),
            SourceKind::Git
        );
        assert_eq!(classify_source("git@github.com:a/b.git"), SourceKind::Git);
        assert_eq!(classify_source("user@host"), SourceKind::Path);
    }

    #[test]
    fn ports() {
        assert_eq!(port_keys("80").unwrap(), ["80/tcp"]);
        assert_eq!(port_keys("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            port_keys("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(port_keys("80/xyz").is_err());
        assert!(port_keys("abc").is_err());
        assert!(port_keys("99999").is_err());
        assert!(port_keys("").is_err());
    }

    #[test]
    fn modes_digests_signals() {
        assert!(valid_chmod("0755"));
        assert!(valid_chmod("u+x,go-w"));
        assert!(valid_chmod("a=rX"));
        assert!(!valid_chmod("17777"));
        assert!(!valid_chmod("rwx"));
        assert!(!valid_chmod("u+q"));
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest("md5:abc").is_err());
        assert!(check_signal("SIGTERM").is_ok());
        assert!(check_signal("quit").is_ok());
        assert!(check_signal("9").is_ok());
        assert!(check_signal("SIGRTMIN+3").is_ok());
        assert!(check_signal("0").is_err());
        assert!(check_signal("SIGFOO").is_err());
    }
}
