//! The second factor: a detail printed on the student's admission slip (a PIN or the date of
//! birth, whichever the data set carries) that a lookup must present besides the registration
//! number, so that consecutive numbers alone no longer read the country's results.
//!
//! The stores never hold the factor, only [`FactorHash`]: HMAC-SHA-256 under a secret
//! [`FactorKey`] (the `FACTOR_KEY` setting of the seeder and the API, never committed), over the
//! factor's kind and canonical text, truncated to 16 bytes. Without the key a dump of either store
//! cannot be brute-forced offline (a PIN or a birth date has few possible values); with it, the API
//! compares in constant time ([`FactorKey::matches`]).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The HTTP request header a lookup presents the factor in. A header, not the URL: URLs end up
/// in access logs, browser history and cache keys; NGINX's log format does not log this header,
/// and it does not cache a request that carries it.
pub const FACTOR_HEADER: &str = "x-second-factor";
/// Bytes of a stored factor hash: 128 bits, far beyond what guessing through the API can use.
pub const FACTOR_HASH_BYTES: usize = 16;
/// The shortest accepted secret, in bytes (a 256-bit key written as text).
pub const MIN_KEY_BYTES: usize = 32;
/// The fewest and most digits of a PIN.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;

/// Which detail of the admission slip the data set asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    /// A numeric PIN printed on the slip ([`PIN_DIGITS`] digits, leading zeros significant).
    Pin,
    /// The date of birth, `YYYY-MM-DD`.
    DateOfBirth,
}

impl FactorKind {
    /// Both kinds.
    pub const ALL: [FactorKind; 2] = [FactorKind::Pin, FactorKind::DateOfBirth];

    /// Its name: the results file's column, the stores' mode and the API's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Pin => "pin",
            FactorKind::DateOfBirth => "date_of_birth",
        }
    }

    /// Parses [`FactorKind::as_str`] back.
    pub fn from_name(name: &str) -> Option<FactorKind> {
        FactorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// What a well-formed value looks like, for messages.
    pub fn expected(self) -> &'static str {
        match self {
            FactorKind::Pin => "a PIN of 4 to 12 digits",
            FactorKind::DateOfBirth => "a date of birth written YYYY-MM-DD",
        }
    }

    /// The canonical text of a value typed by a person or read from the file (spaces around it
    /// ignored), or `None` when it is not a value of this kind.
    pub fn canonical(self, text: &str) -> Option<String> {
        let text = text.trim();
        match self {
            FactorKind::Pin => {
                (PIN_DIGITS.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.to_owned())
            }
            FactorKind::DateOfBirth => {
                let bytes = text.as_bytes();
                let digits = |range: std::ops::Range<usize>| {
                    let part = bytes.get(range)?;
                    part.iter().all(u8::is_ascii_digit).then(|| std::str::from_utf8(part).ok()?.parse::<u32>().ok())?
                };
                if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
                    return None;
                }
                let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
                let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
                let days = match month {
                    1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                    4 | 6 | 9 | 11 => 30,
                    2 if leap => 29,
                    2 => 28,
                    _ => return None,
                };
                ((1900..=2100).contains(&year) && (1..=days).contains(&day)).then(|| text.to_owned())
            }
        }
    }
}

/// The keyed hash of one student's factor, as the stores hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FactorHash(pub [u8; FACTOR_HASH_BYTES]);

/// Why a secret was refused as a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FACTOR_KEY must be at least {MIN_KEY_BYTES} bytes of secret text (it is {0})")]
pub struct ShortKey(pub usize);

/// The secret the factor hashes are keyed with. Its `Debug` never shows it.
#[derive(Clone)]
pub struct FactorKey(Hmac<Sha256>);

impl std::fmt::Debug for FactorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FactorKey(<secret>)")
    }
}

