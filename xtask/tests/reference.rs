//! docs/reference/xtask.md is what `cargo xtask --help` says now (api, seeder and loadgen check
//! their own pages the same way).

#[test]
fn the_reference_page_is_current() {
    xtask::reference::assert_current(std::path::Path::new(env!("CARGO_BIN_EXE_xtask")), "xtask");
}
