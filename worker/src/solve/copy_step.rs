//! COPY and ADD in a stage: the content keys of their sources (context files, another stage's
//! paths, Git commits, downloads by checksum), and their execution into a new snapshot.

use super::stage::State;
use super::{Solver, StepFailure};
use crate::copy::{self, CopyError};
use crate::digest::Digest;
use crate::plan::step::{CopySource, Input};
use crate::snapshot::layer::Pending;
use crate::snapshot::view::View;

impl Solver<'_> {
    pub(super) fn copy_inputs(
        &self,
        c: &crate::plan::step::Copy,
    ) -> Result<Vec<Digest>, StepFailure> {
        let mut inputs = vec![self.input_key(&c.from)?];
        for source in &c.sources {
            if let CopySource::Git(url) = source {
                // The commit names the content (BuildKit keys a Git source on the commit, the
                // subdirectory and whether `.git` is kept), so a moved branch is a miss and an
                // unchanged one a hit, without a checkout.
                let (git, fetched) = self.git_source(url, c.checksum.as_deref())?;
                let mut h = crate::digest::KeyHasher::new("git-source");
                h.str(&fetched.commit.to_string())
                    .str(&git.subdir)
                    .str(if git.keeps_git_dir(c.keep_git_dir) {
                        "keep-git-dir"
                    } else {
                        ""
                    })
                    .str(if git.mtime == crate::git::MTime::Commit {
                        "mtime=commit"
                    } else {
                        ""
                    });
                inputs.push(h.finish());
            }
        }
        for source in &c.sources {
            if let CopySource::Url(url) = source {
                // With --checksum the content is known without downloading it (BuildKit keys
                // the step on the checksum too).
                inputs.push(match &c.checksum {
                    Some(sum) => {
                        // Known without a download: provenance names it by its checksum.
                        if let Ok(d) = Digest::parse(sum) {
                            let mut pinned = super::shared::lock(&self.pinned_urls);
                            if !pinned.iter().any(|(u, _)| u == url) {
                                pinned.push((url.clone(), d));
                            }
                        }
                        let mut h = crate::digest::KeyHasher::new("url-checksum");
                        h.str(url).str(sum);
                        h.finish()
                    }
                    None => self.download(url, None)?.digest.clone(),
                });
            }
        }
        if c.from == Input::Context {
            let mut rels = Vec::new();
            for source in &c.sources {
                if let CopySource::Path(p) = source {
                    match self.context.expand(p) {
                        Ok(found) => rels.extend(found),
                        // A wildcard that matches nothing copies nothing (BuildKit); a plain
                        // path must exist.
                        Err(_) if crate::context::glob::has_meta(p) => {}
                        Err(_) => {
                            return Err(StepFailure::NotFound(
                                p.trim_start_matches('/').to_string(),
                            ));
                        }
                    }
                }
            }
            let mut hashes = super::shared::lock(&self.shared.hashes);
            inputs.push(
                crate::context::hash::digest_paths(self.context, &rels, &mut hashes).map_err(
                    |source| StepFailure::Io {
                        what: "reading the context",
                        source,
                    },
                )?,
            );
        }
        Ok(inputs)
    }

    pub(super) fn execute_copy(
        &self,
        state: &State,
        c: &crate::plan::step::Copy,
        pending: &Pending,
    ) -> Result<(), StepFailure> {
        let base = View::new(state.lowers(self));
        let stage_view;
        let image_view;
        let source = match &c.from {
            Input::Context => copy::Source::Context(self.context),
            Input::Stage(j) => {
                stage_view = self.stage_view(*j)?;
                copy::Source::View(&stage_view)
            }
            Input::Image(reference) => {
                image_view = self
                    .image(reference, &self.frontend.target_platform())?
                    .view(self);
                copy::Source::View(&image_view)
            }
        };
        let mut downloads = std::collections::HashMap::new();
        for source in &c.sources {
            if let CopySource::Url(url) = source {
                downloads.insert(
                    url.clone(),
                    (*self.download(url, c.checksum.as_deref())?).clone(),
                );
            }
        }
        let upper = pending.fs();
        let not_found = |e| match e {
            CopyError::Context(crate::context::ContextError::NotFound { path }) => {
                StepFailure::NotFound(path.trim_start_matches('/').to_string())
            }
            e => StepFailure::Copy(e),
        };
        // A Git source is its checkout, copied as a directory's content is (BuildKit copies the
        // Git source's state to the destination); the other sources follow.
        for source in &c.sources {
            let CopySource::Git(url) = source else {
                continue;
            };
            let (git, fetched) = self.git_source(url, c.checksum.as_deref())?;
            let tmp = self.snapshots.store().temp_dir("git-add")?;
            let tree = tmp.path().join("tree");
            crate::git::checkout(
                &fetched,
                &git,
                &crate::git::Options {
                    keep_git_dir: c.keep_git_dir,
                },
                &tree,
            )?;
            let view = View::new(vec![tree]);
            let op = crate::plan::step::Copy {
                is_add: false,
                sources: vec![CopySource::Path("/".into())],
                unpack: false,
                unpack_downloads: false,
                parents: false,
                ..c.clone()
            };
            copy::copy(&copy::Request {
                downloads: &downloads,
                op: &op,
                source: copy::Source::View(&view),
                base: &base,
                upper: &upper,
            })
            .map_err(not_found)?;
        }
        let rest: Vec<CopySource> = c
            .sources
            .iter()
            .filter(|s| !matches!(s, CopySource::Git(_)))
            .cloned()
            .collect();
        if rest.is_empty() {
            return Ok(());
        }
        let op;
        let c = if rest.len() == c.sources.len() {
            c
        } else {
            op = crate::plan::step::Copy {
                sources: rest,
                ..c.clone()
            };
            &op
        };
        copy::copy(&copy::Request {
            downloads: &downloads,
            op: c,
            source,
            base: &base,
            upper: &upper,
        })
        .map_err(|e| match e {
            CopyError::Context(crate::context::ContextError::NotFound { path }) => {
                StepFailure::NotFound(path.trim_start_matches('/').to_string())
            }
            e => StepFailure::Copy(e),
        })
    }

    /// Resolve and fetch an `ADD <git-url>` source once per build (its commit is then fixed for
    /// the whole build); check `checksum` (`ADD --checksum`) against the commit.
    fn git_source(
        &self,
        url: &str,
        checksum: Option<&str>,
    ) -> Result<(crate::git::GitRef, std::sync::Arc<crate::git::Fetched>), StepFailure> {
        let git = crate::git::GitRef::parse(url, false)
            .map_err(crate::git::GitError::from)?
            .ok_or_else(|| StepFailure::Other(format!("{url} is not a Git URL")))?;
        let key = format!("{url}\n{}", checksum.unwrap_or_default());
        let mut cache = super::shared::lock(&self.shared.git);
        if let Some(f) = cache.get(&key) {
            return Ok((git, f.clone()));
        }
        self.progress.event(crate::progress::Event::Info {
            message: format!("fetching {}", git.describe()),
        });
        let repos = self.snapshots.store().root().join("git");
        let fetched = std::sync::Arc::new(crate::git::fetch(
            &git,
            &self.opts.git_auth,
            checksum,
            &repos,
        )?);
        cache.insert(key, fetched.clone());
        Ok((git, fetched))
    }

    /// Download a URL once per build; check `checksum` when given.
    fn download(
        &self,
        url: &str,
        checksum: Option<&str>,
    ) -> Result<std::sync::Arc<crate::fetch::Downloaded>, StepFailure> {
        {
            let mut used = super::shared::lock(&self.used_downloads);
            if !used.iter().any(|u| u == url) {
                used.push(url.to_string());
            }
        }
        let mut cache = super::shared::lock(&self.shared.downloads);
        let d = match cache.get(url) {
            Some(d) => d.clone(),
            None => {
                let dir = self.snapshots.store().root().join("tmp");
                let d = std::sync::Arc::new(crate::fetch::fetch(url, &dir, None)?);
                cache.insert(url.to_string(), d.clone());
                d
            }
        };
        if let Some(sum) = checksum
            && sum != d.digest.as_str()
        {
            return Err(crate::fetch::FetchError::Checksum {
                url: url.to_string(),
                expected: sum.to_string(),
                got: d.digest.clone(),
            }
            .into());
        }
        Ok(d)
    }
}
