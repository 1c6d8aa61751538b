//! `image-facts`: print the canonical facts of an image (see `kiln_tests::facts`).
//!
//! ```text
//! image-facts [--skip-base N | --base BASE-IMAGE] [--ref NAME] [-o OUT.json] IMAGE
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
    let text = facts(&image, &opts)?.to_json_string();
    match args.output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}
