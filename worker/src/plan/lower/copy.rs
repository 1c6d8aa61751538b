//! Lowering COPY and ADD: sources, destination and flags expanded and checked, and the history
//! text BuildKit writes for them.

use super::values::{SourceKind, check_digest, classify_source, is_commit, valid_chmod};
use super::{HistoryStyle, Lowerer};
use crate::dockerfile::Diagnostic;
use crate::dockerfile::expand::Lexer;
use crate::dockerfile::instruction::{self, Instruction, Source};
use crate::plan::input_for;
use crate::plan::step::{Copy, CopySource, Input, Op};

impl Lowerer<'_> {
    pub(super) fn copy(&mut self, i: &Instruction, c: &instruction::Copy, onbuild: bool) {
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
            unpack: c.is_add && c.unpack != Some(false),
            unpack_downloads: c.unpack == Some(true),
        });
        self.push(i, display, created_by, op);
    }
}
