//! Writes the ImageBuild CustomResourceDefinition. `make crds` runs it.
//!
//! With no arguments it prints the YAML; with paths it writes each of them.

use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = kiln_crds::crd_yaml();
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        print!("{yaml}");
        return ExitCode::SUCCESS;
    }
    for path in paths {
        if let Err(e) = std::fs::write(&path, &yaml) {
            eprintln!("kiln-crdgen: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
