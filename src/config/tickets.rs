//! TLS session resumption shared by every core of the process: the ticket key set (stateless
//! TLS 1.3 and TLS 1.2 tickets) and the session-ID cache for TLS 1.2 clients without ticket
//! support.
//!
//! - Keys: `[tls] ticket_keys = "FILE"` names a file of keys shared by a fleet (one per line,
//!   base64 of 80 random bytes, the format HAProxy's `tls-ticket-keys` and nginx's 80-byte
//!   `ssl_session_ticket_key` use; the first line encrypts, every line decrypts). Of the 80
//!   bytes, the first 16 name the key (written in front of each ticket, so decryption finds its
//!   key without trying them all) and the last 32 are the AES-256-GCM key; the 32 in between
//!   (HMAC in those servers' scheme) are unused, since GCM authenticates. Without the file the
//!   process makes its own random key at start and rotates it every `ROTATE` (the previous one
//!   still decrypts), and keeps it across reloads.
//! - Tickets: `name (16) | nonce (12) | AES-256-GCM(plain) with the name as additional data`.
//! - The session cache is rustls's `ServerSessionMemoryCache` (a mutex around a bounded map),
//!   one per process: it is touched once per full TLS 1.2 handshake by a client that offers no
//!   ticket support, never per request or message.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

/// Bytes per key in a `ticket_keys` file.
pub const KEY_LEN: usize = 80;
const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// How often a process's own key (no `ticket_keys` file) is replaced.
pub const ROTATE: Duration = Duration::from_secs(12 * 3600);
/// The lifetime hint sent with each ticket (seconds).
pub const LIFETIME_SECS: u32 = 7200;
/// `[tls] session_cache` default: entries in the TLS 1.2 session-ID cache.
pub const SESSION_CACHE_DEFAULT: usize = 20_000;

/// The keys of a `ticket_keys` file, in file order. Debug output never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketKeys(pub Vec<[u8; KEY_LEN]>);

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketKeys({} keys)", self.0.len())
    }
}

impl TicketKeys {
    /// Parses a key file: one base64 key of exactly 80 bytes per line; blank lines and lines
    /// starting with `#` are skipped. `Err` names the first bad line (1-based) and what is wrong.
    pub fn parse(text: &str) -> Result<TicketKeys, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|e| format!("line {}: not base64 ({e})", i + 1))?;
            let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                format!(
                    "line {}: a key must be the base64 of exactly {KEY_LEN} bytes, found {} bytes",
                    i + 1,
                    bytes.len()
                )
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(format!(
                "no key found (one base64 key of {KEY_LEN} bytes per line, e.g. `openssl rand 80 | base64 -w0`)"
            ));
        }
        Ok(TicketKeys(keys))
    }
}

/// One key ready to use.
struct Key {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

impl Key {
    fn new(raw: &[u8; KEY_LEN]) -> Option<Key> {
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(&raw[..NAME_LEN]);
        let unbound = UnboundKey::new(&AES_256_GCM, &raw[KEY_LEN - 32..]).ok()?;
        Some(Key {
            name,
            aead: LessSafeKey::new(unbound),
        })
    }

    fn random(rng: &SystemRandom) -> Option<Key> {
        let mut raw = [0u8; KEY_LEN];
        rng.fill(&mut raw).ok()?;
        Key::new(&raw)
    }
}

/// The keys in use: the first encrypts, all decrypt.
struct KeySet {
    keys: Vec<Arc<Key>>,
    /// For a process's own keys: when the first is replaced. `None`: keys from a file.
    rotate_at: Option<Instant>,
}

/// Issues and opens tickets with a key set shared by every core (and, with a key file, by
/// every instance that has the same file).
pub struct Ticketer {
    set: ArcSwap<KeySet>,
    rng: SystemRandom,
    /// Serialises rotations (taken at most once per `ROTATE`, never to encrypt or decrypt).
    rotating: Mutex<()>,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticketer({} keys)", self.set.load().keys.len())
    }
}

