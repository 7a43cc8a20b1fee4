//! The probes' pure parts: which hosts they may target, the bytes they send, how an answer is
//! classified, and the lines they print. No sockets here, so all of it is unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Most connections `slowloris` holds at once.
pub const MAX_CONNECTIONS: i64 = 2000;
/// Longest `slowloris` run, and longest wait of `raw-http`, in seconds.
pub const MAX_SECONDS: f64 = 600.0;
/// Longest pause between two header lines of a slow connection, in seconds.
pub const MAX_INTERVAL: f64 = 60.0;
/// Connection attempts `slowloris` may make in all, per connection asked for: a server that
/// cuts every connection at once cannot make it reconnect without end.
pub const ATTEMPTS_PER_CONNECTION: usize = 20;
/// Most connections `raw-http idle` opens.
pub const MAX_IDLE: i64 = 1000;
/// `raw-http send` reads at most this much while looking for the status line.
pub const MAX_ANSWER: usize = 65536;
/// What a slow connection sends every interval: a header line, never the blank line that ends
/// the head, so the server has to keep waiting for the rest.
pub const SLOW_HEADER: &[u8] = b"X-Slow: 1\r\n";

/// `host` is a loopback address (an IP literal: a name could resolve anywhere). These tools
/// only ever attack our own stack.
pub fn is_loopback(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A value of seconds within (0, `max`], for clap.
pub fn seconds_up_to(value: &str, max: f64) -> Result<f64, String> {
    let secs: f64 = value.parse().map_err(|_| format!("'{value}' is not a number of seconds"))?;
    if secs > 0.0 && secs <= max { Ok(secs) } else { Err(format!("must be in (0, {max}] seconds")) }
}

/// The start of a slow connection's request: the request line and one header, no blank line.
pub fn slow_request_head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: drill\r\n")
}

/// Decodes the escapes of a hostile row (Python's bytes escapes, so rows stay printable):
/// `\r \n \t \0 \\ \' \" \a \b \f \v`, `\xHH`, octal `\ooo`, a backslash-newline dropped; any
/// other backslash is kept as it is. Leading and trailing newlines are stripped first (a row
/// read from a file or a here-string ends with one that is not part of the request).
pub fn unescape(input: &[u8]) -> Result<Vec<u8>, String> {
    let start = input.iter().position(|&b| b != b'\n').unwrap_or(input.len());
    let end = input.iter().rposition(|&b| b != b'\n').map_or(start, |i| i + 1);
    let input = &input[start..end];
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = input.get(i) else { return Err("a trailing backslash".into()) };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let hex = input.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(byte) = byte else { return Err(format!("an invalid \\x escape at byte {}", i - 2)) };
                out.push(byte);
                i += 2;
            }
            b'0'..=b'7' => {
                // Up to three octal digits; like Python, a value over 255 keeps its low byte.
                let mut value = u32::from(e - b'0');
                for _ in 0..2 {
                    match input.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value.to_le_bytes()[0]);
            }
            other => out.extend_from_slice(&[b'\\', other]),
        }
    }
    Ok(out)
}

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP/1.x status line: its code as sent (e.g. `400`).
    Status(String),
    /// The server closed (or reset) without a byte.
    Closed,
    /// Nothing complete came within the timeout.
    Timeout,
    /// Bytes without an HTTP/1.x status line (e.g. an HTTP/0.9 body).
    NoLine,
}

impl Answer {
    /// Classifies the bytes read before the server closed or a line ended.
    pub fn of(data: &[u8]) -> Answer {
        if data.is_empty() {
            return Answer::Closed;
        }
        match status_code(data) {
            Some(code) => Answer::Status(code),
            None => Answer::NoLine,
        }
    }

    /// The line `raw-http send` prints: the answer, a tab, the seconds until it (3 decimals).
    pub fn line(&self, secs: f64) -> String {
        let word = match self {
            Answer::Status(code) => code.as_str(),
            Answer::Closed => "closed",
            Answer::Timeout => "timeout",
            Answer::NoLine => "noline",
        };
        format!("{word}\t{secs:.3}")
    }
}

/// The status code of an `HTTP/1.x CODE ...` status line at the start of `data`.
pub fn status_code(data: &[u8]) -> Option<String> {
    if !data.starts_with(b"HTTP/1.") {
        return None;
    }
    let code = data.split(|&b| b == b' ').nth(1)?;
    Some(String::from_utf8_lossy(code).into_owned())
}

/// The line `raw-http idle` prints: connections the server closed, a tab, the seconds until
/// the last of them closed.
pub fn idle_line(closed: usize, last_secs: f64) -> String {
    format!("{closed}\t{last_secs:.3}")
}

/// What a `slowloris` run saw; printed as one JSON line with the keys (and order) the drill reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlowStats {
    /// Connections opened (request head sent).
    pub opened: u64,
    /// Connections the server closed or answered.
    pub cut_by_server: u64,
    /// The status codes of those answered, and how many of each.
    pub answered: BTreeMap<String, u64>,
    /// The longest a connection lived before the server cut it, seconds.
    pub longest_s: f64,
    /// Connections still open when the run ended.
    pub held_at_end: u64,
    /// Connects refused or reset, or the request head not sent.
    pub errors: u64,
    /// The age of the oldest connection still open at the end, seconds.
    pub oldest_held_s: f64,
}

