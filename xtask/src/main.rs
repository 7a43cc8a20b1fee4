//! `cargo xtask`: see the library's module map (xtask/src/lib.rs).

fn main() -> std::process::ExitCode {
    xtask::cli::main()
}
