//! The maps a newcomer reads first stay true: the README's layout map against the tree, each
//! crate's module map (the `//!` list at the top of its lib.rs) against its `mod` lines, and every
//! relative link of the README and `docs/` against the files and headings it points at.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    xtask::facts::repo_dir()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The code block under the README's `## Layout` heading, one entry per line: the paths before the
/// first run of two spaces.
fn layout_map_paths(readme: &str) -> Vec<String> {
    let section = readme.split("\n## Layout\n").nth(1).expect("README has a `## Layout` section");
    let block = section.split("```").nth(1).expect("the layout map is a code block");
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .flat_map(|line| {
            let names = line.split("  ").next().unwrap_or_default();
            names.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// The top-level entries git tracks (folders with a trailing `/`), so ignored ones (`target/`,
/// `runs/`, `.stack/`) never count.
fn tracked_top_level() -> BTreeSet<String> {
    let output = Command::new("git").args(["ls-files"]).current_dir(repo()).output().expect("git runs");
    assert!(output.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|path| match path.split_once('/') {
            Some((folder, _)) => format!("{folder}/"),
            None => path.to_owned(),
        })
        .collect()
}

#[test]
fn every_path_of_the_readme_layout_map_exists() {
    let paths = layout_map_paths(&read(&repo().join("README.md")));
    assert!(paths.len() > 10, "the layout map lists the tree: {paths:?}");
    let missing: Vec<_> = paths.iter().filter(|path| !repo().join(path).exists()).collect();
    assert!(missing.is_empty(), "README's layout map names paths that do not exist: {missing:?}");
}

#[test]
fn every_tracked_top_level_folder_is_in_the_readme_layout_map() {
    let listed: BTreeSet<String> = layout_map_paths(&read(&repo().join("README.md")))
        .into_iter()
        .map(|path| match path.split_once('/') {
            Some((folder, _)) => format!("{folder}/"),
            None => path,
        })
        .collect();
    let unlisted: Vec<_> = tracked_top_level()
        .into_iter()
        .filter(|entry| entry.ends_with('/') && !entry.starts_with('.') && !listed.contains(entry))
        .collect();
    assert!(unlisted.is_empty(), "top-level folders missing from README's layout map: {unlisted:?}");
}

/// `(modules declared in lib.rs, modules its //! map names)` of one crate.
fn module_map(crate_dir: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let lib = read(&crate_dir.join("src/lib.rs"));
    let declared = lib
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    let mapped = lib
        .lines()
        .take_while(|line| line.starts_with("//!"))
        // `- [`name`]:` links a public module; a private one is named without the link (rustdoc
        // cannot link it).
        .filter_map(|line| line.strip_prefix("//! - [`").or_else(|| line.strip_prefix("//! - `")))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .collect();
    (declared, mapped)
}

#[test]
fn every_crate_module_map_names_exactly_its_modules() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo()).expect("the repository is readable").flatten() {
        let dir = entry.path();
        if !dir.join("Cargo.toml").exists() || !dir.join("src/lib.rs").exists() || dir.ends_with("fuzz") {
            continue;
        }
        let (declared, mapped) = module_map(&dir);
        assert_eq!(declared, mapped, "{}: the modules of src/lib.rs (left) and its //! map (right)", dir.display());
        checked += 1;
    }
    assert!(checked >= 4, "found the workspace's crates ({checked})");
}

/// The GitHub anchor of a heading: lower case, punctuation dropped, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The relative link targets of a Markdown page: `](target)` and `src="target"`.
fn links(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (open, close) in [("](", ')'), ("src=\"", '"')] {
        for piece in markdown.split(open).skip(1) {
            if let Some((target, _)) = piece.split_once(close)
                && !target.contains("://")
                && !target.starts_with("mailto:")
            {
                found.push(target.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_relative_link_of_the_readme_and_docs_resolves() {
    let mut pages = vec![repo().join("README.md")];
    for folder in ["docs", "docs/reference"] {
        for entry in std::fs::read_dir(repo().join(folder)).expect("docs/ exists").flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "md") {
                pages.push(entry.path());
            }
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page);
        for link in links(&text) {
            let (path, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() { page.clone() } else { page.parent().unwrap_or(page).join(path) };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", page.display()));
            } else if !fragment.is_empty()
                && target.extension().is_some_and(|ext| ext == "md")
                && !anchors(&read(&target)).contains(fragment)
            {
                broken.push(format!("{}: {link} (no such heading)", page.display()));
            }
        }
    }
    assert!(pages.len() > 5, "README and the docs pages: {pages:?}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_fits_a_screen_or_three() {
    let bytes = read(&repo().join("README.md")).len();
    assert!(bytes <= 10 * 1024, "README.md is {bytes} bytes; the budget is 10 KB (move detail into docs/)");
}

#[test]
fn the_readme_ports_are_the_stacks_defaults() {
    let readme = read(&repo().join("README.md"));
    let section = readme.split("\n## Ports").nth(1).and_then(|s| s.split("\n## ").next()).expect("a Ports section");
    let numbers: BTreeSet<&str> =
        section.split(|c: char| !c.is_ascii_digit()).filter(|n| (4..=5).contains(&n.len())).collect();
    let ports: Vec<_> = xtask::facts::VARIABLES.iter().filter(|v| v.name.ends_with("_PORT")).collect();
    assert!(ports.len() >= 10, "the stack's port variables: {}", ports.len());
    let missing: Vec<_> =
        ports.iter().filter(|v| !numbers.contains(v.default)).map(|v| format!("{}={}", v.name, v.default)).collect();
    assert!(missing.is_empty(), "README's ports table lacks these defaults of xtask/src/facts.rs: {missing:?}");
}

/// The CI check of unused dependencies (cargo-machete's, without installing it in every run):
/// docs/dependencies.md says how to read a failure.
#[test]
fn every_declared_dependency_is_used() {
    let unused = xtask::deps::unused(&repo()).expect("the dependency check runs");
    let lines: Vec<String> = unused.iter().map(ToString::to_string).collect();
    assert!(
        lines.is_empty(),
        "remove them, or list them under [package.metadata.cargo-machete]:\n{}",
        lines.join("\n")
    );
}

#[test]
fn the_dependency_check_finds_what_a_crate_or_the_workspace_never_uses() {
    let root = tempfile::tempdir().expect("a temporary folder");
    let write = |path: &str, text: &str| {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "Cargo.toml",
        "[workspace]\nresolver = \"3\"\nmembers = [\"a\"]\n\n[workspace.dependencies]\nserde = \"1\"\nrand = \"0.9\"\nhttp-body-util = \"0.1\"\n",
    );
    write(
        "a/Cargo.toml",
        "[package]\nname = \"a\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\nserde.workspace = true\n\
         rand = { workspace = true }\ntokio = \"1\"\nserde-json = { package = \"serde_json\", version = \"1\" }\n\n\
         [dev-dependencies]\nregex = \"1\"\ntempfile = \"3\"\n\n[package.metadata.cargo-machete]\nignored = [\"rand\"]\n",
    );
    write("a/src/lib.rs", "//! A.\nuse serde::Serialize;\npub fn f() { serde_json::json!(1); }\n");
    // tokio is used by a test only: a normal dependency must be used by the crate itself.
    write("a/tests/t.rs", "#[test]\nfn t() { let _ = tempfile::tempdir(); tokio::spawn(async {}); }\n");
    let found: Vec<String> = xtask::deps::unused(root.path()).expect("runs").iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        [
            "a: [dev-dependencies] regex is never used",
            "a: [dependencies] tokio is never used",
            "workspace: [workspace.dependencies] http-body-util is never used",
        ],
        "rand is ignored by metadata, serde-json is used under its Rust name"
    );
}
