//! What the deployment tests share: the repository's files, YAML read as JSON values, a collector
//! of checks that reports every failure at once, the binaries' `--help`, and the external tools
//! (installed with apt when missing, as `cargo xtask install` does).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The repository these tests were built from.
pub fn repo() -> PathBuf {
    xtask::facts::repo_dir()
}

/// A repository file as text (`rel` from the repository's root); panics when it cannot be read.
pub fn read(rel: impl AsRef<Path>) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A repository file's bytes, None when it cannot be read.
pub fn bytes(rel: impl AsRef<Path>) -> Option<Vec<u8>> {
    std::fs::read(repo().join(rel)).ok()
}

/// Every document of a YAML stream as a JSON value, empty documents dropped. Aliases are resolved
/// (by yaml-rust2) and merge keys (`<<: *anchor`, YAML 1.1, which compose files use) applied, so a
/// compose service reads as compose sees it.
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().map(to_json).filter(|d| !d.is_null()).collect())
}

/// The first document of a YAML text (Null when there is none); panics on invalid YAML.
pub fn yaml(text: &str, what: &str) -> Value {
    yaml_docs(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}")).into_iter().next().unwrap_or_default()
}

fn to_json(y: Yaml) -> Value {
    match y {
        Yaml::Real(s) => {
            s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::String(s), Value::Number)
        }
        Yaml::Integer(i) => i.into(),
        Yaml::String(s) => s.into(),
        Yaml::Boolean(b) => b.into(),
        Yaml::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            let mut merged = Vec::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                if key == "<<" {
                    merged.push(v);
                } else {
                    map.insert(key, to_json(v));
                }
            }
            // A mapping's own keys win over merged ones, and earlier merged mappings over later.
            for source in merged {
                let sources = match source {
                    Yaml::Array(list) => list,
                    one => vec![one],
                };
                for source in sources {
                    if let Value::Object(fields) = to_json(source) {
                        for (k, v) in fields {
                            map.entry(k).or_insert(v);
                        }
                    }
                }
            }
            Value::Object(map)
        }
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

/// A scalar as the text a user wrote (strings unquoted, numbers and booleans as written; empty
/// for null, arrays and objects).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A sequence's items (none when `v` is no sequence).
pub fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A mapping's fields (none when `v` is no mapping).
pub fn fields(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flatten()
}

/// The port at the end of an address (`0.0.0.0:8081`, `http://x:9090`), None without one.
pub fn port_of(addr: &str) -> Option<u16> {
    let (_, port) = addr.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

/// A compose value with every `${NAME:-default}` replaced by its default: the file as compose
/// reads it when none of its variables is set.
pub fn compose_default(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.bytes().take_while(|b| b.is_ascii_uppercase() || *b == b'_').count();
        match (after[name_len..].strip_prefix(":-"), after.find('}')) {
            (Some(default), Some(close)) if name_len > 0 && close > name_len => {
                let default = &default[..close - name_len - 2];
                out.push_str(default);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The environment variables a `--help` text names (clap's `[env: NAME=...]`).
pub fn help_env(help: &str) -> BTreeSet<String> {
    help.split("[env:")
        .skip(1)
        .filter_map(|after| {
            let name: String = after
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            name.starts_with(|c: char| c.is_ascii_uppercase()).then_some(name)
        })
        .collect()
}

/// Whether crate `krate` reads variable `var` outside clap: the quoted name appears in one of
/// its sources (the log filters, read by `EnvFilter::try_from_env`).
pub fn read_in_sources(krate: &str, var: &str) -> bool {
    fn walk(dir: &Path, needle: &str) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, needle)
            } else {
                path.extension().is_some_and(|e| e == "rs")
                    && std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle))
            }
        })
    }
    walk(&repo().join(krate).join("src"), &format!("\"{var}\""))
}

/// Kubernetes CPU quantity in cores (`250m`, `1`, `1.5`); 0 when unreadable.
pub fn cpu_cores(q: &Value) -> f64 {
    let q = text(q);
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map_or(0.0, |m| m / 1000.0),
        None => q.parse().unwrap_or(0.0),
    }
}

/// Checks of one test: each one counted, every failure kept, so a run reports all of them at once
/// (as the script tests did) instead of stopping at the first.
pub struct Checks {
    name: &'static str,
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    /// A collector for the test `name`.
    pub fn new(name: &'static str) -> Checks {
        Checks { name, passed: 0, failed: Vec::new() }
    }

    /// Records one check; returns `ok`.
    pub fn check(&mut self, ok: bool, what: impl Display) -> bool {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(what.to_string());
        }
        ok
    }

    /// Something worth knowing that is not checked.
    pub fn note(&self, what: impl Display) {
        eprintln!("{}: note: {what}", self.name);
    }

    /// Adds another collector's results to this one.
    pub fn absorb(&mut self, other: Checks) {
        self.passed += other.passed;
        self.failed.extend(other.failed);
    }

    /// The failed checks' descriptions.
    pub fn failures(&self) -> &[String] {
        &self.failed
    }

    /// Panics listing every failed check; prints the count otherwise (`--nocapture` shows it).
    #[track_caller]
    pub fn assert_all(self) {
        eprintln!("{}: {} passed, {} failed", self.name, self.passed, self.failed.len());
        assert!(self.passed > 0, "{}: no check ran", self.name);
        assert!(self.failed.is_empty(), "{}: FAILED:\n  {}", self.name, self.failed.join("\n  "));
    }
}

/// Where cargo put this test binary's sibling binaries (target/debug, or under CARGO_TARGET_DIR).
fn target_debug() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/deploy-HASH -> target/debug
    exe.parent().and_then(Path::parent).expect("target/debug/deps/...").to_path_buf()
}

/// target/debug/`name` (api or seeder), built with `cargo build -p api -p seeder` when either is
/// missing. xtask does not depend on them (it must stay quick to build); `cargo test --workspace`
/// builds them anyway.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<()> = Mutex::new(());
    let _one_build = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = target_debug();
    if !dir.join("api").is_file() || !dir.join("seeder").is_file() {
        eprintln!("building {}/api and seeder for their --help", dir.display());
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "api", "-p", "seeder"])
            .current_dir(repo())
            .status()
            .expect("cargo runs")
            .success();
        assert!(ok, "cargo build -p api -p seeder failed");
    }
    dir.join(name)
}

/// `binary args... --help` (stdout), in an empty environment: clap prints a variable's value
/// when it is set, and the caller's shell must not change what is checked.
pub fn help(name: &str, args: &[&str]) -> String {
    let out = Command::new(binary(name)).args(args).arg("--help").env_clear().output().expect("the binary runs");
    assert!(out.status.success(), "{name} {args:?} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands a `--help` lists under `Commands:` (clap's layout), without `help`.
pub fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command starts at two spaces; its wrapped description is indented further.
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// `program`'s path, installing Debian's `package` first when it is missing (the way
/// `cargo xtask install` does it: apt-get without starting services; needs root).
pub fn tool(program: &str, package: &str) -> PathBuf {
    static APT: Mutex<()> = Mutex::new(());
    let _one_apt = APT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = xtask::supervise::find_program(program) {
        return path;
    }
    xtask::apt::install(&[package.to_owned()]).unwrap_or_else(|e| panic!("installing {package}: {e:#}"));
    xtask::supervise::find_program(program).unwrap_or_else(|| panic!("{package} installed no {program}"))
}

/// An optional tool: its path when installed (these checks do not install it just for this).
pub fn optional_tool(program: &str) -> Option<PathBuf> {
    xtask::supervise::find_program(program)
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", c.get_program()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
