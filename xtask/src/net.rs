//! Loopback network probes: is a port taken, a plain HTTP/1.0 request (health checks, the
//! Prometheus API), and a minimal Redis (RESP2) client. Enough for our own servers on
//! loopback, so the stack needs neither curl nor redis-cli for its checks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect and read/write timeout of every probe: our servers are on loopback.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Something accepts TCP connections on `host:port`.
pub fn port_in_use(host: &str, port: u16) -> bool {
    connect(host, port, PROBE_TIMEOUT).is_ok()
}

/// An HTTP response: status code, head and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `method path` on `host:port` over HTTP/1.0 (no chunked bodies, the server closes), with
/// `timeout` for connect and each read.
pub fn http(method: &str, host: &str, port: u16, path: &str, timeout: Duration) -> io::Result<Response> {
    let mut s = connect(host, port, timeout)?;
    let host_header = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {host_header}\r\nContent-Length: 0\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    Ok(Response { status, head: head.to_owned(), body: body.to_owned() })
}

/// GET `path`: Some(body) on a 2xx, None otherwise (or when nothing answers).
pub fn get_ok(host: &str, port: u16, path: &str) -> Option<String> {
    http("GET", host, port, path, PROBE_TIMEOUT).ok().filter(|r| (200..300).contains(&r.status)).map(|r| r.body)
}

/// GET `path`: the body whatever the status (a 503's /readyz JSON too), None when nothing answers.
pub fn get_any(host: &str, port: u16, path: &str) -> Option<String> {
    http("GET", host, port, path, PROBE_TIMEOUT).ok().map(|r| r.body)
}

/// A Redis reply (RESP2).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$n` bulk string (None: the null bulk).
    Bulk(Option<String>),
    /// `*n` array (None: the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: simple and bulk strings.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// Sends one command to the Redis on `host:port` and reads its reply.
pub fn redis(host: &str, port: u16, args: &[&str]) -> io::Result<Reply> {
    let mut s = connect(host, port, PROBE_TIMEOUT)?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    read_reply(&mut BufReader::new(s))
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad RESP line {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest.parse().map(Reply::Int).map_err(|_| bad()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let Ok(len) = usize::try_from(len) else { return Ok(Reply::Bulk(None)) };
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned())))
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let Ok(n) = usize::try_from(n) else { return Ok(Reply::Array(None)) };
            (0..n).map(|_| read_reply(r)).collect::<io::Result<Vec<_>>>().map(|v| Reply::Array(Some(v)))
        }
        _ => Err(bad()),
    }
}

/// The text reply of a command, None on an error reply or when nothing answers.
pub fn redis_text(host: &str, port: u16, args: &[&str]) -> Option<String> {
    redis(host, port, args).ok()?.text().map(str::to_owned)
}

/// Field `name` of an INFO-style `name:value` text (INFO, CLUSTER INFO).
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':').map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_replies_parse() {
        let mut input: &[u8] = b"*3\r\n$6\r\nmaster\r\n:42\r\n*-1\r\n";
        let reply = read_reply(&mut input).expect("valid RESP");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![Reply::Bulk(Some("master".into())), Reply::Int(42), Reply::Array(None)]))
        );
        let mut err: &[u8] = b"-ERR nope\r\n";
        assert_eq!(read_reply(&mut err).expect("valid"), Reply::Error("ERR nope".into()));
        let mut cut: &[u8] = b"$10\r\nshort\r\n";
        assert!(read_reply(&mut cut).is_err());
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let r =
            Response { status: 200, head: "HTTP/1.1 200 OK\r\nx-cache-status: HIT\r\n".into(), body: String::new() };
        assert_eq!(r.header("X-Cache-Status"), Some("HIT"));
        assert_eq!(r.header("Server"), None);
    }

    #[test]
    fn info_fields_are_found_by_whole_name() {
        let info = "# Server\r\nprocess_id:42\r\nprocess_supervised:no\r\n";
        assert_eq!(info_field(info, "process_id").as_deref(), Some("42"));
        assert_eq!(info_field(info, "process").as_deref(), None);
    }
}