impl SlowStats {
    /// The server cut a connection after `lived_secs`; `first` is what it sent, if anything.
    pub fn record_cut(&mut self, first: &[u8], lived_secs: f64) {
        if let Some(code) = status_code(first) {
            *self.answered.entry(code).or_default() += 1;
        }
        self.cut_by_server += 1;
        self.longest_s = self.longest_s.max(lived_secs);
    }

    /// One JSON line, as the Python tool printed it (`{"opened": 100, ...}`), seconds to 3 decimals.
    pub fn to_json(&self) -> String {
        let mut answered = String::from("{");
        for (i, (code, n)) in self.answered.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(answered, "{sep}{}: {n}", serde_json::Value::from(code.as_str()));
        }
        answered.push('}');
        format!(
            "{{\"opened\": {}, \"cut_by_server\": {}, \"answered\": {answered}, \"longest_s\": {}, \
             \"held_at_end\": {}, \"errors\": {}, \"oldest_held_s\": {}}}",
            self.opened,
            self.cut_by_server,
            seconds_json(self.longest_s),
            self.held_at_end,
            self.errors,
            seconds_json(self.oldest_held_s)
        )
    }
}

/// Seconds rounded to milliseconds as a JSON number that always reads as a float (`5.0`, not `5`).
fn seconds_json(secs: f64) -> String {
    let rounded = (secs * 1000.0).round() / 1000.0;
    serde_json::Number::from_f64(rounded).map_or_else(|| "0.0".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_literals_are_targets() {
        for ok in ["127.0.0.1", "127.1.2.3", "::1"] {
            assert!(is_loopback(ok), "{ok}");
        }
        for refused in ["localhost", "10.0.0.1", "0.0.0.0", "example.org", "128.0.0.1", ""] {
            assert!(!is_loopback(refused), "{refused}");
        }
    }

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds_up_to("2.5", 60.0), Ok(2.5));
        assert_eq!(seconds_up_to("600", MAX_SECONDS), Ok(600.0));
        for bad in ["0", "-1", "601", "NaN", "inf", "two"] {
            assert!(seconds_up_to(bad, MAX_SECONDS).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_unescape_as_python_bytes_escapes() {
        let decoded = unescape(br"G\x01T / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n").expect("valid");
        assert_eq!(decoded, b"G\x01T / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n");
        assert_eq!(unescape(br"100\x0000").expect("valid"), b"100\x0000");
        assert_eq!(unescape(br"\d9\xd9\xa1").expect("valid"), b"\\d9\xd9\xa1");
        assert_eq!(unescape(b"\na\\\\b\\'\\\"\\t\\0\\101\\777\n\n").expect("valid"), b"a\\b'\"\t\0A\xff");
        assert_eq!(unescape(b"a\\\nb").expect("valid"), b"ab");
        // Raw bytes (UTF-8 in a row) pass through untouched.
        assert_eq!(unescape("/\u{661}".as_bytes()).expect("valid"), "/\u{661}".as_bytes());
        assert!(unescape(br"\x4").is_err());
        assert!(unescape(br"\xzz").is_err());
        assert!(unescape(b"a\\").is_err());
    }

    #[test]
    fn answers_are_classified_and_printed() {
        assert_eq!(Answer::of(b"HTTP/1.1 400 Bad Request\r\n"), Answer::Status("400".into()));
        assert_eq!(Answer::of(b"HTTP/1.0 505 x"), Answer::Status("505".into()));
        assert_eq!(Answer::of(b""), Answer::Closed);
        assert_eq!(Answer::of(b"{\"student\": 1}"), Answer::NoLine);
        assert_eq!(Answer::of(b"HTTP/2 200\r\n"), Answer::NoLine);
        assert_eq!(Answer::of(b"HTTP/1.1"), Answer::NoLine);
        assert_eq!(Answer::Status("414".into()).line(0.0123), "414\t0.012");
        assert_eq!(Answer::Closed.line(1.0), "closed\t1.000");
        assert_eq!(Answer::Timeout.line(4.0006), "timeout\t4.001");
        assert_eq!(Answer::NoLine.line(0.2), "noline\t0.200");
        assert_eq!(idle_line(200, 5.0014), "200\t5.001");
    }

    #[test]
    fn slow_connections_send_an_unfinished_head() {
        let head = slow_request_head("/v1/results/1000000");
        assert_eq!(head, "GET /v1/results/1000000 HTTP/1.1\r\nHost: drill\r\n");
        assert!(!head.contains("\r\n\r\n"));
        assert!(!String::from_utf8_lossy(SLOW_HEADER).contains("\r\n\r\n"));
    }

    #[test]
    fn stats_print_as_the_drill_reads_them() {
        let mut stats = SlowStats { opened: 100, held_at_end: 50, oldest_held_s: 3.0, ..SlowStats::default() };
        assert_eq!(
            stats.to_json(),
            r#"{"opened": 100, "cut_by_server": 0, "answered": {}, "longest_s": 0.0, "held_at_end": 50, "errors": 0, "oldest_held_s": 3.0}"#
        );
        stats.record_cut(b"", 5.00412);
        stats.record_cut(b"HTTP/1.1 408 Request Time-out\r\n", 4.5);
        stats.record_cut(b"HTTP/1.1 408 Request Time-out\r\n", 1.0);
        stats.record_cut(b"HTTP/1.1 400 Bad Request\r\n", 2.0);
        let json = stats.to_json();
        assert!(json.contains(r#""cut_by_server": 4, "answered": {"400": 1, "408": 2}, "longest_s": 5.004"#), "{json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["answered"]["408"], 2);
        assert_eq!(parsed["oldest_held_s"], 3.0);
    }
}
