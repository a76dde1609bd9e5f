//! Offset-addressed reassembly: bytes arrive at offsets, in any order,
//! possibly overlapping; the contiguous prefix is what parsers read. Used
//! for TCP streams (offset = sequence number relative to the stream start),
//! QUIC CRYPTO data and IP fragments.
//!
//! Bounded: at most `max_bytes` of buffer and `max_ranges` disjoint pieces.
//! The buffer is kept between uses (see [`Pool`]), so steady-state traffic
//! does not allocate.

/// Why data was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapHit {
    /// The byte cap.
    Bytes,
    /// The cap on disjoint pieces.
    Ranges,
}

#[derive(Debug, Default)]
/// Bytes at stream offsets, with the ranges received.
pub struct Reassembly {
    buf: Vec<u8>,
    /// Disjoint, sorted, non-adjacent received ranges `[start, end)`.
    ranges: Vec<(u32, u32)>,
    /// Stream offset of `buf[0]` (bytes before it were consumed).
    base: u64,
}

impl Reassembly {
    /// Forget everything, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ranges.clear();
        self.base = 0;
    }

    /// Stream offset of the first unconsumed byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Store `data` at stream offset `off`. Bytes before `base` (already
    /// consumed) are dropped; bytes already held are kept as first received.
    pub fn insert(
        &mut self,
        off: u64,
        data: &[u8],
        max_bytes: usize,
        max_ranges: usize,
    ) -> Result<(), CapHit> {
        let (mut off, mut data) = (off, data);
        if off < self.base {
            let skip = (self.base - off) as usize;
            if skip >= data.len() {
                return Ok(());
            }
            data = &data[skip..];
            off = self.base;
        }
        if data.is_empty() {
            return Ok(());
        }
        let start = off - self.base;
        let end = start + data.len() as u64;
        if end > max_bytes as u64 {
            return Err(CapHit::Bytes);
        }
        let (start, end) = (start as u32, end as u32);
        // Would this add a range beyond the cap?
        let touching = self
            .ranges
            .iter()
            .filter(|r| r.1 >= start && r.0 <= end)
            .count();
        if touching == 0 && self.ranges.len() >= max_ranges {
            return Err(CapHit::Ranges);
        }
        // In order, after everything held: append (the common case).
        if start as usize == self.buf.len() && self.ranges.last().is_none_or(|r| r.1 == start) {
            self.buf.extend_from_slice(data);
            match self.ranges.last_mut() {
                Some(r) => r.1 = end,
                None => self.ranges.push((start, end)),
            }
            return Ok(());
        }
        if self.buf.len() < end as usize {
            self.buf.resize(end as usize, 0);
        }
        // Copy only the gaps so earlier data wins on overlap (first copy
        // is what a receiving stack would have kept too, in most stacks).
        let mut cur = start;
        for &(rs, re) in self.ranges.iter().filter(|r| r.1 > start && r.0 < end) {
            if rs > cur {
                let s = (cur - start) as usize;
                let e = (rs - start) as usize;
                self.buf[cur as usize..rs as usize].copy_from_slice(&data[s..e]);
            }
            cur = cur.max(re);
        }
        if cur < end {
            let s = (cur - start) as usize;
            self.buf[cur as usize..end as usize].copy_from_slice(&data[s..]);
        }
        // Merge the new range in.
        let mut ns = start;
        let mut ne = end;
        self.ranges.retain(|&(rs, re)| {
            if re >= ns && rs <= ne {
                ns = ns.min(rs);
                ne = ne.max(re);
                false
            } else {
                true
            }
        });
        let at = self.ranges.partition_point(|r| r.0 < ns);
        self.ranges.insert(at, (ns, ne));
        Ok(())
    }

    /// The bytes received without a gap from the first unconsumed byte.
    pub fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, e)) => &self.buf[..e as usize],
            _ => &[],
        }
    }

    /// Total bytes held (contiguous or not).
    pub fn held(&self) -> usize {
        self.ranges.iter().map(|r| (r.1 - r.0) as usize).sum()
    }

    /// Drop `n` bytes from the front of the contiguous prefix.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.contiguous().len()) as u32;
        if n == 0 {
            return;
        }
        self.buf.drain(..n as usize);
        for r in &mut self.ranges {
            r.0 = r.0.saturating_sub(n);
            r.1 -= n;
        }
        self.ranges.retain(|r| r.1 > r.0);
        self.base += u64::from(n);
    }
}

/// Reassembly buffers kept for reuse, so a new flow takes a buffer that an
/// old one gave back instead of allocating.
#[derive(Debug, Default)]
pub struct Pool {
    // Boxed because flows hold them boxed (a flow without a buffer stays
    // small); moving the box in and out of the pool does not allocate.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Reassembly>>,
    /// Most buffers kept idle.
    pub keep: usize,
}

impl Pool {
    /// A pool keeping at most `keep` idle buffers.
    pub fn new(keep: usize) -> Pool {
        Pool {
            free: Vec::new(),
            keep,
        }
    }
    /// An empty buffer, reused when one is idle.
    pub fn take(&mut self) -> Box<Reassembly> {
        self.free.pop().unwrap_or_default()
    }
    /// Return a buffer (emptied here).
    pub fn give(&mut self, mut r: Box<Reassembly>) {
        if self.free.len() < self.keep {
            r.clear();
            self.free.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_and_overlap() {
        let mut r = Reassembly::default();
        r.insert(5, b"56789", 100, 8).unwrap();
        assert_eq!(r.contiguous(), b"");
        r.insert(0, b"012", 100, 8).unwrap();
        assert_eq!(r.contiguous(), b"012");
        r.insert(2, b"XXXX", 100, 8).unwrap(); // overlaps: first copy wins
        assert_eq!(
            r.contiguous(),
            b"0123456789"
                .iter()
                .map(|&c| if c == b'3' || c == b'4' { b'X' } else { c })
                .collect::<Vec<_>>()
        );
        r.consume(4);
        assert_eq!(r.base(), 4);
        assert_eq!(r.contiguous(), b"X56789");
        r.insert(0, b"0123456", 100, 8).unwrap(); // retransmission of consumed bytes
        assert_eq!(r.contiguous(), b"X56789");
    }

    #[test]
    fn caps() {
        let mut r = Reassembly::default();
        assert_eq!(r.insert(90, b"0123456789ab", 100, 8), Err(CapHit::Bytes));
        for i in 0..3 {
            r.insert(i * 10 + 1, b"x", 100, 3).unwrap();
        }
        assert_eq!(r.insert(50, b"y", 100, 3), Err(CapHit::Ranges));
        r.insert(2, b"zzzzzzzz", 100, 3).unwrap(); // joins two ranges: allowed
    }

    proptest! {
        /// Any arrival order of pieces of a message reassembles it.
        #[test]
        fn any_order_reassembles(msg in prop::collection::vec(any::<u8>(), 1..300), cuts in prop::collection::vec(0usize..300, 0..12), seed in any::<u64>()) {
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % msg.len()).collect();
            points.push(0);
            points.push(msg.len());
            points.sort();
            points.dedup();
            let mut pieces: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            // deterministic shuffle, plus a duplicate of the first piece
            let mut s = seed;
            for i in (1..pieces.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                pieces.swap(i, (s >> 33) as usize % (i + 1));
            }
            pieces.push(pieces[0]);
            let mut r = Reassembly::default();
            for (a, b) in pieces {
                r.insert(a as u64, &msg[a..b], 4096, 64).unwrap();
            }
            prop_assert_eq!(r.contiguous(), &msg[..]);
        }
    }
}
