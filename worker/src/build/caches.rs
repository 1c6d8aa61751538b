//! The build cache's transfers: `--cache-from` imports before the solve, `--cache-to` exports
//! after it.

use super::*;

/// Read the `--cache-from` caches. One that does not exist yet is skipped with a note, as
/// BuildKit does: the first build of a branch has no cache to import.
pub(super) fn import_caches(
    req: &Request,
    registries: &Registries,
    store: &Store,
    progress: &dyn Sink,
) -> Result<Vec<std::sync::Arc<Imported>>, Error> {
    let mut out = Vec::new();
    for spec in &req.cache_from {
        let imported = match spec {
            CacheSpec::Local { dir, tag, .. } => transfer::import_local(dir, tag)
                .map_err(|e| Error::CacheImport(format!("--cache-from {}: {e}", dir.display())))?,
            CacheSpec::Registry { reference, .. } => {
                match crate::cache::registry::import(
                    registries,
                    reference,
                    store,
                    &Platform::host(),
                ) {
                    Ok(i) => i,
                    // As in BuildKit, a cache that cannot be read costs its hits, not the
                    // build; the reason is shown.
                    Err(e) => {
                        progress.event(Event::Info {
                            message: format!("warning: --cache-from {reference}: {e}"),
                        });
                        continue;
                    }
                }
            }
            CacheSpec::Inline => None,
        };
        match imported {
            Some(i) => {
                progress.event(Event::Info {
                    message: format!(
                        "importing cache from {}: {} records",
                        i.source.describe(),
                        i.records.len()
                    ),
                });
                out.push(std::sync::Arc::new(i));
            }
            None => progress.event(Event::Info {
                message: format!("no cache to import from {}", describe_cache(spec)),
            }),
        }
    }
    Ok(out)
}

pub(super) fn describe_cache(spec: &CacheSpec) -> String {
    match spec {
        CacheSpec::Local { dir, tag, .. } => format!("{}:{tag}", dir.display()),
        CacheSpec::Registry { reference, .. } => reference.clone(),
        CacheSpec::Inline => "the image (inline)".into(),
    }
}

/// Write the step cache (of every platform) to a `--cache-to` destination.
pub(super) fn export_cache(
    built: &[Built<'_, '_>],
    store: &Store,
    spec: &CacheSpec,
    progress: &dyn Sink,
) -> Result<(), Error> {
    let records = cache_records(&built.iter().collect::<Vec<_>>(), spec.mode())?;
    let solver = built[0].solver;
    let n = records.len();
    match spec {
        CacheSpec::Local { dir, tag, .. } => {
            let blobs: Vec<_> = records.iter().filter_map(|r| r.layer.clone()).collect();
            solver.fetch_missing_blobs(&blobs)?;
            let artifact = transfer::cache_artifact(store, records)?;
            transfer::export_local(store, &artifact, dir, tag).map_err(|e| Error::Output {
                path: dir.clone(),
                source: e.into(),
            })?;
        }
        CacheSpec::Registry { reference, .. } => {
            let blobs: Vec<_> = records.iter().filter_map(|r| r.layer.clone()).collect();
            let artifact = Export::Image(Box::new(transfer::cache_artifact(store, records)?));
            let names = [reference.clone()];
            output::fetch_for_push(solver, &blobs, &artifact, &names)
                .map_err(cache_error(reference))?;
            crate::registry::push::push(&solver.opts().registry, store, &artifact, &names)
                .map_err(|e| cache_error(reference)(Error::Push(e)))?;
        }
        // Already in the image config.
        CacheSpec::Inline => {}
    }
    progress.event(Event::Info {
        message: format!("exported {n} cache records to {}", describe_cache(spec)),
    });
    Ok(())
}

/// The records of the step results a cache export carries, over the platforms built (a step
/// they share, once).
pub(super) fn cache_records(
    built: &[&Built<'_, '_>],
    mode: transfer::Mode,
) -> Result<Vec<CacheRecord>, Error> {
    let mut records: Vec<CacheRecord> = vec![];
    let mut seen = HashSet::new();
    for b in built {
        let solver = b.solver;
        for id in solver.cache_ids(&b.result, mode) {
            if !seen.insert(id.clone()) {
                continue;
            }
            let empty = solver.is_empty(&id);
            let layer = if empty {
                None
            } else {
                Some(solver.layer(&id)?)
            };
            records.push(CacheRecord {
                aliases: solver.aliases_of(&id),
                key: id,
                empty,
                layer,
            });
        }
    }
    Ok(records)
}

pub(super) fn cache_error(reference: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| Error::CacheExport {
        reference: reference.to_string(),
        source: Box::new(e),
    }
}
