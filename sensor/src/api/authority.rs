//! Stock gRPC clients on the unix socket: a valid `:authority` for them.
//!
//! gRPC C-core (Python's `grpcio`), grpc-java and older grpcurl send the
//! socket path, raw or percent-encoded, as `:authority` on a `unix:`
//! channel. The server's HTTP/2 stack (h2) refuses such a request with
//! `RST_STREAM PROTOCOL_ERROR` before any service sees it, and offers no
//! switch for it (hyperium/h2#487 is still open). A local caller has no
//! host to name, so each connection from the socket passes through
//! [`normalise`]: the client's header blocks are decoded, an `:authority`
//! that is not a valid URI authority becomes `localhost` (what grpc-go and
//! Kubernetes send over unix sockets), and every block is encoded again
//! with one HPACK encoder, so the server's decoder sees one consistent
//! stream. Everything else, and all the server's bytes, pass unchanged.
//!
//! Bytes it cannot follow (no client preface, an HPACK error, a header
//! block over [`MAX_BLOCK`]) are passed on as they came and the rest of the
//! connection is copied unchanged: h2 judges them as it would have.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use loona_hpack::{Decoder, Encoder};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf},
    net::UnixStream,
};
use tonic::transport::server::{Connected, UdsConnectInfo};

use crate::http::h2::{CONTINUATION, END_HEADERS, END_STREAM, HEADERS, PADDED, PREFACE, PRIORITY};

/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may have: frames written at
/// most this long are valid whatever the server advertised.
const MAX_FRAME: usize = 16_384;
/// Larger header blocks are not rewritten (h2's own header list limit is
/// 16 KiB by default, so such a request fails there anyway).
pub const MAX_BLOCK: usize = 1 << 20;
/// What a local caller's invalid authority becomes.
const LOCAL_AUTHORITY: &[u8] = b"localhost";

/// A unix-socket connection as tonic serves it: the server's side of a
/// pipe whose client side is fed by [`normalise`], with the peer's
/// credentials of the real socket (the control RPCs check them).
pub struct Normalised {
    io: DuplexStream,
    info: UdsConnectInfo,
}

/// Puts [`rewrite`] between `stream` and the server: the returned
/// connection is what tonic serves. The copying tasks end with the
/// connection.
pub fn normalise(stream: UnixStream) -> Normalised {
    let info = stream.connect_info();
    let (served, pump) = tokio::io::duplex(64 * 1024);
    let (from_client, mut to_client) = stream.into_split();
    let (mut from_server, to_server) = tokio::io::split(pump);
    tokio::spawn(async move {
        let _ = rewrite(from_client, to_server).await;
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    });
    Normalised { io: served, info }
}

