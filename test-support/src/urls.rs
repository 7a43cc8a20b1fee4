//! URL rewriting for the stores' connection URLs (`scheme://[user[:password]@]host:port[/db][?query]`):
//! a test points a client at a proxy, another database or a wrong password.

use std::net::SocketAddr;

/// Where a URL's `host:port` starts and ends (after any credentials, before any path or query).
fn authority_span(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    (start, end)
}

/// The server address of a URL; panics unless its host is a numeric IP (the stack's are).
pub fn server_addr(url: &str) -> SocketAddr {
    let (start, end) = authority_span(url);
    url[start..end].parse().expect("the URL has a numeric host:port")
}

/// `url` pointing at `addr` instead, credentials, database and query kept.
pub fn with_addr(url: &str, addr: SocketAddr) -> String {
    let (start, end) = authority_span(url);
    format!("{}{addr}{}", &url[..start], &url[end..])
}

/// `url` with its database (path) replaced by `database`, query kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (_, end) = authority_span(url);
    let query = url[end..].find('?').map_or("", |q| &url[end + q..]);
    format!("{}/{database}{query}", &url[..end])
}

/// `url` with its password replaced (it must carry a user).
pub fn with_password(url: &str, password: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (start, _) = authority_span(url);
    assert!(start > scheme_end, "the URL carries credentials: {url}");
    let userinfo = &url[scheme_end..start - 1];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    with_credentials(url, user, password)
}

/// `url` logging in as `user` with `password`, replacing any credentials it had.
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (start, _) = authority_span(url);
    format!("{}{user}:{password}@{}", &url[..scheme_end], &url[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: &str = "postgres://results:secret@127.0.0.1:55432/results?sslmode=disable";

    #[test]
    fn the_server_address_is_found_behind_credentials_and_before_the_path() {
        assert_eq!(server_addr(PG), "127.0.0.1:55432".parse().expect("addr"));
        assert_eq!(server_addr("redis://127.0.0.1:56379"), "127.0.0.1:56379".parse().expect("addr"));
    }

    #[test]
    fn rewriting_one_part_keeps_every_other() {
        let proxy = "127.0.0.1:4000".parse().expect("addr");
        assert_eq!(with_addr(PG, proxy), "postgres://results:secret@127.0.0.1:4000/results?sslmode=disable");
        assert_eq!(
            with_database(PG, "seedtest_x"),
            "postgres://results:secret@127.0.0.1:55432/seedtest_x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "d"), "postgres://u@h:1/d");
        assert_eq!(with_password(PG, "wrong"), "postgres://results:wrong@127.0.0.1:55432/results?sslmode=disable");
        assert_eq!(with_credentials("redis://127.0.0.1:6379", "ro-x", "pw"), "redis://ro-x:pw@127.0.0.1:6379");
    }
}
