//! A minimal writer of the cpio "newc" format, the one the kernel unpacks
//! as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//! Written here rather than staged on disk for `cpio -o`: entries get
//! uid/gid 0 and mtime 0 whatever the host files are (reproducible archives),
//! and device nodes need no mknod on the host. The format is ~20 lines.

use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

#[derive(Default)]
pub struct Archive {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Archive {
    /// A directory and its missing parents (each written once).
    pub fn dir(&mut self, path: &str, perm: u32) {
        let mut p = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if !p.is_empty() {
                p.push('/');
            }
            p.push_str(c);
            if self.dirs.insert(p.clone()) {
                let name = p.clone();
                self.entry(&name, S_IFDIR | perm, 2, (0, 0), &[]);
            }
        }
    }

    /// A regular file; its parent directories must have been added.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent, 0o755);
        }
        self.entry(path, S_IFREG | perm, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).expect("initramfs member under 4 GiB"),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0, // check (only for the "070702" crc variant)
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_header_name_and_data_are_four_byte_aligned() {
        let mut a = Archive::default();
        a.file("ab/c", 0o644, b"hello");
        let out = a.finish();
        // "ab" directory first, then the file.
        assert!(out.starts_with(b"070701"));
        let file = out.windows(5).position(|w| w == b"ab/c\0").unwrap();
        let header = file - 110;
        assert_eq!(&out[header..header + 6], b"070701");
        // filesize field (7th) is 5; namesize (12th) is 5 with the NUL.
        assert_eq!(&out[header + 6 + 6 * 8..header + 6 + 7 * 8], b"00000005");
        assert_eq!(&out[header + 6 + 11 * 8..header + 6 + 12 * 8], b"00000005");
        let data = (file + 5).next_multiple_of(4);
        assert_eq!(&out[data..data + 5], b"hello");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn directories_are_written_once() {
        let mut a = Archive::default();
        a.dir("usr/lib", 0o755);
        a.file("usr/lib/x", 0o644, b"");
        let out = a.finish();
        let count = out.windows(8).filter(|w| *w == b"usr/lib\0").count();
        assert_eq!(count, 1);
    }
}
