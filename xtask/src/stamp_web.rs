//! `cargo xtask stamp-web [--check]`: sets the `?v=` of each asset in web/index.html to the first
//! 12 hex digits of the file's SHA-256. NGINX lets browsers (and any CDN in front) keep the assets
//! for a year (immutable), so a changed file must get a new URL to be fetched at all. There is no
//! build step: the stamped index.html is committed, and scripts/tests/page_test.sh runs
//! `stamp-web --check`, which fails while a stamp is stale.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use regex::Regex;
use sha2::{Digest, Sha256};

/// The stamped assets, in web/.
pub const ASSETS: &[&str] = &["app.js", "style.css"];

/// How many hex digits of the SHA-256 a stamp keeps.
const STAMP_DIGITS: usize = 12;

/// The stamp of an asset's content: the first 12 hex digits of its SHA-256.
pub fn stamp(content: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(content) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex.truncate(STAMP_DIGITS);
    hex
}

/// The `?v=` stamp(s) index.html has for `asset` (`"/app.js?v=…"`, quotes included), and the
/// page with every one of them set to `want`. An error when the page has no such reference.
pub fn restamp(html: &str, asset: &str, want: &str) -> Result<(Vec<String>, String)> {
    let pattern = Regex::new(&format!(r#""/{}\?v=([0-9a-f]*)""#, regex::escape(asset)))?;
    let have: Vec<String> = pattern.captures_iter(html).map(|c| c[1].to_owned()).collect();
    if have.is_empty() {
        bail!("no /{asset}?v=… reference in web/index.html");
    }
    let page = pattern.replace_all(html, format!(r#""/{asset}?v={want}""#).as_str()).into_owned();
    Ok((have, page))
}

/// Stamps the repository's web/index.html (or checks it); exit status 1 on an error or, with
/// `check`, a stale stamp.
pub fn main(check: bool) -> ExitCode {
    match run(&crate::facts::repo_dir(), check) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stamp-web: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Stamps web/ of the repository at `repo`, or with `check` only reports; `Ok(false)` when
/// `check` found a stale stamp.
pub fn run(repo: &Path, check: bool) -> Result<bool> {
    let index = repo.join("web/index.html");
    let mut html = std::fs::read_to_string(&index).with_context(|| format!("cannot read {}", index.display()))?;
    let mut stale = false;
    for asset in ASSETS {
        let path = repo.join("web").join(asset);
        let want = stamp(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?);
        let (have, page) = restamp(&html, asset, &want)?;
        if have.iter().all(|h| *h == want) {
            continue;
        }
        stale = true;
        if check {
            eprintln!(
                "stamp-web: web/index.html asks for /{asset}?v={}, the file is v={want} (run cargo xtask stamp-web)",
                have.join(",")
            );
        } else {
            html = page;
            eprintln!("stamp-web: /{asset}?v={want}");
        }
    }
    if stale && !check {
        std::fs::write(&index, &html).with_context(|| format!("cannot write {}", index.display()))?;
    }
    Ok(!(check && stale))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<link rel=\"stylesheet\" href=\"/style.css?v=20c9cd7261c6\">\n\
                        <script src=\"/app.js?v=0123456789ab\" defer></script>\n";

    #[test]
    fn the_stamp_is_the_sha256_prefix() {
        // sha256("") = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
        assert_eq!(stamp(b""), "e3b0c44298fc");
        assert_eq!(stamp(b"abc"), "ba7816bf8f01");
    }

    #[test]
    fn restamping_changes_only_that_assets_reference() {
        let (have, page) = restamp(PAGE, "app.js", "ffffffffffff").expect("referenced");
        assert_eq!(have, ["0123456789ab"]);
        assert_eq!(page, PAGE.replace("/app.js?v=0123456789ab", "/app.js?v=ffffffffffff"));
        assert!(page.contains("/style.css?v=20c9cd7261c6"));
    }

    #[test]
    fn a_dot_in_the_name_is_literal_and_a_missing_reference_an_error() {
        // "style.css" must not match "stylexcss", and the reference needs its quotes.
        let e = restamp("\"/stylexcss?v=1\" /style.css?v=2", "style.css", "3").expect_err("no quoted reference");
        assert!(e.to_string().contains("no /style.css?v=…"), "{e}");
    }

    #[test]
    fn stamping_a_folder_rewrites_stale_stamps_and_check_reports_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("web")).expect("web/");
        std::fs::write(dir.path().join("web/app.js"), "abc").expect("app.js");
        std::fs::write(dir.path().join("web/style.css"), "").expect("style.css");
        std::fs::write(dir.path().join("web/index.html"), PAGE).expect("index.html");
        assert!(!run(dir.path(), true).expect("check runs"), "stale stamps fail --check");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("web/index.html")).expect("read"),
            PAGE,
            "--check writes nothing"
        );
        assert!(run(dir.path(), false).expect("stamps"));
        let page = std::fs::read_to_string(dir.path().join("web/index.html")).expect("read");
        assert!(
            page.contains("\"/app.js?v=ba7816bf8f01\"") && page.contains("\"/style.css?v=e3b0c44298fc\""),
            "{page}"
        );
        assert!(run(dir.path(), true).expect("check runs"), "current stamps pass --check");
    }
}