impl FactorKey {
    /// A key from the secret setting.
    pub fn new(secret: &str) -> Result<Self, ShortKey> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(ShortKey(secret.len()));
        }
        // HMAC accepts a key of any length, so this cannot fail.
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map(FactorKey).map_err(|_| ShortKey(secret.len()))
    }

    /// The hash of `canonical` (see [`FactorKind::canonical`]). The kind is hashed too, so a PIN
    /// that happens to spell a date never matches a date.
    pub fn hash(&self, kind: FactorKind, canonical: &str) -> FactorHash {
        let mut mac = self.0.clone();
        mac.update(kind.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(canonical.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; FACTOR_HASH_BYTES];
        out.copy_from_slice(&full[..FACTOR_HASH_BYTES]);
        FactorHash(out)
    }

    /// Whether `candidate` equals `stored`, in time independent of where they differ.
    pub fn matches(stored: &FactorHash, candidate: &FactorHash) -> bool {
        stored.0.ct_eq(&candidate.0).into()
    }
}

/// The PIN of the student with registration number `id` in a generated data set of `seed` that
/// carries PINs (`seeder load --factor pin`): six digits anyone who knows the seed can derive, as
/// the load generator does. Demo data only: an authority's PINs are random and come in its file.
pub fn generated_pin(seed: u64, id: u32) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..12].copy_from_slice(&id.to_le_bytes());
    bytes[12..].copy_from_slice(b"pin1");
    format!("{:06}", xxhash_rust::xxh3::xxh3_64(&bytes) % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FactorKey {
        FactorKey::new("a test key that is long enough to be a key").expect("long enough")
    }

    #[test]
    fn values_are_canonical_or_refused() {
        assert_eq!(FactorKind::Pin.canonical(" 0042 ").as_deref(), Some("0042"));
        for bad in ["", "123", "1234567890123", "12a4", "１２３４", "-1234"] {
            assert_eq!(FactorKind::Pin.canonical(bad), None, "{bad:?}");
        }
        assert_eq!(FactorKind::DateOfBirth.canonical("2008-02-29").as_deref(), Some("2008-02-29"));
        for bad in [
            "2007-02-29",
            "2008-13-01",
            "2008-00-10",
            "2008-04-31",
            "08-04-01",
            "2008/04/01",
            "1899-01-01",
            "2008-4-01",
        ] {
            assert_eq!(FactorKind::DateOfBirth.canonical(bad), None, "{bad:?}");
        }
        for kind in FactorKind::ALL {
            assert_eq!(FactorKind::from_name(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn the_hash_depends_on_the_key_the_kind_and_the_value() {
        let k = key();
        let pin = k.hash(FactorKind::Pin, "123456");
        assert!(FactorKey::matches(&pin, &k.hash(FactorKind::Pin, "123456")));
        assert!(!FactorKey::matches(&pin, &k.hash(FactorKind::Pin, "123457")));
        assert!(!FactorKey::matches(&pin, &k.hash(FactorKind::DateOfBirth, "123456")));
        let other = FactorKey::new("another key, also long enough to be a key").expect("long enough");
        assert!(!FactorKey::matches(&pin, &other.hash(FactorKind::Pin, "123456")));
    }

    #[test]
    fn a_short_secret_is_refused_and_never_shown() {
        assert_eq!(FactorKey::new("short").map(|_| ()), Err(ShortKey(5)));
        assert!(!format!("{:?}", key()).contains("long enough"));
    }

    #[test]
    fn generated_pins_are_six_digits_and_differ_between_students() {
        let pins: std::collections::HashSet<String> =
            (1_000_000..1_000_100).map(|id| generated_pin(2026, id)).collect();
        assert!(pins.len() > 95, "{} distinct PINs of 100", pins.len());
        assert!(pins.iter().all(|p| FactorKind::Pin.canonical(p).as_deref() == Some(p.as_str())));
        assert_ne!(generated_pin(2026, 1_000_000), generated_pin(2027, 1_000_000));
    }
}
