//! Decoding of raw ring-buffer records, with bounds checks.
//!
//! A record shorter than its kind requires, or of an unknown kind, is an
//! error the caller counts and skips; nothing here can panic on bad input.

use sensor_common::{
    BlockedRecord, ConnectRecord, EventHeader, EventKind, ExecRecord, ExitRecord, ForkRecord,
    SOCK_DATA_MAX, SockDataHeader, TLS_DATA_MAX, TlsBindRecord, TlsDataHeader,
};

#[derive(Clone, Debug)]
pub enum Record {
    /// Boxed: six times the size of the other records.
    Exec(Box<ExecRecord>),
    Fork(ForkRecord),
    Exit(ExitRecord),
    Connect(ConnectRecord),
    TlsData(Box<TlsData>),
    SockData(Box<SockData>),
    TlsBind(TlsBindRecord),
    Blocked(BlockedRecord),
}

/// Bytes sent or received on a connected socket.
#[derive(Clone, Debug)]
pub struct SockData {
    pub hdr: SockDataHeader,
    pub data: Vec<u8>,
}

/// The `captured` bytes after a fixed header of `header` bytes, checked.
fn tail(bytes: &[u8], header: usize, captured: usize, max: usize) -> Result<Vec<u8>, DecodeError> {
    let carried = bytes.len().saturating_sub(header);
    // The ring buffer pads records to 8 bytes, so more may follow; fewer,
    // or more than the kernel can send, is corruption.
    if captured > carried || captured > max {
        return Err(DecodeError::BadDataLength { captured, carried });
    }
    Ok(bytes[header..header + captured].to_vec())
}

/// TLS plaintext as captured: the fixed header and the bytes that followed.
#[derive(Clone, Debug)]
pub struct TlsData {
    pub hdr: TlsDataHeader,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than a header")]
    TooShortForHeader { len: usize },
    #[error("record kind {kind} is unknown")]
    UnknownKind { kind: u32 },
    #[error("data record claims {captured} bytes but carries {carried}")]
    BadDataLength { captured: usize, carried: usize },
    #[error("{kind:?} record of {len} bytes, expected at least {need}")]
    Truncated {
        kind: EventKind,
        len: usize,
        need: usize,
    },
}

impl DecodeError {
    /// Stable label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooShortForHeader { .. } => "too_short",
            Self::UnknownKind { .. } => "unknown_kind",
            Self::Truncated { .. } => "truncated",
            Self::BadDataLength { .. } => "bad_data_length",
        }
    }
}

/// Reads a `T` from the start of `bytes` if it is long enough.
fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; read_unaligned makes no alignment
    // assumption; T is a plain-old-data repr(C) record (every bit pattern valid).
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: EventHeader =
        read(bytes).ok_or(DecodeError::TooShortForHeader { len: bytes.len() })?;
    let kind =
        EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind { kind: header.kind })?;
    let truncated = DecodeError::Truncated {
        kind,
        len: bytes.len(),
        need: kind.record_size(),
    };
    Ok(match kind {
        EventKind::Exec => Record::Exec(Box::new(read(bytes).ok_or(truncated)?)),
        EventKind::Fork => Record::Fork(read(bytes).ok_or(truncated)?),
        EventKind::Exit => Record::Exit(read(bytes).ok_or(truncated)?),
        EventKind::Connect => Record::Connect(read(bytes).ok_or(truncated)?),
        EventKind::TlsData => {
            let hdr: TlsDataHeader = read(bytes).ok_or(truncated)?;
            let data = tail(
                bytes,
                size_of::<TlsDataHeader>(),
                hdr.captured as usize,
                TLS_DATA_MAX,
            )?;
            Record::TlsData(Box::new(TlsData { hdr, data }))
        }
        EventKind::SockData => {
            let hdr: SockDataHeader = read(bytes).ok_or(truncated)?;
            let data = tail(
                bytes,
                size_of::<SockDataHeader>(),
                hdr.captured as usize,
                SOCK_DATA_MAX,
            )?;
            Record::SockData(Box::new(SockData { hdr, data }))
        }
        EventKind::TlsBind => Record::TlsBind(read(bytes).ok_or(truncated)?),
        EventKind::Blocked => Record::Blocked(read(bytes).ok_or(truncated)?),
    })
}

impl Record {
    pub fn header(&self) -> &EventHeader {
        match self {
            Record::Exec(r) => &r.header,
            Record::Fork(r) => &r.header,
            Record::Exit(r) => &r.header,
            Record::Connect(r) => &r.header,
            Record::TlsData(r) => &r.hdr.header,
            Record::SockData(r) => &r.hdr.header,
            Record::TlsBind(r) => &r.header,
            Record::Blocked(r) => &r.header,
        }
    }
}

