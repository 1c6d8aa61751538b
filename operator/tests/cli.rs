//! The `kiln-operator` binary's entry point.

use assert_cmd::Command;

#[test]
fn help_works() {
    let out = Command::cargo_bin("kiln-operator")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("--worker-image")
    );
}
