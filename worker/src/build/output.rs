//! Writing a build's image: OCI layouts and tarballs, docker-archives, the final filesystem,
//! and the push to a registry.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::{Built, Error, Output, PushSummary, Request};
use crate::export;
use crate::image::layout::{self, Export};
use crate::progress::{Event, Sink};
use crate::registry::RegistryError;
use crate::snapshot::layer::LayerBlob;
use crate::store::Store;

pub(super) fn describe(output: &Output) -> String {
    match output {
        Output::Oci { dest, tar: true } => format!("an OCI layout tarball {}", dest.display()),
        Output::Oci { dest, tar: false } => format!("the OCI layout {}", dest.display()),
        Output::Docker { dest } => format!("the docker-archive {}", dest.display()),
        Output::Local { dest } => format!("the directory {}", dest.display()),
        Output::Image { names, .. } if names.is_empty() => "the registry (the -t names)".into(),
        Output::Image { names, .. } => format!("the registry ({})", names.join(", ")),
    }
}

/// Refuse, before anything is built, an output that cannot hold what the build makes: a
/// docker-archive holds one image of one platform (`docker load` has no place for an index;
/// BuildKit's docker exporter refuses a multi-platform result the same way).
pub(super) fn check(req: &Request, platforms: usize) -> Result<(), Error> {
    if platforms < 2 {
        return Ok(());
    }
    for output in &req.outputs {
        if let Output::Docker { dest } = output {
            return Err(Error::Usage(format!(
                "--output type=docker,dest={}: a docker-archive holds the image of one platform, and this build makes {platforms} ({}); use --output type=oci (a layout or tarball that holds the index) or push to a registry, or build one --platform at a time",
                dest.display(),
                req.platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Write one output. `statements` are the platforms' provenance statements (none without
/// provenance): a local output gets them as `provenance.json`, as BuildKit's local exporter
/// writes attestations.
pub(super) fn write_output(
    built: &[Built<'_, '_>],
    statements: &[Vec<u8>],
    store: &Store,
    export: &Export,
    output: &Output,
    tags: &[String],
    progress: &dyn Sink,
) -> Result<(), Error> {
    let name = tags.first().map(String::as_str);
    let err = |dest: &Path, e: Box<dyn std::error::Error + Send + Sync>| Error::Output {
        path: dest.to_path_buf(),
        source: e,
    };
    match output {
        Output::Oci { dest, tar: false } => {
            layout::write_layout_dir(store, export, dest, name).map_err(|e| err(dest, e.into()))
        }
        Output::Oci { dest, tar: true } => write_tar(dest, |w| {
            layout::write_layout_tar(store, export, w, name).map(drop)
        }),
        Output::Docker { dest } => {
            // One platform (checked before the build); an attestation has no place in it.
            let image = &export.manifests()[0];
            if export.manifests().len() > 1 {
                progress.event(Event::Info {
                    message: format!(
                        "warning: {} holds the image only: a docker-archive has no place for its attestations",
                        dest.display()
                    ),
                });
            }
            write_tar(dest, |w| {
                layout::write_docker_archive(store, image, w, tags).map(drop)
            })
        }
        // One platform's filesystem goes in `dest`; several go in a directory each, named
        // `os_arch[_variant]`, as BuildKit's local exporter splits them.
        Output::Local { dest } if built.len() == 1 => {
            local(&built[0], statements.first(), dest, progress).map_err(|e| err(dest, e))
        }
        Output::Local { dest } => {
            for (i, b) in built.iter().enumerate() {
                let p = b.solver.target_platform();
                let mut dir = format!("{}_{}", p.os, p.architecture);
                if let Some(v) = &p.variant {
                    dir.push('_');
                    dir.push_str(v);
                }
                let dest = dest.join(dir);
                local(b, statements.get(i), &dest, progress).map_err(|e| err(&dest, e))?;
            }
            Ok(())
        }
        // Pushed after every other output is written, once for all names.
        Output::Image { .. } => Ok(()),
    }
}

fn local(
    b: &Built<'_, '_>,
    statement: Option<&Vec<u8>>,
    dest: &Path,
    progress: &dyn Sink,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    export::write_local(b.solver, &b.result, dest)?;
    if let Some(s) = statement {
        std::fs::write(dest.join("provenance.json"), s)?;
    }
    let notable = export::privileged_files(&b.result.view(b.solver));
    if !notable.is_empty() {
        progress.event(Event::Info {
            message: format!(
                "warning: {} holds files that grant privileges to whoever can reach them ({}); keep it where only you can: {}",
                dest.display(),
                "setuid/setgid files and device nodes",
                notable.join(", ")
            ),
        });
    }
    Ok(())
}

/// Write a tarball to a file (atomically) or to standard output (`-`).
fn write_tar(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), Error> {
    if dest.as_os_str() == "-" {
        let stdout = io::stdout();
        let mut lock = BufWriter::new(stdout.lock());
        write(&mut lock).map_err(|e| output_error(dest, e))?;
        return lock.flush().map_err(|e| output_error(dest, e));
    }
    let tmp = dest.with_extension("kiln-partial");
    let result = (|| {
        let mut file = BufWriter::new(File::create(&tmp)?);
        write(&mut file)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(output_error(dest, e));
    }
    Ok(())
}

fn output_error(dest: &Path, e: io::Error) -> Error {
    Error::Output {
        path: dest.to_path_buf(),
        source: e.into(),
    }
}

/// Before pushing `export`: download the blobs (among `blobs`, the layers of imported cache
/// hits) that the store lacks and that the target repositories cannot get by a mount or
/// already have.
pub(super) fn fetch_for_push(
    solver: &crate::solve::Solver<'_>,
    blobs: &[LayerBlob],
    export: &Export,
    names: &[String],
) -> Result<(), Error> {
    let store = solver.snapshots().store();
    let layers: Vec<_> = export
        .manifests()
        .iter()
        .flat_map(|m| m.manifest.layers.iter().cloned())
        .collect();
    let wanted = crate::registry::push::unavailable(&solver.opts().registry, store, names, &layers)
        .map_err(Error::Push)?;
    let fetch: Vec<_> = blobs
        .iter()
        .filter(|b| wanted.contains(&b.digest))
        .cloned()
        .collect();
    solver.fetch_missing_blobs(&fetch)?;
    Ok(())
}

/// The names to push to: those of the `type=image` outputs, or the tags for an output without
/// names; `None` when nothing is pushed.
pub(super) fn push_names(req: &Request) -> Option<Vec<String>> {
    let mut names: Vec<String> = vec![];
    let mut any = false;
    for output in &req.outputs {
        if let Output::Image {
            names: n,
            push: true,
        } = output
        {
            any = true;
            let n = if n.is_empty() { &req.tags } else { n };
            for name in n {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    any.then_some(names)
}

/// Push the image (or index), with a progress vertex per push.
pub(super) fn push(
    solver: &crate::solve::Solver<'_>,
    blobs: &[LayerBlob],
    export: &Export,
    names: &[String],
    progress: &dyn Sink,
    id: usize,
) -> Result<PushSummary, Error> {
    let (registries, store) = (&solver.opts().registry, solver.snapshots().store());
    if names.is_empty() {
        return Err(Error::Push(RegistryError::Reference {
            image: "(none)".into(),
            message: "pushing needs a name: pass -t NAME or --output type=image,name=NAME".into(),
        }));
    }
    progress.event(Event::Start {
        id,
        name: format!("pushing {}", names.join(", ")),
    });
    let started = std::time::Instant::now();
    let pushed = fetch_for_push(solver, blobs, export, names).and_then(|()| {
        crate::registry::push::push(registries, store, export, names).map_err(Error::Push)
    });
    match pushed {
        Ok(report) => {
            progress.event(Event::Info {
                message: format!(
                    "pushed {} blobs ({} bytes), mounted {}, {} already there",
                    report.uploaded, report.uploaded_bytes, report.mounted, report.existing
                ),
            });
            progress.event(Event::Done {
                id,
                seconds: started.elapsed().as_secs_f64(),
            });
            Ok(PushSummary {
                pushed: report
                    .names
                    .iter()
                    .map(|n| format!("{n}@{}", export.digest()))
                    .collect(),
                uploaded: report.uploaded,
                uploaded_bytes: report.uploaded_bytes,
                mounted: report.mounted,
                existing: report.existing,
            })
        }
        Err(e) => {
            progress.event(Event::Error {
                id,
                message: e.to_string(),
            });
            Err(e)
        }
    }
}
