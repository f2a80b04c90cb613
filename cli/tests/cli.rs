//! CLI behaviour pinned by snapshots: help text, error messages and exit codes (`tests/cmd/*.toml`;
//! a case's `*.in/` directory is its working directory). Refresh with `TRYCMD=overwrite cargo test -p envelope --test cli`.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
