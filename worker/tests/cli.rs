//! The `kiln` binary's entry points.

use assert_cmd::Command;

#[test]
fn help_lists_the_engine_commands() {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["build", "plan", "prune", "du"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help lacks {cmd}:\n{help}"
        );
    }
}

#[test]
fn unknown_command_fails() {
    Command::cargo_bin("kiln")
        .unwrap()
        .arg("frobnicate")
        .assert()
        .failure();
}

#[test]
fn unimplemented_commands_say_so_and_fail() {
    for cmd in ["prune", "du"] {
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .arg(cmd)
            .arg(".")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "kiln {cmd}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not implemented yet"));
    }
}
