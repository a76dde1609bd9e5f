//! Zero-copy views over packet bytes, one module per protocol family, in
//! the style of smoltcp's `wire`: every read is checked, nothing panics on
//! short or hostile input, and nothing is copied.

pub mod emit;
pub mod ip;
pub mod l4;
pub mod link;
pub mod tunnel;

/// A checked cursor over bytes. Every read returns `None` past the end.
#[derive(Clone, Copy, Debug)]
pub struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    /// A reader at the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Rd { b, at: 0 }
    }
    /// Bytes read so far.
    pub fn pos(&self) -> usize {
        self.at
    }
    /// Bytes left.
    pub fn left(&self) -> usize {
        self.b.len() - self.at
    }
    /// What is left, unread.
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.at..]
    }
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        let s = self.take(2)?;
        Some(u16::from_be_bytes([s[0], s[1]]))
    }
    /// A big-endian 24-bit integer.
    pub fn u24(&mut self) -> Option<u32> {
        let s = self.take(3)?;
        Some(u32::from_be_bytes([0, s[0], s[1], s[2]]))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    /// Skip `n` bytes.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    /// A QUIC variable-length integer (RFC 9000 §16).
    pub fn varint(&mut self) -> Option<u64> {
        let first = *self.b.get(self.at)?;
        let len = 1usize << (first >> 6);
        let s = self.take(len)?;
        let mut v = u64::from(first & 0x3f);
        for &x in &s[1..] {
            v = (v << 8) | u64::from(x);
        }
        Some(v)
    }
    /// A one-byte-length-prefixed vector (TLS `opaque<0..255>`).
    pub fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    /// A two-byte-length-prefixed vector (TLS `opaque<0..2^16-1>`).
    pub fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Rd::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(Rd::new(&[0x40, 0x25]).varint(), Some(0x25));
        assert_eq!(Rd::new(&[0x80, 0, 0, 1]).varint(), Some(1));
        assert_eq!(Rd::new(&[0xc0, 0, 0]).varint(), None);
        assert_eq!(Rd::new(&[5, 1]).vec8(), None);
    }
}
