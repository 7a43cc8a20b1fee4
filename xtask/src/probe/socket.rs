//! The probes' socket work: one raw request, many idle connections, many slow ones. Callers
//! check the target is loopback and the counts and times bounded (`wire`) before calling.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use super::wire::{self, Answer, SlowStats};

/// Connect (and request-head write) timeout: the targets are on loopback.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a `slowloris` wait for the server lasts (it also wakes for the deadline and headers due).
const TICK: Duration = Duration::from_millis(200);
/// `raw-http` always targets this host: the hostile test's edge.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    Ok(s)
}

/// A timeout of `secs` for a socket (std refuses a zero one).
fn timeout(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.max(0.001))
}

/// Sends `raw` to 127.0.0.1:`port` and reads until the first line ends, the server closes, or a
/// read waits `wait_secs`: the answer and the seconds it took, as one line. An error only when
/// the connection cannot be made.
pub fn send(port: u16, wait_secs: f64, raw: &[u8]) -> io::Result<String> {
    let start = Instant::now();
    let mut s = connect(SocketAddr::new(LOOPBACK, port))?;
    if s.write_all(raw).is_err() {
        // The server closed (or reset) while the request was still going out.
        return Ok(Answer::Closed.line(start.elapsed().as_secs_f64()));
    }
    s.set_read_timeout(Some(timeout(wait_secs)))?;
    let mut data = Vec::new();
    let mut buf = [0; 4096];
    while !data.windows(2).any(|w| w == b"\r\n") && data.len() < wire::MAX_ANSWER {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(Answer::Timeout.line(start.elapsed().as_secs_f64()));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break, // a reset reads as a close
        }
    }
    Ok(Answer::of(&data).line(start.elapsed().as_secs_f64()))
}

/// Opens `count` connections to 127.0.0.1:`port` that send nothing and waits, `wait_secs` in
/// all, for the server to close them, in the order opened: how many it closed and the seconds
/// until the last one, as one line.
pub fn idle(port: u16, count: usize, wait_secs: f64) -> io::Result<String> {
    let start = Instant::now();
    let addr = SocketAddr::new(LOOPBACK, port);
    let socks = (0..count).map(|_| connect(addr)).collect::<io::Result<Vec<_>>>()?;
    let (mut closed, mut last) = (0, 0.0);
    let mut byte = [0; 1];
    for mut s in socks.iter() {
        let remaining = wait_secs - start.elapsed().as_secs_f64();
        if remaining <= 0.0 {
            break;
        }
        s.set_read_timeout(Some(timeout(remaining)))?;
        match s.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => continue, // it answered instead of closing: not counted
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => {} // a reset is a close
        }
        closed += 1;
        last = start.elapsed().as_secs_f64();
    }
    Ok(wire::idle_line(closed, last))
}

/// One slow connection.
struct Slow {
    sock: TcpStream,
    born: Instant,
    next_header: Instant,
}

/// What a `slowloris` run does; bounds checked by the caller.
#[derive(Debug, Clone)]
pub struct SlowPlan {
    /// The loopback target.
    pub addr: SocketAddr,
    /// Connections held at once.
    pub connections: usize,
    /// Pause between two header lines of a connection.
    pub interval: Duration,
    /// How long the run lasts.
    pub duration: Duration,
    /// The request's path.
    pub path: String,
}

