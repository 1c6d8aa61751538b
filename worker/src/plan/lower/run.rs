//! Lowering RUN: the command line (shell wrapping, heredocs), the environment, and every
//! `--mount` with BuildKit's defaults applied:
//! - bind, cache and tmpfs targets relative to the WORKDIR are joined to it; `/` is refused;
//! - a cache id defaults to its target as written, cleaned; sharing to `shared`; a new cache
//!   directory is `0755` and owned by 0:0 unless `mode`, `uid`, `gid` say otherwise;
//! - a secret id defaults to the base name of its target, its target to `/run/secrets/<id>`
//!   (none when only `env` is given), its mode to `0400`;
//! - an ssh id defaults to `default`, its socket to `/run/buildkit/ssh_agent.<N>` (N counting the
//!   RUN's ssh mounts from 0), its mode to `0600`;
//! - `source` is a path in `from` (`/` by default); a bind mount reads the build context unless
//!   `from` names a stage or an image.

use super::{Lowerer, PROXY_ARGS, path};
use crate::dockerfile::instruction::{self, Instruction};
use crate::dockerfile::mount::{self, MountType};
use crate::dockerfile::{Diagnostic, heredoc};
use crate::plan::input_for;
use crate::plan::step::{InlineFile, Input, Mount, Network, Op, Run, Security, Sharing};

impl Lowerer<'_> {
    pub(super) fn run(&mut self, i: &Instruction, r: &instruction::Run, onbuild: bool) {
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
}
