//! Run folders: a fresh one per run, and what one holds.

use std::path::{Path, PathBuf};

/// A fresh run folder under `parent`: `<UTC time>`, or `<UTC time>-N` when taken.
pub fn fresh_run_dir(parent: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut dir = parent.join(&stamp);
    let mut n = 2;
    while dir.exists() {
        dir = parent.join(format!("{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// The file names in `dir`, sorted (hidden files left out).
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_run_dir_never_reuses_a_taken_one() {
        let parent = tempfile::tempdir().expect("tempdir");
        let first = fresh_run_dir(parent.path());
        std::fs::create_dir(&first).expect("mkdir");
        std::fs::write(first.join("b.txt"), "").expect("write");
        std::fs::write(first.join("a.txt"), "").expect("write");
        std::fs::write(first.join(".hidden"), "").expect("write");
        let second = fresh_run_dir(parent.path());
        assert_ne!(first, second);
        assert_eq!(list_files(&first), ["a.txt", "b.txt"]);
    }
}
