//! Helpers to run the real seeder binary and read what it says; the stores themselves come from
//! the workspace's `test-support` crate.

use std::process::Output;

use test_support::TestStores;

/// The real seeder binary run against a test's stores (only this crate's tests can name it).
pub trait RunSeeder {
    /// Runs the seeder binary against these stores with `args` and a clean environment.
    async fn seeder(&self, args: &[&str]) -> Output;

    /// The seeder command against these stores, not yet started.
    fn seeder_command(&self, args: &[&str]) -> tokio::process::Command;
}

impl RunSeeder for TestStores {
    async fn seeder(&self, args: &[&str]) -> Output {
        self.seeder_command(args).output().await.expect("run the seeder binary")
    }

    fn seeder_command(&self, args: &[&str]) -> tokio::process::Command {
        seeder_command(&self.stores.database_url, &self.stores.redis_url, self.stores.layout.prefix(), args)
    }
}

/// The seeder binary with a clean environment (nothing from the developer's shell leaks in).
pub fn seeder_command(database_url: &str, redis_url: &str, prefix: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_seeder"));
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("SEEDER_KEY_PREFIX", prefix)
        .env("SEEDER_PROGRESS", "lines")
        .args(args)
        .kill_on_drop(true);
    command
}

/// Starts `command` and kills it (SIGKILL) as soon as its stderr shows `line`; returns stderr so
/// far. Fails the test if the line never comes or the command finished on its own.
pub async fn kill_when(mut command: tokio::process::Command, line: &str) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the seeder");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut seen = String::new();
    let reading = async {
        while let Some(l) = lines.next_line().await.expect("read stderr") {
            seen.push_str(&l);
            seen.push('\n');
            if l.contains(line) {
                return true;
            }
        }
        false
    };
    let found = tokio::time::timeout(std::time::Duration::from_secs(180), reading).await;
    child.start_kill().expect("SIGKILL the seeder");
    let status = child.wait().await.expect("reap");
    assert!(matches!(found, Ok(true)), "never saw {line:?}; stderr:\n{seen}");
    assert!(!status.success(), "the seeder was killed, not finished");
    seen
}

/// Starts `command` with standard input, output and error piped.
pub fn spawn_piped(mut command: tokio::process::Command) -> tokio::process::Child {
    use std::process::Stdio;
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the seeder")
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the seeder failed with exactly one `error:` line naming `expected`, and no panic.
pub fn assert_one_clear_error(output: &Output, expected: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "exit status; stderr:\n{err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line; stderr:\n{err}");
    assert!(error_lines[0].contains(expected), "error line {:?} should mention {expected:?}", error_lines[0]);
    assert!(!err.contains("panicked"), "no panic; stderr:\n{err}");
}
