//! Hash tags: hash only the part of a key between two marker bytes, as twemproxy does.

use std::fmt;

/// A two-byte hash tag such as `{}` or `$$` (the two bytes may be equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashTag {
    open: u8,
    close: u8,
}

impl HashTag {
    /// A tag from its opening and closing bytes.
    pub const fn new(open: u8, close: u8) -> HashTag {
        HashTag { open, close }
    }

    /// Parses a tag from a string of exactly two bytes (`"{}"`, `"$$"`); `None` otherwise.
    pub fn parse(s: &str) -> Option<HashTag> {
        match *s.as_bytes() {
            [open, close] => Some(HashTag { open, close }),
            _ => None,
        }
    }

    /// The opening byte.
    pub fn open(&self) -> u8 {
        self.open
    }

    /// The closing byte.
    pub fn close(&self) -> u8 {
        self.close
    }

    /// The part of `key` to hash: the bytes between the first `open` byte and the first
    /// `close` byte after it, when both exist and the span is non-empty; the whole key otherwise.
    #[inline]
    pub fn extract<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        if let Some(start) = key.iter().position(|&b| b == self.open) {
            let rest = &key[start + 1..];
            if let Some(len) = rest.iter().position(|&b| b == self.close)
                && len > 0
            {
                return &rest[..len];
            }
        }
        key
    }
}

impl fmt::Display for HashTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&[self.open, self.close]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn braces() -> HashTag {
        HashTag::new(b'{', b'}')
    }

    #[test]
    fn parse_needs_exactly_two_bytes() {
        assert_eq!(HashTag::parse("{}"), Some(braces()));
        assert_eq!(HashTag::parse("$$"), Some(HashTag::new(b'$', b'$')));
        assert_eq!(HashTag::parse(""), None);
        assert_eq!(HashTag::parse("{"), None);
        assert_eq!(HashTag::parse("{}}"), None);
        // One non-ASCII character is two bytes, and twemproxy would use those bytes.
        assert_eq!(HashTag::parse("é"), Some(HashTag::new(0xc3, 0xa9)));
        assert_eq!(braces().to_string(), "{}");
    }

    #[test]
    fn extracts_the_tagged_span() {
        let t = braces();
        assert_eq!(t.extract(b"user:{42}:name"), b"42");
        assert_eq!(t.extract(b"{a}{b}"), b"a");
        assert_eq!(t.extract(b"{{a}}"), b"{a");
        assert_eq!(t.extract(b"x{tag}"), b"tag");
    }

    #[test]
    fn falls_back_to_the_whole_key() {
        let t = braces();
        // empty tag
        assert_eq!(t.extract(b"{}x"), b"{}x");
        assert_eq!(t.extract(b"x{}"), b"x{}");
        // an empty first tag is not skipped for a later one
        assert_eq!(t.extract(b"{}{a}"), b"{}{a}");
        // no close
        assert_eq!(t.extract(b"{abc"), b"{abc");
        // close before open, and no close after the open
        assert_eq!(t.extract(b"}abc{"), b"}abc{");
        // open at the very end
        assert_eq!(t.extract(b"abc{"), b"abc{");
        assert_eq!(t.extract(b""), b"");
        assert_eq!(t.extract(b"plain"), b"plain");
    }

    #[test]
    fn equal_open_and_close() {
        let t = HashTag::new(b'$', b'$');
        assert_eq!(t.extract(b"a$b$c"), b"b");
        assert_eq!(t.extract(b"a$$c"), b"a$$c");
        assert_eq!(t.extract(b"a$b"), b"a$b");
    }
}
