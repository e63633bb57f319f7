//! `moralsweep sim --help` says which spec field selects the replayed file
//! (a rehearsal's first question: which of my files answers which model).

#[test]
fn sim_help_names_the_spec_field_that_selects_the_replayed_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moralsweep"))
        .args(["sim", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "The spec's `model` field selects the file",
        "gpt-4o_temp<TT>.csv",
        "not its `key`",
        "provider-default",
    ] {
        assert!(help.contains(want), "{want:?} missing in:\n{help}");
    }
}
