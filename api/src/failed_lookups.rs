//! Failed-lookup limits: how many lookups that found nothing (a 404: an unknown registration
//! number, or a wrong second factor) one client, and one registration number, may make in a
//! window. Past the limit the next lookup is refused with 429 before it is tried, so a correct
//! guess made after it is refused too.
//!
//! - **Per client** (`API_FAILED_LOOKUPS_PER_CLIENT` a minute): bounds how fast one address can
//!   probe for numbers or factors. The client is NGINX's `X-Real-IP` when the connection comes
//!   from a trusted proxy (`API_TRUSTED_PROXIES`), else the connection's own address; an IPv6
//!   client is its /64 (one subscriber's allocation: a harvester has billions of addresses in it).
//! - **Per registration number** (`API_FACTOR_TRIES_PER_NUMBER` an hour), only while the data set
//!   requires a second factor: bounds the guesses at one student's factor, from however many
//!   addresses they come. An unknown number is counted as a wrong factor is, so the 429 says
//!   nothing about which numbers exist.
//!
//! Why in the API and not NGINX: NGINX's `limit_req` counts a request before its answer is known,
//! so it cannot count only 404s, and an internal re-ask of every 404 (tried) still served the
//! next lookup — a correct guess included.
//!
//! Where the counts live: a counter per subject in Redis (`{prefix}:limits:…`, outside the near
//! cache's tracked keys), so every replica adds to one count; a refusal is decided from this
//! replica's memory, so an allowed lookup costs no I/O. A failed lookup costs one pipelined round
//! trip (`INCR`, `PEXPIRE … NX`, `PTTL`): when its count reaches the limit, this replica refuses
//! the subject until the window ends. Another replica learns it at its own next failure for that
//! subject, so a window admits at most the limit plus one failure per other replica, plus those
//! in flight when it is reached. Each replica also counts in memory, which alone bounds a
//! subject while Redis cannot count (fail-safe rather than open: the limit per replica).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ipnet::IpNet;
use results_core::{KeyLayout, StudentId};

use crate::stores::RedisTier;
use crate::telemetry::{FAILED_LOOKUP_REFUSALS, RateLimitedWarning};

/// The window of the per-client limit.
pub const CLIENT_WINDOW: Duration = Duration::from_secs(60);
/// The window of the per-number limit.
pub const NUMBER_WINDOW: Duration = Duration::from_secs(3_600);
/// Subjects one replica remembers per limit. Beyond it, expired entries are dropped; if none has
/// expired, a new subject is counted in Redis but not refused by this replica until room is
/// made: a flood of distinct addresses cannot grow the replica's memory without bound (~100
/// bytes an entry, ~10 MB at most per limit).
const MAX_SUBJECTS: usize = 100_000;
/// The header NGINX sets to the client's address.
const REAL_IP: &str = "x-real-ip";

/// Which limit refused a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Too many failed lookups from this client.
    Client,
    /// Too many failed tries at this registration number's second factor.
    Number,
}

impl Limit {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Number => "number",
        }
    }
}

/// A lookup refused before it was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Which limit.
    pub limit: Limit,
    /// How long until the window ends.
    pub retry_after: Duration,
}

/// The subject a limit counts: a client's address (an IPv6 one as its /64) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Client(IpAddr),
    Number(u32),
}

impl Subject {
    fn client(address: IpAddr) -> Self {
        Self::Client(match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
            },
            v4 => v4,
        })
    }

    fn key(&self, prefix: &str) -> String {
        match self {
            Self::Client(address) => format!("{prefix}:limits:client:{address}"),
            Self::Number(id) => format!("{prefix}:limits:number:{id}"),
        }
    }
}

/// One subject's count in this replica.
#[derive(Debug, Clone, Copy)]
struct Entry {
    window_end: Instant,
    failures: u32,
    /// Refused until then (the window's end as Redis or this replica counted it).
    refused_until: Option<Instant>,
}

/// One limit's counts in this replica.
struct Counts {
    limit: Limit,
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<Subject, Entry>>,
    /// When this replica's last refusal of any subject ends (milliseconds after `origin`, rounded
    /// up): until then `refusal` looks the subject up; after it, as nearly always, it answers
    /// without taking the lock every lookup would otherwise share.
    refusing_until_ms: AtomicU64,
    origin: Instant,
}

