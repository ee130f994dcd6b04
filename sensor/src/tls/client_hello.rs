//! SNI and ALPN from a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3,
//! RFC 7301), read from the first bytes a client sends on a connection.
//! This names the destination of any TLS client, hookable or not (Go,
//! rustls, BoringSSL). Every length is checked; bad input is an error.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("not a ClientHello")]
    NotClientHello,
    #[error("ClientHello cut short at byte {0}")]
    Truncated(usize),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(HelloError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(HelloError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self) -> Result<usize, HelloError> {
        let b = self.take(3)?;
        Ok(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Whether `data` starts like a TLS handshake record (cheap pre-check).
pub fn looks_like_client_hello(data: &[u8]) -> bool {
    data.len() >= 6 && data[0] == 0x16 && data[1] == 0x03 && data[5] == 0x01
}

/// Parses the ClientHello at the start of `data` (one TLS record; a hello
/// split across records is read as far as the first one goes).
pub fn parse(data: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader { buf: data, pos: 0 };
    if r.u8()? != 0x16 {
        return Err(HelloError::NotHandshake);
    }
    r.take(2)?; // record version
    let record_len = r.u16()?;
    // Parse within the record; a short capture still yields what it holds.
    let end = (r.pos + record_len).min(data.len());
    let mut r = Reader {
        buf: &data[..end],
        pos: r.pos,
    };
    if r.u8()? != 0x01 {
        return Err(HelloError::NotClientHello);
    }
    r.u24()?; // handshake length
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    let suites = r.vec16()?;
    if suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("cipher suites"));
    }
    r.vec8()?; // compression methods
    let mut hello = ClientHello::default();
    if r.pos == r.buf.len() {
        return Ok(hello); // no extensions (TLS 1.0 style)
    }
    let exts = r.vec16()?;
    let mut e = Reader { buf: exts, pos: 0 };
    while e.pos < exts.len() {
        let ty = e.u16()?;
        let body = e.vec16()?;
        let mut b = Reader { buf: body, pos: 0 };
        match ty {
            0x0000 => {
                // server_name: list of (type u8, name vec16); type 0 = host_name.
                let list = b.vec16()?;
                let mut l = Reader { buf: list, pos: 0 };
                while l.pos < list.len() {
                    let kind = l.u8()?;
                    let name = l.vec16()?;
                    if kind == 0 {
                        let name = std::str::from_utf8(name)
                            .map_err(|_| HelloError::Malformed("server name"))?;
                        hello.sni = Some(name.to_ascii_lowercase());
                    }
                }
            }
            0x0010 => {
                let list = b.vec16()?;
                let mut l = Reader { buf: list, pos: 0 };
                while l.pos < list.len() {
                    let proto = l.vec8()?;
                    hello.alpn.push(String::from_utf8_lossy(proto).into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ClientHello record with the given extensions.
    fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext_bytes = Vec::new();
        for (ty, body) in exts {
            ext_bytes.extend_from_slice(&ty.to_be_bytes());
            ext_bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
            ext_bytes.extend_from_slice(body);
        }
        let mut hs = vec![0x03, 0x03];
        hs.extend_from_slice(&[7u8; 32]);
        hs.push(0); // session id
        hs.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        hs.extend_from_slice(&[1, 0]);
        hs.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
        hs.extend_from_slice(&ext_bytes);
        let mut msg = vec![0x01];
        msg.extend_from_slice(&(hs.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&hs);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut body = (entry.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&entry);
        (0x0000, body)
    }

    fn alpn(protos: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protos {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&list);
        (0x0010, body)
    }

    #[test]
    fn reads_sni_and_alpn() {
        let rec = hello(&[
            (0x000a, vec![0, 2, 0, 0x1d]),
            sni("API.OpenAI.com"),
            alpn(&["h2", "http/1.1"]),
        ]);
        assert!(looks_like_client_hello(&rec));
        let h = parse(&rec).unwrap();
        assert_eq!(h.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(h.alpn, ["h2", "http/1.1"]);
    }

    #[test]
    fn no_extensions_is_fine() {
        let h = parse(&hello(&[])).unwrap();
        assert_eq!(h, ClientHello::default());
    }

    #[test]
    fn every_truncation_is_an_error_or_partial_never_a_panic() {
        let rec = hello(&[sni("vendor.example"), alpn(&["http/1.1"])]);
        for len in 0..rec.len() {
            let _ = parse(&rec[..len]);
        }
        assert!(matches!(parse(&rec[..20]), Err(HelloError::Truncated(_))));
    }

    #[test]
    fn non_hello_input() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotHandshake));
        let mut rec = hello(&[]);
        rec[5] = 0x02; // ServerHello
        assert_eq!(parse(&rec), Err(HelloError::NotClientHello));
        assert!(!looks_like_client_hello(b"\x17\x03\x03\x00\x10"));
    }

    #[test]
    fn lying_lengths_are_caught() {
        let mut rec = hello(&[sni("a.example")]);
        // Claim a huge extension block.
        let n = rec.len();
        rec[n - 16] = 0xff;
        let _ = parse(&rec);
    }

    #[test]
    fn real_openssl_hello_from_python() {
        // Made by Python's ssl module at test time: the real library's bytes.
        let script = r#"
import ssl, sys
ctx = ssl.create_default_context()
ctx.set_alpn_protocols(["h2", "http/1.1"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="llm.vendor.example")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
sys.stdout.buffer.write(out.read())
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success());
        let h = parse(&out.stdout).unwrap();
        assert_eq!(h.sni.as_deref(), Some("llm.vendor.example"));
        assert_eq!(h.alpn, ["h2", "http/1.1"]);
    }
}
