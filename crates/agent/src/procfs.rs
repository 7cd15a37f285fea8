//! Reading /proc and /sys files cheaply: each read refills one reused
//! buffer, and the parsers borrow from it, so a steady tick allocates
//! nothing here.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The file system roots the collectors read from. `root` is `/` on the
/// host; an agent in a container reads the host's through a bind mount
/// (`--root-path /host`).
#[derive(Debug, Clone)]
pub struct Roots {
    pub root: PathBuf,
}

impl Roots {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Roots { root: root.into() }
    }

    /// `root` joined with an absolute path (`/proc/stat`).
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// A file reader with one reused buffer.
#[derive(Debug, Default)]
pub struct Reader {
    buf: String,
}

impl Reader {
    /// Reads the whole file into the buffer and returns it.
    pub fn read(&mut self, path: &Path) -> std::io::Result<&str> {
        self.buf.clear();
        std::fs::File::open(path)?.read_to_string(&mut self.buf)?;
        Ok(&self.buf)
    }
}

/// Decodes the octal escapes (`\040` for a space) that /proc/self/mounts
/// uses in device names and mount points.
pub fn unescape_octal(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape_octal("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_octal("/plain"), "/plain");
        assert_eq!(unescape_octal("/a\\134b"), "/a\\b");
        assert_eq!(unescape_octal("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn reader_reuses_its_buffer() {
        let dir = std::env::temp_dir().join(format!("sonde-agent-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "first file, longer").unwrap();
        std::fs::write(&b, "second").unwrap();
        let mut r = Reader::default();
        assert_eq!(r.read(&a).unwrap(), "first file, longer");
        assert_eq!(r.read(&b).unwrap(), "second");
        assert!(r.read(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