impl Counts {
    fn new(limit: Limit, max: u32, window: Duration) -> Option<Self> {
        (max > 0).then(|| Self {
            limit,
            max,
            window,
            entries: Mutex::new(HashMap::new()),
            refusing_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Refuses `entry`'s subject until `until`.
    fn refuse(&self, entry: &mut Entry, until: Instant) {
        entry.refused_until = Some(until);
        self.refusing_until_ms.fetch_max(self.millis(until).saturating_add(1), Ordering::Relaxed);
    }

    /// Whether any subject may be refused at `now` (an upper bound: no lock).
    fn refusing(&self, now: Instant) -> bool {
        self.millis(now) < self.refusing_until_ms.load(Ordering::Relaxed)
    }

    fn refusal(&self, subject: &Subject, now: Instant) -> Option<Refusal> {
        if !self.refusing(now) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let until = entries.get(subject)?.refused_until.filter(|until| *until > now)?;
        Some(Refusal { limit: self.limit, retry_after: until - now })
    }

    /// Counts one failure here; refuses the subject when this replica alone reached the limit.
    fn count_here(&self, subject: Subject, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_SUBJECTS && !entries.contains_key(&subject) {
            entries.retain(|_, e| e.window_end > now || e.refused_until.is_some_and(|u| u > now));
            if entries.len() >= MAX_SUBJECTS {
                return;
            }
        }
        let entry = entries.entry(subject).or_insert(Entry { window_end: now, failures: 0, refused_until: None });
        if entry.window_end <= now {
            *entry = Entry { window_end: now + self.window, failures: 0, refused_until: None };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.max {
            let until = entry.window_end;
            self.refuse(entry, until);
        }
    }

    /// Applies Redis's count: refuses the subject until Redis's window ends when every replica
    /// together reached the limit.
    fn apply_shared(&self, subject: Subject, failures: i64, remaining: Duration, now: Instant) {
        if failures < i64::from(self.max) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&subject) {
            self.refuse(entry, now + remaining);
        }
    }
}

/// The limits of one replica.
pub struct FailedLookups {
    client: Option<Counts>,
    number: Option<Counts>,
    trusted_proxies: Vec<IpNet>,
    redis: RedisTier,
    prefix: String,
    redis_warning: RateLimitedWarning,
}

impl FailedLookups {
    /// Limits of `per_client` failures a minute and `per_number` an hour (0: that limit is off).
    pub fn new(
        per_client: u32,
        per_number: u32,
        trusted_proxies: Vec<IpNet>,
        redis: RedisTier,
        layout: &KeyLayout,
    ) -> Self {
        Self {
            client: Counts::new(Limit::Client, per_client, CLIENT_WINDOW),
            number: Counts::new(Limit::Number, per_number, NUMBER_WINDOW),
            trusted_proxies,
            redis,
            prefix: layout.prefix().to_owned(),
            redis_warning: RateLimitedWarning::new(Duration::from_secs(10)),
        }
    }

    /// The client a request comes from: NGINX's `X-Real-IP` when the connection is a trusted
    /// proxy's, else the connection's address (`None` without one: a request built in a test).
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip();
        if self.trusted_proxies.iter().any(|net| net.contains(&peer))
            && let Some(real) = headers.get(REAL_IP).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
        {
            return Some(real);
        }
        Some(peer)
    }

    /// The subjects a lookup is counted under.
    fn subjects(
        &self,
        client: Option<IpAddr>,
        id: StudentId,
        factor_required: bool,
    ) -> [Option<(&Counts, Subject)>; 2] {
        [
            self.client.as_ref().zip(client.map(Subject::client)),
            self.number.as_ref().filter(|_| factor_required).map(|counts| (counts, Subject::Number(id.get()))),
        ]
    }

    /// Whether the lookup must be refused, decided from this replica's memory (no I/O). `client`
    /// is asked only while this replica refuses someone: nearly always nobody is, and the lookup
    /// then costs two atomic loads here.
    pub fn refusal(
        &self,
        client: impl FnOnce() -> Option<IpAddr>,
        id: StudentId,
        factor_required: bool,
    ) -> Option<Refusal> {
        let now = Instant::now();
        if ![&self.client, &self.number].into_iter().flatten().any(|counts| counts.refusing(now)) {
            return None;
        }
        let refusal = self
            .subjects(client(), id, factor_required)
            .into_iter()
            .flatten()
            .find_map(|(counts, subject)| counts.refusal(&subject, now));
        if let Some(refusal) = refusal {
            metrics::counter!(FAILED_LOOKUP_REFUSALS, "limit" => refusal.limit.label()).increment(1);
        }
        refusal
    }

    /// Counts a failed lookup, here and in Redis (one pipelined round trip per subject, bounded
    /// by the Redis timeout; a Redis that cannot count leaves this replica's own count).
    pub async fn count_failure(&self, client: Option<IpAddr>, id: StudentId, factor_required: bool) {
        let now = Instant::now();
        for (counts, subject) in self.subjects(client, id, factor_required).into_iter().flatten() {
            counts.count_here(subject, now);
            match self.redis.count_in_window(&subject.key(&self.prefix), counts.window).await {
                Ok((failures, remaining)) => counts.apply_shared(subject, failures, remaining, Instant::now()),
                Err(e) => {
                    self.redis_warning.warn("cannot count a failed lookup in Redis; counting in this replica", &e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_its_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("address");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(Subject::client(a), Subject::client(b));
        assert_ne!(Subject::client(a), Subject::client(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        assert_eq!(Subject::client(mapped), Subject::Client("192.0.2.7".parse().expect("address")));
        assert_eq!(Subject::client(a).key("p"), "p:limits:client:2001:db8:1:2::");
    }

    #[test]
    fn a_replica_alone_refuses_at_the_limit_until_the_window_ends() {
        let counts = Counts::new(Limit::Client, 3, Duration::from_secs(60)).expect("on");
        let subject = Subject::client("192.0.2.1".parse().expect("address"));
        let other = Subject::client("192.0.2.2".parse().expect("address"));
        let start = Instant::now();
        for _ in 0..2 {
            counts.count_here(subject, start);
        }
        assert_eq!(counts.refusal(&subject, start), None, "two of three");
        counts.count_here(subject, start);
        let refusal = counts.refusal(&subject, start + Duration::from_secs(10)).expect("the third reaches it");
        assert_eq!(refusal.limit, Limit::Client);
        assert_eq!(refusal.retry_after, Duration::from_secs(50));
        assert_eq!(counts.refusal(&other, start), None, "another client is not refused");
        assert_eq!(counts.refusal(&subject, start + Duration::from_secs(60)), None, "the window ended");
        counts.count_here(subject, start + Duration::from_secs(61));
        assert_eq!(counts.refusal(&subject, start + Duration::from_secs(61)), None, "a new window counts from one");
    }

    #[test]
    fn the_shared_count_refuses_before_this_replica_alone_would() {
        let counts = Counts::new(Limit::Number, 10, NUMBER_WINDOW).expect("on");
        let subject = Subject::Number(1_000_123);
        let now = Instant::now();
        counts.count_here(subject, now);
        counts.apply_shared(subject, 9, Duration::from_secs(100), now);
        assert_eq!(counts.refusal(&subject, now), None, "nine of ten in all");
        counts.apply_shared(subject, 10, Duration::from_secs(100), now);
        assert_eq!(counts.refusal(&subject, now).map(|r| r.retry_after), Some(Duration::from_secs(100)));
        assert!(Counts::new(Limit::Number, 0, NUMBER_WINDOW).is_none(), "0 turns a limit off");
    }

    #[test]
    fn a_flood_of_distinct_clients_does_not_grow_memory_past_the_bound() {
        let counts = Counts::new(Limit::Client, 5, Duration::from_secs(60)).expect("on");
        let now = Instant::now();
        for n in 0..(MAX_SUBJECTS as u32 + 10) {
            counts.count_here(Subject::Client(IpAddr::V4(n.into())), now);
        }
        assert_eq!(counts.entries.lock().expect("lock").len(), MAX_SUBJECTS);
        // Once the window is over, the old entries make room.
        counts.count_here(Subject::Client(IpAddr::V4(u32::MAX.into())), now + Duration::from_secs(61));
        assert_eq!(counts.entries.lock().expect("lock").len(), 1);
    }
}
