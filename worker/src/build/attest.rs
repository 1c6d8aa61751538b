//! The provenance of a build's images (`--provenance`, `--attest type=provenance`): what the
//! request asked and what each platform's solve resolved, made into one in-toto statement and
//! one attestation manifest per platform image (`crate::provenance`,
//! `crate::image::attestation`).

use std::collections::BTreeMap;

use super::{Built, ContextSource, DockerfileText, Error, Request};
use crate::image::attestation;
use crate::image::layout::Artifact;
use crate::image::oci::Platform;
use crate::plan::Plan;
use crate::plan::step::{Network, Op};
use crate::provenance::{self, Material, Used};
use crate::store::Store;

/// One platform image's provenance: its attestation manifest, and the statement (for a local
/// output's `provenance.json`).
pub(crate) struct Attestation {
    pub manifest: Artifact,
    pub statement: Vec<u8>,
}

/// What the request says, in BuildKit's frontend terms, the same for every platform.
pub(super) fn request_inputs(
    req: &Request,
    plan: &Plan,
    dockerfile: &DockerfileText,
    git: Option<(String, String)>,
    started_on: String,
) -> provenance::Inputs {
    let mut args = BTreeMap::new();
    for (k, v) in &req.build_args {
        args.insert(format!("build-arg:{k}"), v.clone());
    }
    for (k, v) in &req.labels {
        args.insert(format!("label:{k}"), v.clone());
    }
    if let Some(t) = &req.target {
        args.insert("target".into(), t.clone());
    }
    if req.no_cache {
        args.insert("no-cache".into(), String::new());
    } else if !req.no_cache_filter.is_empty() {
        args.insert("no-cache".into(), req.no_cache_filter.join(","));
    }
    let locals = match &req.context {
        ContextSource::Dir(_) | ContextSource::Tar(_) => {
            vec!["context".to_string(), "dockerfile".to_string()]
        }
        // A remote context is fetched by the builder: no local sources.
        ContextSource::Git(_) | ContextSource::Url { .. } => vec![],
    };
    let summary = crate::plan::summary::summarize(plan);
    let mut secrets: Vec<Used> = vec![];
    for s in &summary.secrets {
        if !secrets.iter().any(|u| u.id == s.id) {
            secrets.push(Used {
                id: s.id.clone(),
                optional: !s.required,
            });
        }
    }
    let mut ssh: Vec<Used> = vec![];
    for s in &summary.ssh {
        if !ssh.iter().any(|u| u.id == s.id) {
            ssh.push(Used {
                id: s.id.clone(),
                optional: !s.required,
            });
        }
    }
    // In id order, as BuildKit's capture sorts them.
    secrets.sort_by(|a, b| a.id.cmp(&b.id));
    ssh.sort_by(|a, b| a.id.cmp(&b.id));
    let network = crate::plan::lowered(plan).any(|(_, l)| {
        l.steps
            .iter()
            .any(|s| matches!(&s.op, Op::Run(r) if r.network != Network::None))
    });
    provenance::Inputs {
        args,
        dockerfile: dockerfile.name.clone(),
        dockerfile_text: dockerfile.text.clone(),
        locals,
        git,
        secrets,
        ssh,
        materials: vec![],
        network,
        builder_platform: Platform::host().to_string(),
        invocation_id: provenance::invocation_id(),
        started_on,
        finished_on: String::new(),
    }
}

/// What one platform resolved: its base images (with their platforms) and downloads.
fn materials(b: &Built<'_, '_>, git: Option<&(String, String)>) -> Vec<Material> {
    let mut out: Vec<Material> = vec![];
    let mut push = |m: Material| {
        if !out.contains(&m) {
            out.push(m);
        }
    };
    for (platform, source) in b.solver.images_used() {
        if let Some(uri) = provenance::purl::image(&source.reference, Some(&platform), source.local)
        {
            push(Material::new(uri, &source.digest));
        }
    }
    if let Some((url, commit)) = git {
        push(Material::git(url, commit));
    }
    for (url, digest) in b.solver.downloads_used() {
        push(Material::new(url, &digest));
    }
    out
}

/// The attestation of each platform image (`images[i]` is `built[i]`'s), named by `names`.
pub(super) fn provenance(
    store: &Store,
    opts: &provenance::Options,
    request: &provenance::Inputs,
    built: &[Built<'_, '_>],
    images: &[Artifact],
    names: &[String],
) -> Result<Vec<Attestation>, Error> {
    let mut out = Vec::with_capacity(images.len());
    for (b, image) in built.iter().zip(images) {
        let mut inputs = request.clone();
        inputs.materials = materials(b, request.git.as_ref());
        inputs.finished_on = crate::image::oci::now();
        let subjects = provenance::subjects(names, &image.platform, &image.manifest_digest);
        let statement = provenance::statement(opts, subjects, &inputs);
        let manifest = attestation::manifest(
            store,
            image,
            &[(opts.predicate_type().to_string(), statement.clone())],
        )?;
        out.push(Attestation {
            manifest,
            statement,
        });
    }
    Ok(out)
}