/// Bytes as text up to the first NUL (comm and similar fixed buffers).
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// NUL-separated argv bytes to arguments.
pub fn argv(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sensor_common::{AF_INET, ARGS_LEN, COMM_LEN, FILENAME_LEN};

    pub fn header(kind: EventKind, tgid: u32) -> EventHeader {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        EventHeader {
            kind: kind as u32,
            tid: tgid,
            tgid,
            uid: 1000,
            gid: 1000,
            _pad: 0,
            ktime_ns: 5_000_000_000,
            start_ns: 4_000_000_000,
            cgroup_id: 42,
            comm,
        }
    }

    pub fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) POD value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    pub fn connect(tgid: u32, port: u16, ret: i32) -> ConnectRecord {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ConnectRecord {
            header: header(EventKind::Connect, tgid),
            fd: 3,
            ret,
            family: AF_INET,
            port,
            addr,
            _pad: 0,
        }
    }

    pub fn exec(tgid: u32, ppid: u32, path: &str, args: &[&str]) -> ExecRecord {
        let mut filename = [0u8; FILENAME_LEN];
        filename[..path.len()].copy_from_slice(path.as_bytes());
        let mut a = [0u8; ARGS_LEN];
        let mut n = 0;
        for arg in args {
            a[n..n + arg.len()].copy_from_slice(arg.as_bytes());
            n += arg.len() + 1;
        }
        ExecRecord {
            header: header(EventKind::Exec, tgid),
            ppid,
            filename_len: path.len() as u16,
            filename_truncated: 0,
            args_truncated: 0,
            args_len: n as u16,
            _pad: [0; 6],
            filename,
            args: a,
        }
    }

    #[test]
    fn decodes_each_kind() {
        let c = connect(10, 443, -111);
        match decode(&bytes_of(&c)).unwrap() {
            Record::Connect(r) => {
                assert_eq!((r.header.tgid, r.port, r.ret), (10, 443, -111));
            }
            other => panic!("{other:?}"),
        }
        let e = exec(11, 1, "/usr/bin/curl", &["curl", "-s"]);
        assert!(matches!(decode(&bytes_of(&e)).unwrap(), Record::Exec(r) if r.ppid == 1));
        let f = ForkRecord {
            header: header(EventKind::Fork, 1),
            child_tgid: 2,
            _pad: 0,
            child_start_ns: 7,
        };
        assert!(matches!(decode(&bytes_of(&f)).unwrap(), Record::Fork(r) if r.child_tgid == 2));
        let x = ExitRecord {
            header: header(EventKind::Exit, 3),
            exit_code: 256,
            _pad: 0,
        };
        assert!(matches!(decode(&bytes_of(&x)).unwrap(), Record::Exit(r) if r.exit_code == 256));
        let b = sensor_common::TlsBindRecord {
            header: header(EventKind::TlsBind, 4),
            conn: 0x5555,
            fd: 7,
            _pad: 0,
        };
        assert!(
            matches!(decode(&bytes_of(&b)).unwrap(), Record::TlsBind(r) if (r.conn, r.fd) == (0x5555, 7))
        );
        let k = blocked(5);
        assert!(
            matches!(decode(&bytes_of(&k)).unwrap(), Record::Blocked(r) if (r.conn, r.rule, r.len) == (0x77, 2, 40))
        );
        match decode(&sock(6, b"POST /x")).unwrap() {
            Record::SockData(d) => {
                assert_eq!((d.hdr.fd, d.hdr.len), (9, 100));
                assert_eq!(d.data, b"POST /x");
            }
            other => panic!("{other:?}"),
        }
        // Its own bound, not TLS's: a claim past SOCK_DATA_MAX is corrupt.
        let long = vec![b'x'; SOCK_DATA_MAX + 1];
        assert_eq!(
            decode(&sock(6, &long)).unwrap_err(),
            DecodeError::BadDataLength {
                captured: SOCK_DATA_MAX + 1,
                carried: SOCK_DATA_MAX + 1
            }
        );
    }

    fn blocked(tgid: u32) -> sensor_common::BlockedRecord {
        sensor_common::BlockedRecord {
            header: header(EventKind::Blocked, tgid),
            conn: 0x77,
            rule: 2,
            signal_result: 0,
            buf: 0x7f00_0000_1000,
            len: 40,
            action: u32::from(sensor_common::ARM_HOLD),
            _pad: 0,
        }
    }

    /// A SockData record: its header (fd 9, a send of 100 bytes), then `data`.
    fn sock(tgid: u32, data: &[u8]) -> Vec<u8> {
        let hdr = SockDataHeader {
            header: header(EventKind::SockData, tgid),
            fd: 9,
            captured: data.len() as u32,
            len: 100,
            dir: sensor_common::TLS_DIR_WRITE,
            _pad: [0; 7],
        };
        let mut b = bytes_of(&hdr);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn decodes_from_unaligned_buffer() {
        let c = connect(10, 80, 0);
        let mut buf = vec![0u8];
        buf.extend(bytes_of(&c));
        assert!(matches!(decode(&buf[1..]).unwrap(), Record::Connect(_)));
    }

    #[test]
    fn truncated_and_unknown_records_are_errors() {
        let c = bytes_of(&connect(10, 80, 0));
        for len in [0, 1, 63] {
            assert_eq!(
                decode(&c[..len]).unwrap_err(),
                DecodeError::TooShortForHeader { len }
            );
        }
        assert!(matches!(
            decode(&c[..c.len() - 1]).unwrap_err(),
            DecodeError::Truncated {
                kind: EventKind::Connect,
                ..
            }
        ));
        let mut bad = c.clone();
        bad[0] = 99;
        assert_eq!(
            decode(&bad).unwrap_err(),
            DecodeError::UnknownKind { kind: 99 }
        );
    }

    #[test]
    fn every_prefix_of_every_kind_is_handled() {
        // No length of any record may panic, and every one short of the
        // whole record is an error.
        let recs = [
            bytes_of(&exec(1, 0, "/bin/x", &["x"])),
            bytes_of(&ForkRecord {
                header: header(EventKind::Fork, 1),
                child_tgid: 2,
                _pad: 0,
                child_start_ns: 7,
            }),
            bytes_of(&ExitRecord {
                header: header(EventKind::Exit, 1),
                exit_code: 0,
                _pad: 0,
            }),
            bytes_of(&connect(1, 1, 0)),
            tls(1, 1, 0, b"GET / HTTP/1.1"),
            sock(1, b"GET / HTTP/1.1"),
            bytes_of(&sensor_common::TlsBindRecord {
                header: header(EventKind::TlsBind, 1),
                conn: 1,
                fd: 3,
                _pad: 0,
            }),
            bytes_of(&blocked(1)),
        ];
        let kinds: Vec<u32> = recs.iter().map(|r| r[0].into()).collect();
        assert_eq!(kinds, (1..=8).collect::<Vec<_>>(), "one of each kind");
        for r in &recs {
            for len in 0..r.len() {
                assert!(decode(&r[..len]).is_err(), "kind {} at {len}", r[0]);
            }
            decode(r).unwrap();
        }
    }

    pub fn tls(tgid: u32, conn: u64, dir: u8, data: &[u8]) -> Vec<u8> {
        let hdr = TlsDataHeader {
            header: header(EventKind::TlsData, tgid),
            conn,
            len: data.len() as u64,
            captured: data.len() as u32,
            fd: -1,
            dir,
            lib: sensor_common::TLS_LIB_OPENSSL,
            _pad: [0; 6],
        };
        let mut b = bytes_of(&hdr);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn tls_records_carry_their_bytes() {
        let b = tls(5, 0xabc, 0, b"GET / HTTP/1.1\r\n");
        match decode(&b).unwrap() {
            Record::TlsData(t) => {
                assert_eq!(t.data, b"GET / HTTP/1.1\r\n");
                assert_eq!(t.hdr.conn, 0xabc);
            }
            other => panic!("{other:?}"),
        }
        // Ring-buffer padding after the bytes is fine.
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 3]);
        assert!(matches!(decode(&padded).unwrap(), Record::TlsData(t) if t.data.len() == 16));
        // A record whose length claim exceeds what it carries is an error.
        assert!(matches!(
            decode(&b[..b.len() - 1]).unwrap_err(),
            DecodeError::BadDataLength {
                captured: 16,
                carried: 15
            }
        ));
        for len in 0..b.len() {
            let _ = decode(&b[..len]);
        }
    }

    #[test]
    fn strings() {
        assert_eq!(c_str(b"curl\0\0junk"), "curl");
        assert_eq!(c_str(b"full"), "full");
        assert_eq!(
            argv(b"python3\0-c\0print(1)\0"),
            ["python3", "-c", "print(1)"]
        );
        assert!(argv(b"").is_empty());
    }
}
