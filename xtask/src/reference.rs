//! The configuration reference, `docs/reference/<binary>.md`: a binary's `--help` and every
//! subcommand's, rendered from the binary itself so the pages cannot drift from the code.
//! `cargo xtask reference` writes the pages; each binary's crate has a test that calls
//! [`assert_current`] on its own executable, so CI fails when a page is out of date.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::facts::repo_dir;

/// The binaries with a reference page: (cargo package, executable name).
pub const BINARIES: &[(&str, &str)] =
    &[("api", "api"), ("seeder", "seeder"), ("loadgen", "loadgen"), ("xtask", "xtask")];

/// How a page is regenerated (named in the page and in a failing test's message).
pub const REGENERATE: &str = "cargo xtask reference";

/// The page of binary `name`.
pub fn page_path(name: &str) -> PathBuf {
    repo_dir().join("docs/reference").join(format!("{name}.md"))
}

/// `binary ARGS --help` in an empty environment: no variable of the caller's shell
/// (`DATABASE_URL`, `COLUMNS`, ...) may show up in the page or change its line width.
fn help_of(binary: &Path, args: &[String]) -> Result<String> {
    let output = Command::new(binary)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .with_context(|| format!("cannot run {} --help", binary.display()))?;
    if !output.status.success() {
        bail!("{} {} --help failed: {}", binary.display(), args.join(" "), String::from_utf8_lossy(&output.stderr));
    }
    String::from_utf8(output.stdout).context("--help is not UTF-8")
}

/// The subcommands a clap `--help` lists under `Commands:`, without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // A name starts its line after two spaces; wrapped descriptions are indented further.
        .filter_map(|line| line.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The reference page of `binary` shown as `name`: its `--help`, then each subcommand's (and
/// theirs, depth first), each in a text block under its own heading.
pub fn render(binary: &Path, name: &str) -> Result<String> {
    let mut page = format!(
        "# `{name}`: every option\n\nGenerated from `{name} --help` and each subcommand's; do not edit. \
         After changing an option, run `{REGENERATE}` (a test fails until the page is current).\n"
    );
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let help = help_of(binary, &path)?;
        let title = std::iter::once(name.to_owned()).chain(path.iter().cloned()).collect::<Vec<_>>().join(" ");
        let _ = write!(page, "\n## `{title}`\n\n```text\n{help}```\n");
        // Reversed onto the stack so the subcommands come out in their help's order.
        for sub in subcommands(&help).into_iter().rev() {
            let mut child = path.clone();
            child.push(sub);
            pending.push(child);
        }
    }
    Ok(page)
}

/// Writes the page of `binary` shown as `name`; returns whether it changed.
pub fn write(binary: &Path, name: &str) -> Result<bool> {
    let path = page_path(name);
    let fresh = render(binary, name)?;
    if std::fs::read_to_string(&path).ok().as_deref() == Some(fresh.as_str()) {
        return Ok(false);
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&path, fresh).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// Builds the debug binaries and writes every page of [`BINARIES`], saying which changed.
pub fn write_all() -> Result<()> {
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build.current_dir(repo_dir()).args(["build", "--quiet"]);
    for (package, _) in BINARIES {
        build.args(["--package", package]);
    }
    if !build.status().context("cannot run cargo build")?.success() {
        bail!("cargo build of the binaries failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_dir().join("target"), PathBuf::from);
    for (_, name) in BINARIES {
        let changed = write(&target.join("debug").join(name), name)?;
        println!("{}: {}", page_path(name).display(), if changed { "written" } else { "current" });
    }
    Ok(())
}

/// For a test: panics, naming the first differing line and [`REGENERATE`], unless the committed
/// page of `binary` (shown as `name`) is what the binary's help gives now.
pub fn assert_current(binary: &Path, name: &str) {
    let path = page_path(name);
    let fresh = render(binary, name).unwrap_or_else(|error| panic!("{error:#}"));
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed.lines().zip(fresh.lines()).take_while(|(a, b)| a == b).count() + 1;
        panic!("{} is out of date with `{name} --help` from line {line}: run `{REGENERATE}`", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::subcommands;

    #[test]
    fn subcommands_are_read_from_the_commands_section_only() {
        let help = "About.\n\nUsage: x <COMMAND>\n\nCommands:\n  load     Load it\n  import   Publish a file: check,\n           then load\n  help     Print help\n\nOptions:\n  -h, --help  Print help\n";
        assert_eq!(subcommands(help), ["load", "import"]);
        assert!(subcommands("Usage: x [OPTIONS]\n\nOptions:\n  -h, --help\n").is_empty());
    }
}
