//! Unused dependencies, found the way cargo-machete finds them, without installing a tool in
//! every CI run: a dependency a crate declares but whose name its sources never use, and a
//! `[workspace.dependencies]` entry no crate inherits. `xtask/tests/docs.rs` fails on either.
//!
//! A crate's declared dependencies come from `cargo metadata --no-deps` (no resolution, no
//! network). A normal or build dependency counts as used when `src/` or `build.rs` names it
//! (`name::`, `use name`, `extern crate name`); a dev-dependency when any `.rs` file of the crate
//! does (its tests, benches, examples or `#[cfg(test)]` modules). A dependency declared only for
//! what it does to another crate's features, not for its own API, is listed with the reason in
//! the crate's `[package.metadata.cargo-machete] ignored = [...]`, which cargo-machete reads too.
//! Like cargo-machete, a name that only appears in a comment still counts as used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// One dependency declared and never used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unused {
    /// The crate declaring it (`workspace` for `[workspace.dependencies]`).
    pub krate: String,
    /// The dependency's name as its Cargo.toml writes it.
    pub dependency: String,
    /// `dependencies`, `dev-dependencies`, `build-dependencies` or `workspace.dependencies`.
    pub section: &'static str,
}

impl std::fmt::Display for Unused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: [{}] {} is never used", self.krate, self.section, self.dependency)
    }
}

/// `cargo xtask unused-deps`: prints each unused dependency; exit status 1 when there is one.
pub fn main(root: Option<&Path>) -> std::process::ExitCode {
    let root = root.map_or_else(crate::facts::repo_dir, Path::to_path_buf);
    match unused(&root) {
        Ok(found) if found.is_empty() => {
            println!("unused-deps: every declared dependency is used");
            std::process::ExitCode::SUCCESS
        }
        Ok(found) => {
            for unused in found {
                println!("{unused}");
            }
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unused-deps: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The unused dependencies of the workspace whose root Cargo.toml is in `root`.
///
/// # Errors
/// `cargo metadata` failing or a source file that cannot be read.
pub fn unused(root: &Path) -> anyhow::Result<Vec<Unused>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root)
        .output()
        .context("run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout).context("cargo metadata's JSON")?;
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        found.extend(unused_in_package(package)?);
    }
    found.extend(unused_in_workspace(root)?);
    found.sort();
    Ok(found)
}

fn unused_in_package(package: &Value) -> anyhow::Result<Vec<Unused>> {
    let name = package["name"].as_str().unwrap_or_default().to_owned();
    let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
    let dir = manifest.parent().context("a manifest path has a folder")?;
    let ignored: BTreeSet<&str> = package["metadata"]["cargo-machete"]["ignored"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut main_sources = rust_files(&dir.join("src"))?;
    if dir.join("build.rs").is_file() {
        main_sources.push(dir.join("build.rs"));
    }
    let main_text = read_all(&main_sources)?;
    let all_text = read_all(&rust_files(dir)?)?;
    let mut found = Vec::new();
    for dependency in package["dependencies"].as_array().into_iter().flatten() {
        let declared = dependency["rename"].as_str().or(dependency["name"].as_str()).unwrap_or_default();
        let section = match dependency["kind"].as_str() {
            Some("dev") => "dev-dependencies",
            Some("build") => "build-dependencies",
            _ => "dependencies",
        };
        let text = if section == "dev-dependencies" { &all_text } else { &main_text };
        if !ignored.contains(declared) && !names(text, &declared.replace('-', "_")) {
            found.push(Unused { krate: name.clone(), dependency: declared.to_owned(), section });
        }
    }
    Ok(found)
}

/// `[workspace.dependencies]` entries that no member's Cargo.toml inherits (`name.workspace` or
/// `name = { workspace = true ... }`).
fn unused_in_workspace(root: &Path) -> anyhow::Result<Vec<Unused>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).context("read the root Cargo.toml")?;
    let Some(section) = manifest.split("\n[workspace.dependencies]\n").nth(1) else { return Ok(Vec::new()) };
    let section = section.split("\n[").next().unwrap_or_default();
    let members = members(&manifest);
    let mut inherited = String::new();
    for member in &members {
        inherited.push_str(&std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap_or_default());
    }
    let mut found = Vec::new();
    for line in section.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((key, _)) = line.split_once('=') else { continue };
        let key = key.trim();
        let used = inherited.lines().map(str::trim).any(|l| {
            l.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with(".workspace") || (rest.starts_with('=') && rest.contains("workspace = true"))
            })
        });
        if !used {
            found.push(Unused {
                krate: "workspace".to_owned(),
                dependency: key.to_owned(),
                section: "workspace.dependencies",
            });
        }
    }
    Ok(found)
}

/// The folders of `members = [...]` in the root Cargo.toml.
fn members(manifest: &str) -> Vec<String> {
    let Some(list) = manifest.split("members = [").nth(1) else { return Vec::new() };
    let list = list.split(']').next().unwrap_or_default();
    list.split(',').map(|m| m.trim().trim_matches('"').to_owned()).filter(|m| !m.is_empty()).collect()
}

/// Whether `text` uses the crate named `ident` (the name as Rust code writes it).
fn names(text: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(ident).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + ident.len()..];
        if before.is_some_and(is_ident) || after.starts_with(is_ident) {
            return false;
        }
        let preceding = text[..at].trim_end();
        after.starts_with("::")
            || preceding.ends_with("use")
            || preceding.ends_with("extern crate")
            || preceding.ends_with("pub use")
    })
}

/// Every `.rs` file under `dir`, skipping `target/` folders.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries {
            let path = entry.with_context(|| format!("list {}", folder.display()))?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    Ok(files)
}

fn read_all(files: &[PathBuf]) -> anyhow::Result<String> {
    let mut text = String::new();
    for file in files {
        text.push_str(&std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_is_named_by_a_path_a_use_or_an_extern_crate_only() {
        assert!(names("let x = serde_json::to_string(&y);", "serde_json"));
        assert!(names("use serde;", "serde"));
        assert!(names("pub use thiserror ;", "thiserror"));
        assert!(names("extern crate tokio;", "tokio"));
        assert!(!names("let serde = 1; serde_json::x();", "serde"), "a local named like the crate");
        assert!(!names("my_rand::x()", "rand"));
        assert!(!names("rand_core::x()", "rand"));
        assert!(!names("", "rand"));
    }

    #[test]
    fn members_are_read_from_the_root_manifest() {
        let manifest = "[workspace]\nmembers = [\"a\", \"b-c\"]\nexclude = [\"fuzz\"]\n";
        assert_eq!(members(manifest), ["a", "b-c"]);
    }
}