impl Connected for Normalised {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Normalised {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Normalised {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One frame's 9-byte header, parsed.
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(b: &[u8; 9]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.len).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

/// The client's bytes to the server, header blocks re-encoded with valid
/// authorities. Returns at the client's end of stream or an I/O error.
async fn rewrite<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    let n = read_full(&mut from, &mut preface).await?;
    to.write_all(&preface[..n]).await?;
    if preface[..n] != *PREFACE {
        return pass_rest(from, to).await;
    }
    let mut blocks = Blocks::default();
    loop {
        let mut head = [0u8; 9];
        let n = read_full(&mut from, &mut head).await?;
        if n < head.len() {
            to.write_all(&head[..n]).await?;
            return to.shutdown().await;
        }
        let first = FrameHead::parse(&head);
        let mut payload = vec![0u8; first.len];
        from.read_exact(&mut payload).await?;
        if first.kind != HEADERS {
            to.write_all(&head).await?;
            to.write_all(&payload).await?;
            continue;
        }
        // The block goes on in CONTINUATION frames until END_HEADERS.
        let mut raw = [&head[..], &payload[..]].concat();
        let mut fragments = vec![payload];
        let mut flags = first.flags;
        while flags & END_HEADERS == 0 {
            let mut h = [0u8; 9];
            from.read_exact(&mut h).await?;
            let next = FrameHead::parse(&h);
            let mut p = vec![0u8; next.len];
            from.read_exact(&mut p).await?;
            raw.extend_from_slice(&h);
            raw.extend_from_slice(&p);
            if next.kind != CONTINUATION || next.stream != first.stream || raw.len() > MAX_BLOCK {
                // Not a header block h2 would take either: its verdict.
                to.write_all(&raw).await?;
                return pass_rest(from, to).await;
            }
            flags = next.flags;
            fragments.push(p);
        }
        match blocks.reencode(&first, &fragments) {
            Some(frames) => to.write_all(&frames).await?,
            None => {
                to.write_all(&raw).await?;
                return pass_rest(from, to).await;
            }
        }
    }
}

/// Reads until `buf` is full or the stream ends; how much was read.
async fn read_full<R: AsyncRead + Unpin>(from: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

async fn pass_rest<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::io::copy(&mut from, &mut to).await?;
    to.shutdown().await
}

/// The HPACK contexts of one connection: the client's encoder, mirrored by
/// the decoder, and the encoder whose output the server's decoder mirrors.
#[derive(Default)]
struct Blocks {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl Blocks {
    /// The frames that carry the block of `first` (a HEADERS frame whose
    /// payload is `fragments[0]`, continued by the rest) with its authority
    /// made valid; None when the block does not decode.
    fn reencode(&mut self, first: &FrameHead, fragments: &[Vec<u8>]) -> Option<Vec<u8>> {
        let head = &fragments[0];
        let mut start = 0;
        let mut end = head.len();
        if first.flags & PADDED != 0 {
            let pad = usize::from(*head.first()?);
            start = 1;
            end = end.checked_sub(pad)?;
        }
        let priority = if first.flags & PRIORITY != 0 {
            let p = head.get(start..start + 5)?.to_vec();
            start += 5;
            Some(p)
        } else {
            None
        };
        let mut block = head.get(start..end)?.to_vec();
        for f in &fragments[1..] {
            block.extend_from_slice(f);
        }
        let mut headers = self.decoder.decode(&block).ok()?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" && !valid_authority(value) {
                *value = LOCAL_AUTHORITY.to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        Some(frames(first, priority.as_deref(), &encoded))
    }
}

/// What h2 takes as an authority: the same parser it applies.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A HEADERS frame (END_STREAM and priority kept, padding dropped) and as
/// many CONTINUATION frames as `block` needs at [`MAX_FRAME`] bytes each.
fn frames(first: &FrameHead, priority: Option<&[u8]>, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 32);
    let room = MAX_FRAME - priority.map_or(0, <[u8]>::len);
    let (head, mut rest) = block.split_at(block.len().min(room));
    let mut flags = first.flags & END_STREAM;
    if priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    FrameHead {
        len: head.len() + priority.map_or(0, <[u8]>::len),
        kind: HEADERS,
        flags,
        stream: first.stream,
    }
    .write(&mut out);
    out.extend_from_slice(priority.unwrap_or_default());
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = tail;
        FrameHead {
            len: chunk.len(),
            kind: CONTINUATION,
            flags: if rest.is_empty() { END_HEADERS } else { 0 },
            stream: first.stream,
        }
        .write(&mut out);
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's connection: preface, a SETTINGS frame, then `blocks` as
    /// HEADERS frames (one per stream), the last one split in two
    /// CONTINUATIONs when `split` is set.
    fn client_bytes(blocks: &[Vec<u8>], split: bool) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        FrameHead {
            len: 0,
            kind: 0x4,
            flags: 0,
            stream: 0,
        }
        .write(&mut out);
        for (i, b) in blocks.iter().enumerate() {
            let stream = 1 + 2 * i as u32;
            if split && i + 1 == blocks.len() {
                let (a, c) = b.split_at(b.len() / 2);
                for (kind, flags, part) in [(HEADERS, 0, a), (CONTINUATION, END_HEADERS, c)] {
                    FrameHead {
                        len: part.len(),
                        kind,
                        flags,
                        stream,
                    }
                    .write(&mut out);
                    out.extend_from_slice(part);
                }
            } else {
                FrameHead {
                    len: b.len(),
                    kind: HEADERS,
                    flags: END_HEADERS,
                    stream,
                }
                .write(&mut out);
                out.extend_from_slice(b);
            }
        }
        out
    }

