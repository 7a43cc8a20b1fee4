//! Environment variables every program reads the same way: the shared names of facts two
//! programs must agree on, and the log filter's fallback to `RUST_LOG`.
//!
//! Precedence, everywhere: a command-line flag, then the program's own variable (`API_KEY_PREFIX`,
//! `SEEDER_STUDENTS`, `LOADGEN_STUDENTS`, ...), then the shared one below, then the built-in
//! default. So one `RESULTS_KEY_PREFIX` or `RESULTS_STUDENTS` in a shell serves the seeder, the
//! API and the load generator alike, and the programs' own names keep working.

/// The Redis key prefix the seeder writes and the API reads.
pub const SHARED_KEY_PREFIX: &str = "RESULTS_KEY_PREFIX";
/// Students in the data set the seeder loads and the load generator asks for.
pub const SHARED_STUDENTS: &str = "RESULTS_STUDENTS";
/// The variable of the log filter every Rust program falls back to.
pub const RUST_LOG: &str = "RUST_LOG";
/// The log filter when neither the program's variable nor `RUST_LOG` is set: sqlx logs server
/// notices ("relation already exists, skipping") at info, which are not news.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

/// The value of the shared variable `name` when set and not empty, else `default`: the default
/// of a program's own option (clap's `default_value`, which the option's value parser checks and
/// `--help` shows). Leaked: a few bytes once per command line built.
pub fn shared_or(name: &str, default: &str) -> &'static str {
    non_empty(std::env::var(name).ok()).unwrap_or_else(|| default.to_owned()).leak()
}

/// The log filter directives: the program's own variable `own` (`API_LOG`, `SEEDER_LOG`), else
/// `RUST_LOG`, else [`DEFAULT_LOG_FILTER`].
pub fn log_filter(own: &str) -> String {
    choose_log_filter(std::env::var(own).ok(), std::env::var(RUST_LOG).ok())
}

/// [`log_filter`] without the environment: the first of `own`, `rust_log` that is set and not
/// empty, else the default.
pub fn choose_log_filter(own: Option<String>, rust_log: Option<String>) -> String {
    non_empty(own).or_else(|| non_empty(rust_log)).unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_log_variable_wins_then_rust_log_then_the_default() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(choose_log_filter(some("debug"), some("trace")), "debug");
        assert_eq!(choose_log_filter(None, some("trace")), "trace");
        assert_eq!(choose_log_filter(some(" "), some("trace")), "trace", "an empty own variable is unset");
        assert_eq!(choose_log_filter(None, some("")), DEFAULT_LOG_FILTER);
        assert_eq!(choose_log_filter(None, None), DEFAULT_LOG_FILTER);
    }

    #[test]
    fn an_unset_shared_variable_gives_the_default() {
        assert_eq!(shared_or("RESULTS_CORE_TEST_NEVER_SET", "results"), "results");
        assert_eq!(shared_or("PATH", "none"), std::env::var("PATH").expect("PATH is set in tests"));
    }
}
