//! Who may use a route (sans-IO): HTTP Basic users from a users file (bcrypt hashes as
//! `htpasswd -B` writes them, or plain text), the realm of the challenge, and the
//! `allow_from` / `deny_from` CIDR lists. The per-core cache of bcrypt verifications lives in
//! the runtime (`runtime::conn::gate`); this module only decides.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::policy::cidr::Cidr;

/// A password as a users file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Plain text (still accepted; `ringway check` warns).
    Plain(String),
    /// A bcrypt hash: `$2y$`, `$2b$` or `$2a$`.
    Bcrypt(String),
}

/// The users of one `users_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users(Vec<(String, Secret)>);

/// A users file read: its users, and the (1-based) lines that hold a plain-text password.
pub struct UsersFile {
    pub users: Users,
    pub plain_lines: Vec<(usize, String)>,
}

/// `auth = { users_file = "...", realm = "..." }` on a context or WebSocket route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub users: Users,
    /// For `WWW-Authenticate: Basic realm="..."` (no `"` or `\`; checked at load).
    pub realm: String,
}

/// Who may use a route: an empty `Access` admits everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub auth: Option<Auth>,
    pub allow_from: Vec<Cidr>,
    pub deny_from: Vec<Cidr>,
}

impl Access {
    pub fn is_open(&self) -> bool {
        self.auth.is_none() && self.allow_from.is_empty() && self.deny_from.is_empty()
    }

    /// `deny_from` wins; a non-empty `allow_from` admits only its blocks.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.deny_from.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow_from.is_empty() || self.allow_from.iter().any(|c| c.contains(ip))
    }
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) is matched as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A users file: one `user:password` or `user:$2y$...` per line; blank lines and `#` comments
/// are skipped.
pub fn parse_users(text: &str) -> Result<UsersFile, String> {
    let mut users = Vec::new();
    let mut plain_lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (user, secret) = line
            .trim_end_matches('\r')
            .split_once(':')
            .filter(|(u, _)| !u.is_empty())
            .ok_or_else(|| format!("line {}: expected user:password", i + 1))?;
        let secret = if ["$2y$", "$2b$", "$2a$"]
            .iter()
            .any(|p| secret.starts_with(p))
        {
            secret
                .parse::<bcrypt::HashParts>()
                .map_err(|e| format!("line {}: bad bcrypt hash for {user:?}: {e}", i + 1))?;
            Secret::Bcrypt(secret.to_string())
        } else if secret.starts_with('$') || secret.starts_with("{SHA}") {
            return Err(format!(
                "line {}: unsupported hash for {user:?}: use bcrypt (htpasswd -B) or plain text",
                i + 1
            ));
        } else {
            plain_lines.push((i + 1, user.to_string()));
            Secret::Plain(secret.to_string())
        };
        users.push((user.to_string(), secret));
    }
    Ok(UsersFile {
        users: Users(users),
        plain_lines,
    })
}

/// `Basic <base64(user:password)>` decoded, or `None`.
pub fn basic_credentials(header: Option<&[u8]>) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = header?.trim_ascii();
    let (scheme, rest) = value.split_first_chunk::<6>()?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let mut decoded = BASE64.decode(rest.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded.split_off(colon + 1);
    decoded.truncate(colon);
    Some((decoded, password))
}

impl Users {
    pub fn secret(&self, user: &[u8]) -> Option<&Secret> {
        self.0
            .iter()
            .find(|(u, _)| ct_eq(u.as_bytes(), user))
            .map(|(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `password` matches `secret` (bcrypt: slow, tens of milliseconds at cost 10; the
/// runtime caches results).
pub fn verify(secret: &Secret, password: &[u8]) -> bool {
    match secret {
        Secret::Plain(p) => ct_eq(p.as_bytes(), password),
        Secret::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
    }
}

/// Compares in full: the time taken does not say which byte differed.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_plain_and_bcrypt() {
        let hash = bcrypt::hash_with_result("s3cret", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let text = format!("# users\nalice:{hash}\n\nbob:pa:ss\n");
        let f = parse_users(&text).unwrap();
        assert_eq!(f.users.len(), 2);
        assert_eq!(f.plain_lines, [(4, "bob".to_string())]);
        let alice = f.users.secret(b"alice").unwrap();
        assert!(matches!(alice, Secret::Bcrypt(_)));
        assert!(verify(alice, b"s3cret"));
        assert!(!verify(alice, b"s3cre"));
        assert!(verify(f.users.secret(b"bob").unwrap(), b"pa:ss"));
        assert!(f.users.secret(b"mallory").is_none());
        assert!(parse_users("nocolon\n").is_err());
        assert!(parse_users("a:$2y$10$short\n").is_err());
        assert!(parse_users("a:$apr1$xyz$abc\n").is_err());
    }

    #[test]
    fn basic_header_decoding() {
        let h = format!("Basic {}", BASE64.encode("alice:pa:ss"));
        assert_eq!(
            basic_credentials(Some(h.as_bytes())),
            Some((b"alice".to_vec(), b"pa:ss".to_vec()))
        );
        assert!(basic_credentials(Some(b"Bearer x")).is_none());
        assert!(basic_credentials(Some(b"Basic !!!")).is_none());
        assert!(basic_credentials(None).is_none());
    }

    #[test]
    fn deny_wins_over_allow() {
        let cidr = |s: &str| s.parse::<Cidr>().unwrap();
        let a = Access {
            auth: None,
            allow_from: vec![cidr("127.0.0.0/8")],
            deny_from: vec![cidr("127.0.0.2/32")],
        };
        assert!(a.ip_allowed("127.0.0.1".parse().unwrap()));
        assert!(a.ip_allowed("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!a.ip_allowed("127.0.0.2".parse().unwrap()));
        assert!(!a.ip_allowed("10.0.0.1".parse().unwrap()));
        assert!(Access::default().ip_allowed("10.0.0.1".parse().unwrap()));
    }
}