    fn request(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/sensor.v1.Sensor/Status"),
            (":authority", authority),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    /// Runs [`rewrite`] over `input` and decodes the header blocks of what
    /// it wrote, as the server would.
    async fn rewritten(input: Vec<u8>) -> (Vec<u8>, Vec<Vec<(Vec<u8>, Vec<u8>)>>) {
        let mut out = Vec::new();
        rewrite(&input[..], &mut out).await.unwrap();
        assert_eq!(&out[..24], PREFACE);
        let mut decoder = Decoder::new();
        let mut blocks = Vec::new();
        let (mut at, mut block) = (24, Vec::new());
        while at < out.len() {
            let h = FrameHead::parse(out[at..at + 9].try_into().unwrap());
            let payload = &out[at + 9..at + 9 + h.len];
            assert!(h.len <= MAX_FRAME);
            if h.kind == HEADERS || h.kind == CONTINUATION {
                block.extend_from_slice(payload);
                if h.flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            at += 9 + h.len;
        }
        assert_eq!(at, out.len());
        (out, blocks)
    }

    fn authority(block: &[(Vec<u8>, Vec<u8>)]) -> &[u8] {
        &block.iter().find(|(n, _)| n == b":authority").unwrap().1
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost() {
        // As grpcio sends it on `unix:///run/sensor/sensor.sock`: the
        // percent-encoded path, with the client's own dynamic table in use
        // across two requests.
        let mut client = Encoder::new();
        let path = "%2Frun%2Fsensor%2Fsensor.sock";
        let req = request(path);
        let one = client.encode(req.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let two = client.encode(req.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        assert!(
            two.len() < one.len(),
            "the second block refers to the table"
        );
        assert!(!valid_authority(path.as_bytes()));
        let (_, blocks) = rewritten(client_bytes(&[one, two], true)).await;
        assert_eq!(blocks.len(), 2);
        for b in &blocks {
            assert_eq!(authority(b), b"localhost");
            let rest: Vec<_> = b.iter().filter(|(n, _)| n != b":authority").collect();
            let want: Vec<_> = req.iter().filter(|(n, _)| n != b":authority").collect();
            assert_eq!(rest, want);
        }
        // grpc-java's raw path.
        let raw = "/run/sensor/sensor.sock";
        let b = Encoder::new().encode(
            request(raw)
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let (_, blocks) = rewritten(client_bytes(&[b], false)).await;
        assert_eq!(authority(&blocks[0]), b"localhost");
    }

    #[tokio::test]
    async fn valid_authorities_and_other_frames_pass_unchanged() {
        let block = Encoder::new().encode(
            request("localhost:50051")
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let mut input = client_bytes(&[block], false);
        // A DATA frame after the headers.
        FrameHead {
            len: 3,
            kind: 0x0,
            flags: END_STREAM,
            stream: 1,
        }
        .write(&mut input);
        input.extend_from_slice(b"abc");
        let (out, blocks) = rewritten(input.clone()).await;
        assert_eq!(authority(&blocks[0]), b"localhost:50051");
        assert!(out.ends_with(&input[input.len() - 12..]));
    }

    #[tokio::test]
    async fn padding_and_priority_are_handled() {
        let block = Encoder::new().encode(
            request("/x.sock")
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        let mut input = PREFACE.to_vec();
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0, 0, 0, 3, 16]);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0]);
        FrameHead {
            len: payload.len(),
            kind: HEADERS,
            flags: END_HEADERS | PADDED | PRIORITY | END_STREAM,
            stream: 1,
        }
        .write(&mut input);
        input.extend_from_slice(&payload);
        let mut out = Vec::new();
        rewrite(&input[..], &mut out).await.unwrap();
        let h = FrameHead::parse(out[24..33].try_into().unwrap());
        assert_eq!(h.flags, END_HEADERS | PRIORITY | END_STREAM);
        assert_eq!(&out[33..38], &[0, 0, 0, 3, 16]);
        let headers = Decoder::new().decode(&out[38..33 + h.len]).unwrap();
        assert_eq!(authority(&headers), b"localhost");
    }

    #[tokio::test]
    async fn what_it_cannot_follow_passes_as_it_came() {
        // Not HTTP/2 at all.
        let mut out = Vec::new();
        rewrite(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &mut out)
            .await
            .unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // An index the client's table does not have, then more bytes.
        let mut input = client_bytes(&[vec![0x80 | 120]], false);
        input.extend_from_slice(b"tail");
        let mut out = Vec::new();
        rewrite(&input[..], &mut out).await.unwrap();
        assert_eq!(out, input);
        // A long block goes out in CONTINUATIONs of at most MAX_FRAME.
        let big = "a".repeat(40_000);
        let mut req = request("/x.sock");
        req.push((b"x-big".to_vec(), big.clone().into_bytes()));
        let block = Encoder::new().encode(req.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let (out, blocks) = rewritten(client_bytes(&[block], false)).await;
        assert!(out.len() > 40_000);
        assert_eq!(authority(&blocks[0]), b"localhost");
    }
}
