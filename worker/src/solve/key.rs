//! Cache keys of steps.
//!
//! A step's key is the key of the filesystem it starts from, the step's full definition after
//! expansion (environment, user, workdir, mounts and flags included), and the content digests of
//! what it reads from outside that filesystem: context files, other stages, images. Config-only
//! steps (ENV, LABEL, ...) leave the key as it is, so changing a LABEL reruns nothing; a later
//! RUN still sees an ENV change, because its environment is part of its definition.
//!
//! `COPY --link` is keyed without its parent: the layer it makes does not depend on what lies
//! below, so it is reused when the base changes. The steps after it are keyed on both.

use serde::Serialize;

use crate::digest::{Digest, KeyHasher};
use crate::image::oci::Platform;

const VERSION: &str = "kiln-step/v1";

/// The key of `FROM scratch`.
pub fn scratch(platform: &Platform) -> Digest {
    let mut h = KeyHasher::new(VERSION);
    h.str("scratch").str(&platform.to_string());
    h.finish()
}

/// The key of an image base, from its config digest (which names its layers).
pub fn image(config: &Digest) -> Digest {
    let mut h = KeyHasher::new(VERSION);
    h.str("image").str(config.as_str());
    h.finish()
}

/// The key of a step on `parent` (`None` for `--link`), with its definition and inputs.
pub fn step<T: Serialize>(
    parent: Option<&Digest>,
    kind: &str,
    definition: &T,
    inputs: &[Digest],
) -> Digest {
    let mut h = KeyHasher::new(VERSION);
    h.str(kind);
    h.str(parent.map_or("", Digest::as_str));
    h.field(&serde_json::to_vec(definition).expect("step definitions serialise"));
    for input in inputs {
        h.str(input.as_str());
    }
    h.finish()
}

/// The key of the filesystem after a `--link` layer (`link`) is put on `parent`.
pub fn rebase(parent: &Digest, link: &Digest) -> Digest {
    let mut h = KeyHasher::new(VERSION);
    h.str("rebase").str(parent.as_str()).str(link.as_str());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_parent_definition_and_inputs() {
        let p1 = Digest::of(b"p1");
        let p2 = Digest::of(b"p2");
        let i = Digest::of(b"input");
        let a = step(Some(&p1), "run", &vec!["sh", "-c", "make"], &[]);
        assert_eq!(a, step(Some(&p1), "run", &vec!["sh", "-c", "make"], &[]));
        assert_ne!(a, step(Some(&p2), "run", &vec!["sh", "-c", "make"], &[]));
        assert_ne!(
            a,
            step(Some(&p1), "run", &vec!["sh", "-c", "make all"], &[])
        );
        assert_ne!(
            a,
            step(
                Some(&p1),
                "run",
                &vec!["sh", "-c", "make"],
                std::slice::from_ref(&i)
            )
        );
        assert_ne!(a, step(Some(&p1), "copy", &vec!["sh", "-c", "make"], &[]));
        let link = step(None, "copy", &"x", &[i]);
        assert_ne!(rebase(&p1, &link), rebase(&p2, &link));
    }
}
