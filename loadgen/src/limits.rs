//! The open-file limit: every connection is a file descriptor, so thousands of users (with
//! `--client-per-user`, one pool each) need more than the usual soft limit of 1024.

/// Descriptors the process needs besides connections (logs, reports, the runtime).
const SPARE: u64 = 256;

/// Raises the soft open-file limit to the hard limit and says what to raise when that is still
/// below what `users` users may need (one connection each at worst). Returns the soft limit.
pub fn raise_open_files(users: usize) -> Option<u64> {
    let needed = users as u64 + SPARE;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            if limit < needed {
                eprintln!(
                    "loadgen: warning: the open-file limit is {limit}, below the {needed} that {users} users may \
                     need; raise the hard limit (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE= in a unit)"
                );
            }
            Some(limit)
        }
        Err(e) => {
            eprintln!("loadgen: warning: cannot raise the open-file limit: {e}");
            None
        }
    }
}
