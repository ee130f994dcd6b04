//! Content codings of kept bodies (RFC 9110 §8.4.1): a request or answer
//! to an LLM provider may be compressed (Codex sends zstd request bodies
//! when signed in with ChatGPT; JSON answers come gzip- or br-encoded to
//! clients that accept them, as Node's fetch and httpx do). Only kept
//! bodies are decoded (LLM calls), when their summary is read, into at
//! most the keep limit: the work is bounded by that output, and zstd
//! windows by the 8 MiB RFC 9659 allows HTTP. A body cut short decodes as
//! far as its bytes go, marked truncated; one that does not decode at
//! all is left as it was, marked truncated.

use std::{borrow::Cow, io::Read};

use super::stream::Kept;

/// Largest zstd window accepted (RFC 9659 §3: 8 MiB for HTTP).
const ZSTD_MAX_WINDOW: u64 = 8 << 20;

/// One coding's decoder over `input`, or None for identity and codings
/// the sensor does not know.
fn decoder<'a>(coding: &str, input: &'a [u8]) -> Option<Box<dyn Read + 'a>> {
    Some(match coding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(input)),
        // "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); some servers send
        // it raw.
        "deflate" if input.first().is_some_and(|b| b & 0x0f == 8) => {
            Box::new(flate2::read::ZlibDecoder::new(input))
        }
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(input)),
        "br" => Box::new(brotli_decompressor::Decompressor::new(input, 4096)),
        "zstd" => Box::new(
            ruzstd::decoding::StreamingDecoder::new_with_max_window_size(input, ZSTD_MAX_WINDOW)
                .ok()?,
        ),
        _ => return None,
    })
}

/// `kept` as its sender wrote it before `encoding` (a
/// `Content-Encoding` value, codings in the order applied), at most
/// `limit` bytes.
pub fn decode<'k>(kept: &'k Kept, encoding: Option<&str>, limit: usize) -> Cow<'k, Kept> {
    let Some(encoding) = encoding.filter(|_| !kept.bytes.is_empty()) else {
        return Cow::Borrowed(kept);
    };
    let codings: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .collect();
    if codings.is_empty() {
        return Cow::Borrowed(kept);
    }
    let mut body = Cow::Borrowed(kept);
    // Undone last coding first.
    for coding in codings.iter().rev() {
        let input = &body.bytes;
        let Some(d) = decoder(coding, input) else {
            // Unknown (or a zstd frame refused): what was captured stays
            // as it is, and the summary says it could not be read whole.
            let mut k = body.into_owned();
            k.truncated = true;
            return Cow::Owned(k);
        };
        let mut out = Vec::new();
        let read = d.take(limit as u64 + 1).read_to_end(&mut out);
        let over = out.len() > limit;
        out.truncate(limit);
        let truncated = body.truncated || over || read.is_err();
        body = Cow::Owned(Kept {
            bytes: out,
            truncated,
            ..Kept::default()
        });
    }
    body
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const JSON: &[u8] = br#"{"model":"gpt-e2e","usage":{"input_tokens":11,"output_tokens":7}}"#;

    fn kept(bytes: Vec<u8>) -> Kept {
        Kept {
            bytes,
            ..Kept::default()
        }
    }

    fn decoded(bytes: Vec<u8>, coding: Option<&str>, limit: usize) -> Kept {
        decode(&kept(bytes), coding, limit).into_owned()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn each_coding_decodes() {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(JSON).unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(JSON).unwrap();
        let mut zstd = Vec::new();
        ruzstd::encoding::compress(JSON, &mut zstd, ruzstd::encoding::CompressionLevel::Fastest);
        for (coding, bytes) in [
            ("gzip", gzip(JSON)),
            ("X-Gzip", gzip(JSON)),
            ("deflate", zlib.finish().unwrap()),
            ("deflate", raw.finish().unwrap()),
            ("zstd", zstd),
            // `brotli -c` of JSON (Debian's brotli 1.0.9).
            ("br", BR.to_vec()),
        ] {
            let k = kept(bytes);
            let d = decode(&k, Some(coding), 1 << 20);
            assert_eq!(
                String::from_utf8_lossy(&d.bytes),
                String::from_utf8_lossy(JSON),
                "{coding}"
            );
            assert!(!d.truncated, "{coding}");
        }
        // Identity and none leave the body as it is.
        let k = kept(JSON.to_vec());
        assert!(matches!(decode(&k, Some("identity"), 10), Cow::Borrowed(_)));
        assert!(matches!(decode(&k, None, 10), Cow::Borrowed(_)));
    }

    #[test]
    fn a_body_cut_short_decodes_as_far_as_it_goes() {
        let long: Vec<u8> = JSON.iter().cycle().take(100_000).copied().collect();
        let z = gzip(&long);
        let mut k = kept(z[..z.len() / 2].to_vec());
        k.truncated = true;
        let d = decode(&k, Some("gzip"), 1 << 20);
        assert!(d.truncated);
        assert!(d.bytes.starts_with(br#"{"model":"gpt-e2e""#));
        assert!(d.bytes.len() > 1000 && d.bytes.len() < long.len());
    }

    #[test]
    fn output_is_bounded_and_garbage_or_unknown_is_marked() {
        let zeros = gzip(&vec![0u8; 5 << 20]);
        let d = decoded(zeros, Some("gzip"), 4096);
        assert_eq!(d.bytes.len(), 4096);
        assert!(d.truncated);
        for coding in ["gzip", "zstd", "br", "compress"] {
            let d = decoded(b"not compressed at all".to_vec(), Some(coding), 4096);
            assert!(d.truncated, "{coding}");
        }
        // Two codings, applied gzip then gzip: undone in reverse.
        let d = decoded(gzip(&gzip(JSON)), Some("gzip, gzip"), 4096);
        assert_eq!(&d.bytes[..], JSON);
    }

    /// A zstd frame asking for a 1 GiB window is refused, not allocated.
    #[test]
    fn a_zstd_window_over_8_mib_is_refused() {
        // Frame header: magic, descriptor 0 (window descriptor follows,
        // no checksum, no content size), window descriptor 0xa8
        // (exponent 21 + 10 = 2^31... mantissa 0): 2 GiB.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00];
        let d = decoded(frame.to_vec(), Some("zstd"), 4096);
        assert!(d.truncated);
    }

    const BR: &[u8] = &[
        0x1f, 0x40, 0x00, 0x10, 0x14, 0xa1, 0xd2, 0x41, 0x36, 0x97, 0xfa, 0xb2, 0x06, 0x2d, 0x82,
        0xad, 0x3c, 0xc9, 0xe3, 0x0f, 0x7f, 0x13, 0x1d, 0xe3, 0x4c, 0x07, 0xc2, 0x6b, 0xdc, 0xd6,
        0x89, 0x66, 0x3e, 0x06, 0x3a, 0x61, 0x24, 0x25, 0x86, 0x1b, 0xf1, 0x49, 0xf6, 0xfd, 0x5a,
        0x5e, 0x08, 0x75, 0xc9, 0xc6, 0x69, 0xed, 0xf9, 0x60, 0x26, 0x9c, 0x21, 0x31, 0x03,
    ];
}