impl Ticketer {
    /// A ticketer with the keys of a `ticket_keys` file (never rotated by itself).
    pub fn from_keys(keys: &TicketKeys) -> Result<Ticketer, String> {
        let keys = keys
            .0
            .iter()
            .map(|raw| Key::new(raw).map(Arc::new))
            .collect::<Option<Vec<_>>>()
            .ok_or("cannot set up an AES-256-GCM ticket key")?;
        Ok(Ticketer {
            set: ArcSwap::from_pointee(KeySet {
                keys,
                rotate_at: None,
            }),
            rng: SystemRandom::new(),
            rotating: Mutex::new(()),
        })
    }

    /// A ticketer with a random key, replaced every `ROTATE` (the previous one still decrypts).
    pub fn random(now: Instant) -> Result<Ticketer, String> {
        let rng = SystemRandom::new();
        let key = Key::random(&rng).ok_or("no randomness for a ticket key")?;
        Ok(Ticketer {
            set: ArcSwap::from_pointee(KeySet {
                keys: vec![Arc::new(key)],
                rotate_at: Some(now + ROTATE),
            }),
            rng,
            rotating: Mutex::new(()),
        })
    }

    /// Replaces the encrypting key if its time is up (own keys only); keeps one previous key.
    fn rotate_if_due(&self, now: Instant) {
        let due = self.set.load().rotate_at.is_some_and(|t| now >= t);
        if !due {
            return;
        }
        let Ok(_guard) = self.rotating.lock() else {
            return;
        };
        let current = self.set.load_full();
        if current.rotate_at.is_none_or(|t| now < t) {
            return; // another core rotated meanwhile
        }
        let Some(fresh) = Key::random(&self.rng) else {
            return;
        };
        let mut keys = vec![Arc::new(fresh)];
        if let Some(previous) = current.keys.first() {
            keys.push(previous.clone());
        }
        self.set.store(Arc::new(KeySet {
            keys,
            rotate_at: Some(now + ROTATE),
        }));
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let set = self.set.load();
        let key = set.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let set = self.set.load();
        let key = set.keys.iter().find(|k| k.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&key.name), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due(Instant::now());
        self.seal(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(cipher)
    }
}

/// What every TLS listener of one configuration generation resumes sessions with.
#[derive(Clone)]
pub struct Resumption {
    pub ticketer: Arc<dyn ProducesTickets>,
    pub sessions: Arc<dyn StoresServerSessions>,
}

impl fmt::Debug for Resumption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resumption")
            .field("ticketer", &self.ticketer)
            .finish_non_exhaustive()
    }
}

/// The process's own ticket key set (no `ticket_keys` file): made once, kept across reloads.
static OWN_TICKETER: OnceLock<Arc<Ticketer>> = OnceLock::new();
/// The process's session-ID cache and its size: kept across reloads unless the size changes.
static SESSION_CACHE: Mutex<Option<(usize, Arc<ServerSessionMemoryCache>)>> = Mutex::new(None);

