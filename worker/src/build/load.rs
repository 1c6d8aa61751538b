//! Reading the build's inputs: the context (a directory, a tarball, a Git repository or a URL)
//! and the Dockerfile in it.

use super::*;

/// Read the context and the Dockerfile.
pub fn load(req: &Request, store: &Store) -> Result<(Context, DockerfileText), Error> {
    load_with(req, store, &|_| {})
}

/// [`load`], saying what a remote context does through `note`.
pub fn load_with(
    req: &Request,
    store: &Store,
    note: &dyn Fn(String),
) -> Result<(Context, DockerfileText), Error> {
    let in_context = |ctx: &Context| -> PathBuf {
        let rel = req
            .dockerfile
            .clone()
            .unwrap_or_else(|| PathBuf::from("Dockerfile"));
        if rel.is_absolute() {
            rel
        } else {
            ctx.root().join(rel)
        }
    };
    let rel = req
        .dockerfile
        .clone()
        .unwrap_or_else(|| PathBuf::from("Dockerfile"));
    let (context, dockerfile_path) = match &req.context {
        ContextSource::Dir(dir) => {
            let path = req
                .dockerfile
                .clone()
                .map(|f| {
                    if f.is_relative() && !f.exists() {
                        dir.join(f)
                    } else {
                        f
                    }
                })
                .unwrap_or_else(|| dir.join("Dockerfile"));
            (Context::from_dir(dir, Some(&path))?, path)
        }
        ContextSource::Tar(file) => {
            let reader: Box<dyn io::Read> = if file.as_os_str() == "-" {
                Box::new(io::stdin())
            } else {
                Box::new(File::open(file)?)
            };
            let ctx = Context::from_tar(reader, store, Some(&rel))?;
            let path = in_context(&ctx);
            (ctx, path)
        }
        ContextSource::Git(git) => {
            note(format!("fetching the Git context {}", git.describe()));
            let remote = crate::context::remote::git(
                git,
                &req.git_auth(),
                req.keep_git_dir,
                store,
                Some(&rel),
            )?;
            if let Some(rev) = remote.context.origin().and_then(|o| o.revision.clone()) {
                note(format!("Git context {} at commit {rev}", git.describe()));
            }
            if remote.submodules > 0 {
                note(format!(
                    "warning: the Git context has {} submodules; Kiln does not fetch submodules, their directories are empty",
                    remote.submodules
                ));
            }
            let path = in_context(&remote.context);
            (remote.context, path)
        }
        ContextSource::Url { url, sha256 } => {
            note(format!(
                "downloading the context {}",
                crate::git::reference::redact(url)
            ));
            let remote = crate::context::remote::url(url, sha256.as_deref(), store, Some(&rel))?;
            let path = match &remote.dockerfile {
                Some(p) => {
                    note(
                        "the URL is not an archive: it is the Dockerfile, and the context is empty"
                            .into(),
                    );
                    p.clone()
                }
                None => in_context(&remote.context),
            };
            (remote.context, path)
        }
    };
    let text = std::fs::read_to_string(&dockerfile_path).map_err(|source| Error::Dockerfile {
        path: dockerfile_path.clone(),
        source,
    })?;
    let name = match (&req.context, &req.dockerfile) {
        (_, Some(f)) => f.display().to_string(),
        _ => "Dockerfile".to_string(),
    };
    Ok((context, DockerfileText { name, text }))
}
