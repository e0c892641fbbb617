//! The server name (SNI) of a TLS ClientHello, sans-IO: for TLS passthrough, which must decide
//! where a connection goes before terminating it (or not).
//!
//! The ClientHello may arrive in several TCP segments and in several TLS records (a handshake
//! message can be fragmented across records): `sni` reassembles the handshake message from
//! the records in `buf` and answers `Incomplete` until it is whole. Bounded by
//! `HELLO_BYTES_MAX`.

/// A ClientHello longer than this is refused (real ones are a few hundred bytes to a few KiB,
/// post-quantum key shares included).
pub const HELLO_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// A complete ClientHello; its server name, lower-cased, if it sent one.
    Complete(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloError {
    /// Not a TLS handshake record, or a message that is not a ClientHello.
    NotHello,
    /// Over `HELLO_BYTES_MAX`.
    TooLong,
    /// A ClientHello that breaks its own lengths.
    Malformed,
}

/// Reads the ClientHello at the start of `buf` (TLS records as received).
pub fn sni(buf: &[u8]) -> Result<Hello, HelloError> {
    // Reassemble the handshake bytes from consecutive handshake records.
    let mut message = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + 5) else {
            return Ok(Hello::Incomplete);
        };
        if header[0] != 0x16 || header[1] != 0x03 {
            return Err(HelloError::NotHello);
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Err(HelloError::Malformed);
        }
        let Some(fragment) = buf.get(at + 5..at + 5 + len) else {
            return Ok(Hello::Incomplete);
        };
        message.extend_from_slice(fragment);
        at += 5 + len;
        if message.len() >= 4 {
            if message[0] != 0x01 {
                return Err(HelloError::NotHello);
            }
            let body = (usize::from(message[1]) << 16)
                | (usize::from(message[2]) << 8)
                | usize::from(message[3]);
            if body > HELLO_BYTES_MAX {
                return Err(HelloError::TooLong);
            }
            if message.len() >= 4 + body {
                return parse_client_hello(&message[4..4 + body]).map(Hello::Complete);
            }
        }
        if at > HELLO_BYTES_MAX + 5 * 8 {
            return Err(HelloError::TooLong);
        }
    }
}

/// A reader over a ClientHello body that fails on any overrun.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a `len_bytes`-byte length prefix.
    fn vector(&mut self, len_bytes: usize) -> Result<&'a [u8], HelloError> {
        let n = if len_bytes == 1 {
            self.u8()?
        } else {
            self.u16()?
        };
        self.take(n)
    }
}

fn parse_client_hello(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vector(1)?; // legacy_session_id
    r.vector(2)?; // cipher_suites
    r.vector(1)?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Reader(r.vector(2)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vector(2)?;
        if kind != 0 {
            continue;
        }
        // server_name: a list of (type, name); type 0 is host_name (RFC 6066 §3).
        let mut list = Reader(data);
        let mut names = Reader(list.vector(2)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let name = names.vector(2)?;
            if kind == 0 {
                let name = std::str::from_utf8(name).map_err(|_| HelloError::Malformed)?;
                return Ok(Some(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record as a real client makes it (rustls), for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        use std::sync::Arc;
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn sni_of_a_real_client_hello_at_every_split() {
        let hello = client_hello("DB.Example.com");
        for cut in 0..hello.len() {
            assert_eq!(sni(&hello[..cut]), Ok(Hello::Incomplete), "cut at {cut}");
        }
        assert_eq!(
            sni(&hello),
            Ok(Hello::Complete(Some("db.example.com".into())))
        );
        // Followed by more bytes: the same.
        let mut more = hello.clone();
        more.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        assert_eq!(
            sni(&more),
            Ok(Hello::Complete(Some("db.example.com".into())))
        );
    }

    #[test]
    fn a_client_hello_split_across_records() {
        let hello = client_hello("db.example.com");
        // Re-frame the one handshake message as records of 50 bytes each.
        let message = &hello[5..];
        let mut records = Vec::new();
        for chunk in message.chunks(50) {
            records.extend_from_slice(&[0x16, 0x03, 0x01]);
            records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            records.extend_from_slice(chunk);
        }
        for cut in 0..records.len() {
            assert_eq!(sni(&records[..cut]), Ok(Hello::Incomplete), "cut at {cut}");
        }
        assert_eq!(
            sni(&records),
            Ok(Hello::Complete(Some("db.example.com".into())))
        );
    }

    #[test]
    fn not_tls_no_sni_bad_lengths_and_bounds() {
        assert_eq!(sni(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotHello));
        // An IP address as the name: rustls sends no SNI.
        let hello = client_hello("127.0.0.1");
        assert_eq!(sni(&hello), Ok(Hello::Complete(None)));
        // A handshake that is not a ClientHello (ServerHello type 2).
        let mut server_hello = client_hello("a.example");
        server_hello[5] = 0x02;
        assert_eq!(sni(&server_hello), Err(HelloError::NotHello));
        // Lengths that overrun: the extensions block claims more than there is.
        let mut broken = client_hello("a.example");
        let n = broken.len();
        broken[5 + 1..5 + 4].copy_from_slice(&[0, ((n - 9) >> 8) as u8, (n - 9) as u8]);
        let ext_len_at = 5 + 4 + 2 + 32;
        let sid = broken[ext_len_at] as usize;
        let cs_at = ext_len_at + 1 + sid;
        let cs = u16::from_be_bytes([broken[cs_at], broken[cs_at + 1]]) as usize;
        let comp_at = cs_at + 2 + cs;
        let comp = broken[comp_at] as usize;
        let exts_at = comp_at + 1 + comp;
        broken[exts_at] = 0xFF;
        assert_eq!(sni(&broken), Err(HelloError::Malformed));
        // A message length over the bound.
        let huge = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00];
        assert_eq!(sni(&huge), Err(HelloError::TooLong));
    }
}