impl Resumption {
    /// For a generation: the file's keys (`Some`), else the process's own; the process's
    /// session cache with `cache_size` entries. Called at start and on reload, off the cores.
    pub fn new(keys: Option<&TicketKeys>, cache_size: usize) -> Result<Resumption, String> {
        let ticketer: Arc<dyn ProducesTickets> = match keys {
            Some(keys) => Arc::new(Ticketer::from_keys(keys)?),
            None => match OWN_TICKETER.get() {
                Some(t) => t.clone(),
                None => {
                    let made = Arc::new(Ticketer::random(Instant::now())?);
                    OWN_TICKETER.get_or_init(|| made).clone()
                }
            },
        };
        let mut cache = SESSION_CACHE
            .lock()
            .map_err(|_| "session cache lock poisoned")?;
        let sessions = match cache.as_ref() {
            Some((size, c)) if *size == cache_size => c.clone(),
            _ => {
                let c = ServerSessionMemoryCache::new(cache_size);
                *cache = Some((cache_size, c.clone()));
                c
            }
        };
        Ok(Resumption { ticketer, sessions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(fill: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([fill; KEY_LEN])
    }

    #[test]
    fn key_files_parse_with_comments_and_blank_lines() {
        let text = format!("# fleet keys\n\n{}\n  {}  \n", key_line(1), key_line(2));
        let keys = TicketKeys::parse(&text).unwrap();
        assert_eq!(keys.0.len(), 2);
        assert_eq!(keys.0[0], [1; KEY_LEN]);
        assert_eq!(keys.0[1], [2; KEY_LEN]);
        assert_eq!(
            format!("{keys:?}"),
            "TicketKeys(2 keys)",
            "never prints key bytes"
        );
    }

    #[test]
    fn bad_key_files_name_the_line() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 48]);
        let e = TicketKeys::parse(&format!("{}\n{short}\n", key_line(1))).unwrap_err();
        assert!(
            e.starts_with("line 2: a key must be the base64 of exactly 80 bytes, found 48"),
            "{e}"
        );
        let e = TicketKeys::parse("# only a comment\n\n").unwrap_err();
        assert!(e.starts_with("no key found"), "{e}");
        let e = TicketKeys::parse("not base64 at all!\n").unwrap_err();
        assert!(e.starts_with("line 1: not base64"), "{e}");
    }

    #[test]
    fn tickets_open_with_any_listed_key_and_only_those() {
        let a = TicketKeys::parse(&format!("{}\n{}\n", key_line(1), key_line(2))).unwrap();
        // Same keys in another order: encrypts with key 2, still opens key 1's tickets.
        let b = TicketKeys::parse(&format!("{}\n{}\n", key_line(2), key_line(1))).unwrap();
        let other = TicketKeys::parse(&key_line(3)).unwrap();
        let (ta, tb) = (
            Ticketer::from_keys(&a).unwrap(),
            Ticketer::from_keys(&b).unwrap(),
        );
        let t_other = Ticketer::from_keys(&other).unwrap();
        let ticket = ta.encrypt(b"session state").unwrap();
        assert_eq!(tb.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        assert_eq!(ta.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        assert_eq!(t_other.decrypt(&ticket), None, "another fleet's keys");
        // Tampering anywhere fails authentication; short input is refused without panicking.
        for i in [0, NAME_LEN, NAME_LEN + NONCE_LEN, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(ta.decrypt(&bad), None, "flipped byte {i}");
        }
        for n in 0..NAME_LEN + NONCE_LEN + TAG_LEN {
            assert_eq!(ta.decrypt(&ticket[..n]), None);
        }
        // Two tickets of the same state differ (fresh nonce).
        assert_ne!(ta.encrypt(b"x"), ta.encrypt(b"x"));
    }

    #[test]
    fn own_keys_rotate_and_the_previous_key_still_opens() {
        let start = Instant::now();
        let t = Ticketer::random(start).unwrap();
        let old = t.seal(b"before").unwrap();
        t.rotate_if_due(start + ROTATE / 2);
        assert_eq!(t.set.load().keys.len(), 1, "not due yet");
        t.rotate_if_due(start + ROTATE);
        let new = t.seal(b"after").unwrap();
        assert_ne!(old[..NAME_LEN], new[..NAME_LEN], "a new key encrypts");
        assert_eq!(t.open(&old).as_deref(), Some(&b"before"[..]));
        t.rotate_if_due(start + ROTATE * 2);
        assert_eq!(
            t.open(&old),
            None,
            "two rotations later the first key is gone"
        );
        assert_eq!(t.open(&new).as_deref(), Some(&b"after"[..]));
        assert_eq!(t.set.load().keys.len(), 2);
    }
}
