//! A small deterministic tar writer.
//!
//! Written by hand rather than with the `tar` crate because test layers need
//! entries that a well-behaved writer refuses to produce (`../escape`,
//! absolute names, hardlinks pointing outside the archive) and exact control
//! over how long names are encoded (PAX `path` records and GNU `L` entries).
//! Every header carries the caller's mtime, uid and gid, so the same input
//! always gives the same bytes.

use std::collections::BTreeMap;

/// What a tar entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    /// A hardlink to an earlier entry of the same archive (its tar name).
    Hardlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// How a name longer than the 100-byte ustar field is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LongName {
    /// A PAX extended header with a `path` record (what Go's archive/tar writes).
    #[default]
    Pax,
    /// A GNU `././@LongLink` entry of type `L` (what GNU tar writes).
    Gnu,
}

/// One entry of a layer tarball.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The name exactly as written into the archive (no normalisation).
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// Extended attributes, written as PAX `SCHILY.xattr.<name>` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub long_name: LongName,
}

impl Entry {
    pub fn new(path: impl Into<String>, kind: Kind, mode: u32, mtime: u64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
            long_name: LongName::Pax,
        }
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn xattr(mut self, name: &str, value: &[u8]) -> Entry {
        self.xattrs.insert(name.to_string(), value.to_vec());
        self
    }

    pub fn long_name(mut self, how: LongName) -> Entry {
        self.long_name = how;
        self
    }
}

const BLOCK: usize = 512;

/// Writes `entries` in the given order as a tar stream, ending with the two
/// zero blocks.
pub fn write_tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write_entry(&mut out, e);
    }
    out.extend_from_slice(&[0u8; BLOCK * 2]);
    out
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    let mut name = e.path.clone();
    if e.kind == Kind::Dir && !name.ends_with('/') {
        name.push('/');
    }
    let link = match &e.kind {
        Kind::Symlink(t) | Kind::Hardlink(t) => t.clone(),
        _ => String::new(),
    };

    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let name_fits = name.len() <= 100;
    if !name_fits {
        match e.long_name {
            LongName::Pax => pax.push(("path".into(), name.as_bytes().to_vec())),
            LongName::Gnu => {
                let mut data = name.as_bytes().to_vec();
                data.push(0);
                let h = header("././@LongLink", b'L', 0o644, 0, 0, 0, data.len() as u64, "", (0, 0));
                out.extend_from_slice(&h);
                push_data(out, &data);
            }
        }
    }
    if link.len() > 100 {
        pax.push(("linkpath".into(), link.as_bytes().to_vec()));
    }
    for (k, v) in &e.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        let data = pax_records(&pax);
        let pax_name = format!("PaxHeaders/{}", truncate(&name, 80));
        let h = header(&pax_name, b'x', 0o644, 0, 0, e.mtime, data.len() as u64, "", (0, 0));
        out.extend_from_slice(&h);
        push_data(out, &data);
    }

    let (typeflag, size, dev) = match &e.kind {
        Kind::File(d) => (b'0', d.len() as u64, (0, 0)),
        Kind::Dir => (b'5', 0, (0, 0)),
        Kind::Symlink(_) => (b'2', 0, (0, 0)),
        Kind::Hardlink(_) => (b'1', 0, (0, 0)),
        Kind::Char(ma, mi) => (b'3', 0, (*ma, *mi)),
        Kind::Block(ma, mi) => (b'4', 0, (*ma, *mi)),
        Kind::Fifo => (b'6', 0, (0, 0)),
    };
    let h = header(
        truncate(&name, 100),
        typeflag,
        e.mode,
        e.uid,
        e.gid,
        e.mtime,
        size,
        truncate(&link, 100),
        dev,
    );
    out.extend_from_slice(&h);
    if let Kind::File(d) = &e.kind {
        push_data(out, d);
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// PAX records: `"<len> <key>=<value>\n"` where len counts the whole record.
fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.extend(std::iter::repeat_n(0u8, pad));
}

#[allow(clippy::too_many_arguments)]
fn header(
    name: &str,
    typeflag: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    size: u64,
    link: &str,
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put(&mut h[0..100], name.as_bytes());
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], u64::from(uid));
    octal(&mut h[116..124], u64::from(gid));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    put(&mut h[157..257], link.as_bytes());
    put(&mut h[257..263], b"ustar\0");
    put(&mut h[263..265], b"00");
    let (uname, gname) = (owner_name(uid), owner_name(gid));
    put(&mut h[265..297], uname.as_bytes());
    put(&mut h[297..329], gname.as_bytes());
    octal(&mut h[329..337], u64::from(dev.0));
    octal(&mut h[337..345], u64::from(dev.1));
    // Checksum: sum of all bytes with the checksum field read as spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn owner_name(id: u32) -> &'static str {
    match id {
        0 => "root",
        1000 => "berth",
        65534 => "nobody",
        _ => "",
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    assert!(
        s.len() <= width,
        "value {value} too large for a tar field of {width} digits"
    );
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_records(&[("path".into(), b"a".to_vec())]);
        // "9 path=a\n" is 9 bytes long.
        assert_eq!(r, b"9 path=a\n");
        let long = "x".repeat(95);
        let r = pax_records(&[("path".into(), long.as_bytes().to_vec())]);
        let text = String::from_utf8(r.clone()).unwrap();
        let len: usize = text.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn header_checksum_and_fields() {
        let h = header("a/b", b'0', 0o4755, 1000, 1000, 1_700_000_000, 5, "", (0, 0));
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h;
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(stored, sum);
        assert_eq!(&h[100..107], b"0004755");
        assert_eq!(&h[257..263], b"ustar\0");
    }

    #[test]
    fn long_names_and_padding() {
        let long = format!("{}/file", "d".repeat(120));
        let t = write_tar(&[
            Entry::new(long.clone(), Kind::File(b"hi".to_vec()), 0o644, 0),
            Entry::new(long.clone(), Kind::File(b"hi".to_vec()), 0o644, 0).long_name(LongName::Gnu),
        ]);
        assert_eq!(t.len() % BLOCK, 0);
        let text = String::from_utf8_lossy(&t);
        assert!(text.contains(&format!("path={long}\n")));
        assert!(text.contains("././@LongLink"));
    }

    #[test]
    fn deterministic() {
        let e = vec![
            Entry::new("x", Kind::File(vec![1, 2, 3]), 0o640, 7).owner(1000, 1000),
            Entry::new("d", Kind::Dir, 0o755, 7).xattr("user.berth", b"test"),
        ];
        assert_eq!(write_tar(&e), write_tar(&e));
    }
}
