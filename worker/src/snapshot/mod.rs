//! Snapshots: one layer's changes as a directory, in overlayfs "upper" format, so that a stack
//! of them mounts directly as an overlay and each one converts directly into a layer tarball.
//!
//! - [`diff`]: snapshot directory → layer tarball (whiteouts, opaque dirs, hardlinks, xattrs).
//! - [`extract`]: layer tarball → snapshot directory, and archives for `ADD`, never escaping.
//! - [`view`]: what a stack of snapshots shows, read without mounting.
//! - [`compress`]: gzip and zstd, in parallel.

pub mod compress;
pub mod diff;
pub mod extract;
pub mod fallback;
pub mod layer;
pub mod view;
