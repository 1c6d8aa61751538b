//! Writes the ImageBuild CustomResourceDefinition. `make crds` runs it.
//!
//! `kiln-crdgen [PATH...] [--chart-template PATH]`: with no arguments it prints the YAML; each
//! PATH gets the CRD, and `--chart-template` the Helm template of it (`crds/src/chart.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut writes: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--chart-template" {
            let Some(path) = args.next() else {
                eprintln!("kiln-crdgen: --chart-template needs a path");
                return ExitCode::FAILURE;
            };
            writes.push((path, kiln_crds::chart::crd_template()));
        } else {
            writes.push((arg, kiln_crds::crd_yaml()));
        }
    }
    if writes.is_empty() {
        print!("{}", kiln_crds::crd_yaml());
        return ExitCode::SUCCESS;
    }
    for (path, text) in writes {
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("kiln-crdgen: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