/// Holds `plan.connections` slow connections for `plan.duration`, replacing those the server
/// cuts (at most `ATTEMPTS_PER_CONNECTION` x connections attempts in all), then closes them all.
pub fn slowloris(plan: &SlowPlan) -> io::Result<SlowStats> {
    let start = Instant::now();
    let deadline = start + plan.duration;
    let head = wire::slow_request_head(&plan.path);
    let mut budget = wire::ATTEMPTS_PER_CONNECTION * plan.connections;
    let mut stats = SlowStats::default();
    let mut open: Vec<Slow> = Vec::with_capacity(plan.connections);

    let mut open_one = |open: &mut Vec<Slow>, stats: &mut SlowStats| {
        if budget == 0 || Instant::now() >= deadline {
            return;
        }
        budget -= 1;
        let opened = connect(plan.addr).and_then(|mut sock| {
            sock.write_all(head.as_bytes())?;
            sock.set_nonblocking(true)?;
            Ok(sock)
        });
        match opened {
            Ok(sock) => {
                stats.opened += 1;
                let now = Instant::now();
                open.push(Slow { sock, born: now, next_header: now + plan.interval });
            }
            Err(_) => stats.errors += 1,
        }
    };
    for _ in 0..plan.connections {
        open_one(&mut open, &mut stats);
    }

    let mut buf = [0; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        // Wake for the deadline, the next header due, or a tick, whichever comes first.
        let now = Instant::now();
        let next_header = open.iter().map(|c| c.next_header.saturating_duration_since(now)).min().unwrap_or(TICK);
        let wait = left.min(TICK).min(next_header);
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd<'_>> = open.iter().map(|c| PollFd::new(&c.sock, PollFlags::IN)).collect();
            let ts = Timespec { tv_sec: 0, tv_nsec: i64::from(wait.subsec_nanos()) };
            match poll(&mut fds, Some(&ts)) {
                Ok(_) => fds.iter().enumerate().filter(|(_, fd)| !fd.revents().is_empty()).map(|(i, _)| i).collect(),
                Err(rustix::io::Errno::INTR) => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        };
        // Highest index first, so swap_remove leaves the lower indices in place.
        for &i in ready.iter().rev() {
            let first = match open[i].sock.read(&mut buf) {
                Ok(n) => &buf[..n],
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue, // woken for nothing
                Err(_) => &[][..],                                       // a reset is a cut
            };
            stats.record_cut(first, open[i].born.elapsed().as_secs_f64());
            // Dropping the connection closes it.
            open.swap_remove(i);
        }
        for _ in &ready {
            if open.len() < plan.connections {
                open_one(&mut open, &mut stats);
            }
        }
        let now = Instant::now();
        for c in open.iter_mut().filter(|c| now >= c.next_header) {
            c.next_header = now + plan.interval;
            // A failed write means the server closed it: the next poll reports that.
            let _ = c.sock.write(wire::SLOW_HEADER);
        }
    }

    stats.held_at_end = open.len() as u64;
    stats.oldest_held_s = open.iter().map(|c| c.born.elapsed().as_secs_f64()).fold(0.0, f64::max);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A listener on a free loopback port; `serve` runs on each of the first `n` connections.
    fn server(n: usize, serve: impl Fn(TcpStream) + Send + 'static) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        thread::spawn(move || {
            for s in listener.incoming().take(n).flatten() {
                serve(s);
            }
        });
        port
    }

    fn read_head(s: &mut TcpStream) -> Vec<u8> {
        let mut head = Vec::new();
        let mut byte = [0; 1];
        while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut byte), Ok(1)) {
            head.push(byte[0]);
        }
        head
    }

    #[test]
    fn send_reports_the_status_a_close_or_a_timeout() {
        let port = server(1, |mut s| {
            let head = read_head(&mut s);
            let reply: &[u8] = if head.starts_with(b"BREW ") { b"HTTP/1.1 405 Not Allowed\r\n\r\n" } else { b"?" };
            let _ = s.write_all(reply);
        });
        let line = send(port, 2.0, b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n").expect("connects");
        assert!(line.starts_with("405\t"), "{line}");

        let port = server(1, drop);
        let line = send(port, 2.0, b"GET /\r\n").expect("connects");
        assert!(line.starts_with("closed\t"), "{line}");

        let port = server(1, |s| {
            thread::sleep(Duration::from_secs(2));
            drop(s);
        });
        let line = send(port, 0.2, b"GET / HTTP/1.1\r\nHost: x\r\n").expect("connects");
        assert!(line.starts_with("timeout\t0.2"), "{line}");
    }

    #[test]
    fn idle_counts_the_connections_the_server_closes() {
        let port = server(3, |s| {
            thread::sleep(Duration::from_millis(100));
            drop(s);
        });
        let line = idle(port, 3, 5.0).expect("connects");
        assert!(line.starts_with("3\t0."), "{line}");
    }

    #[test]
    fn slowloris_counts_cuts_and_replaces_them_within_its_budget() {
        // Every connection answered 408 once its first slow header arrives: all are cut.
        let port = server(usize::MAX, |mut s| {
            thread::spawn(move || {
                let mut buf = [0; 256];
                let mut seen = Vec::new();
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(wire::SLOW_HEADER.len()).any(|w| w == wire::SLOW_HEADER) {
                        let _ = s.write_all(b"HTTP/1.1 408 Request Time-out\r\n\r\n");
                        return;
                    }
                }
            });
        });
        let plan = SlowPlan {
            addr: SocketAddr::new(LOOPBACK, port),
            connections: 2,
            interval: Duration::from_millis(50),
            duration: Duration::from_secs(2),
            path: "/v1/results/1".into(),
        };
        let stats = slowloris(&plan).expect("runs");
        let attempts = (wire::ATTEMPTS_PER_CONNECTION * plan.connections) as u64;
        assert_eq!(stats.opened + stats.errors, attempts, "{stats:?}");
        assert!(stats.cut_by_server >= attempts - 2, "{stats:?}");
        assert_eq!(stats.answered.get("408").copied(), Some(stats.cut_by_server), "{stats:?}");
        assert!(stats.longest_s < 1.0, "{stats:?}");
    }

    #[test]
    fn slowloris_holds_what_the_server_holds() {
        let port = server(3, |s| {
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(3));
                drop(s);
            });
        });
        let plan = SlowPlan {
            addr: SocketAddr::new(LOOPBACK, port),
            connections: 3,
            interval: Duration::from_millis(100),
            duration: Duration::from_millis(500),
            path: "/".into(),
        };
        let stats = slowloris(&plan).expect("runs");
        assert_eq!((stats.opened, stats.cut_by_server, stats.held_at_end, stats.errors), (3, 0, 3, 0), "{stats:?}");
        assert!(stats.oldest_held_s >= 0.5 && stats.oldest_held_s < 1.5, "{stats:?}");
    }
}
