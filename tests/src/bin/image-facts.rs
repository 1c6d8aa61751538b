//! `image-facts`: print the canonical facts of an image (see `kiln_tests::facts`).
//!
//! ```text
//! image-facts [--skip-base N | --base BASE-IMAGE] [--ref NAME] [--drop-config KEY]... [--drop-history-comments]
//!             [-o OUT.json] IMAGE
//! ```
//!
//! IMAGE is a docker-archive tarball (`docker save`) or an OCI image layout, as a directory or
//! a tar. The reference corpus's `record.sh` runs it on BuildKit's images; the engine's tests
//! run the same code on Kiln's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use kiln_tests::facts::{Options, base_history_len, facts, read_image};

#[derive(Parser)]
#[command(
    name = "image-facts",
    about = "Print the canonical facts of an image as JSON"
)]
struct Args {
    /// A docker-archive tarball, or an OCI image layout (directory or tar).
    image: PathBuf,
    /// Leave out the first N history entries and the layers they made (the base image's).
    #[arg(long, default_value_t = 0, conflicts_with = "base")]
    skip_base: usize,
    /// Leave out the history and layers that IMAGE shares with this base image (read the same
    /// way as IMAGE); nothing when IMAGE was not built on it.
    #[arg(long)]
    base: Option<PathBuf>,
    /// The image to read when the archive holds several: a repo tag or an OCI ref name.
    #[arg(long = "ref")]
    reference: Option<String>,
    /// Leave this member out of the `config` object (repeatable), for builders that write
    /// something random there, such as buildah's `Hostname`.
    #[arg(long = "drop-config", value_name = "KEY")]
    drop_config: Vec<String>,
    /// Leave out the `comment` of every history entry (buildah writes its parent's random id).
    #[arg(long)]
    drop_history_comments: bool,
    /// Write the JSON here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let image = read_image(&args.image, args.reference.as_deref())
        .with_context(|| format!("reading the image at {}", args.image.display()))?;
    let skip_base = match &args.base {
        Some(base) => {
            let base = read_image(base, None)
                .with_context(|| format!("reading the base image at {}", base.display()))?;
            base_history_len(&image, &base)
        }
        None => args.skip_base,
    };
    let opts = Options {
        skip_base,
        reference: args.reference,
    };
    let mut facts = facts(&image, &opts)?;
    if let Some(config) = facts.config.as_object_mut() {
        for key in &args.drop_config {
            config.remove(key);
        }
    }
    if args.drop_history_comments {
        for h in &mut facts.history {
            h.comment = None;
        }
    }
    let text = facts.to_json_string();
    match args.output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}
