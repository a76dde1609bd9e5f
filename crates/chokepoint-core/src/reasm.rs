//! Offset-addressed reassembly: bytes arrive at offsets, in any order,
//! possibly overlapping; the contiguous prefix is what parsers read. Used
//! for TCP streams (offset = sequence number relative to the stream start),
//! QUIC CRYPTO data and IP fragments.
//!
//! Bounded: at most `max_bytes` of stream window and `max_ranges` disjoint
//! pieces. Memory follows the bytes held, never the offsets: the contiguous
//! prefix is one buffer and each piece beyond a gap is its own allocation
//! sized to its data, so a sender choosing a far offset costs only what it
//! sends. The prefix buffer is kept between uses (see [`Pool`]), so
//! steady-state traffic does not allocate.

/// Why data was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapHit {
    /// The byte cap (the data ends beyond the window).
    Bytes,
    /// The cap on disjoint pieces.
    Ranges,
    /// The memory budget shared by all buffers of a [`Pool`].
    Budget,
}

#[derive(Debug, Default)]
/// Bytes at stream offsets, with the ranges received.
pub struct Reassembly {
    /// The contiguous prefix from `base`.
    buf: Vec<u8>,
    /// Pieces beyond a gap: sorted, disjoint, not touching each other nor
    /// the prefix; `(start relative to base, bytes)`.
    pieces: Vec<(u32, Vec<u8>)>,
    /// Stream offset of `buf[0]` (bytes before it were consumed).
    base: u64,
    /// What the pool last counted for this buffer in its budget.
    counted: usize,
}

impl Reassembly {
    /// Forget everything, keeping the prefix allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pieces.clear();
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
        // Bytes inside the prefix are held already: first copy wins.
        let held = self.buf.len() as u64;
        if end <= held {
            return Ok(());
        }
        if start < held {
            data = &data[(held - start) as usize..];
        }
        let (start, end) = (start.max(held) as u32, end as u32);
        // In order, nothing beyond a gap: append (the common case).
        if start as usize == self.buf.len() && self.pieces.is_empty() {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        // Pieces this one overlaps or touches: indices `lo..hi`.
        let lo = self.pieces.partition_point(|p| piece_end(p) < start);
        let hi = self.pieces.partition_point(|p| p.0 <= end);
        let joins_prefix = start as usize == self.buf.len();
        let ranges = self.pieces.len() + usize::from(!self.buf.is_empty());
        if lo == hi && !joins_prefix && ranges >= max_ranges {
            return Err(CapHit::Ranges);
        }
        let ns = if lo < hi {
            start.min(self.pieces[lo].0)
        } else {
            start
        };
        let ne = if lo < hi {
            end.max(piece_end(&self.pieces[hi - 1]))
        } else {
            end
        };
        // One allocation sized to the merged piece; held pieces win over
        // the new data where they overlap.
        let mut merged = Vec::with_capacity((ne - ns) as usize);
        let mut cur = ns;
        for (ps, pd) in self.pieces.drain(lo..hi) {
            if ps > cur {
                let from = cur.max(start);
                merged.extend_from_slice(&data[(from - start) as usize..(ps - start) as usize]);
            }
            merged.extend_from_slice(&pd);
            cur = ps + pd.len() as u32;
        }
        if cur < ne {
            let from = cur.max(start);
            merged.extend_from_slice(&data[(from - start) as usize..]);
        }
        if ns as usize == self.buf.len() {
            self.buf.extend_from_slice(&merged);
        } else {
            self.pieces.insert(lo, (ns, merged));
        }
        Ok(())
    }

    /// Does `data` at stream offset `off` cover bytes held already with
    /// different ones? With `replace`, the new bytes take their place (the
    /// last copy wins); bytes not held yet are left to [`Reassembly::insert`].
    /// Allocates nothing: the held bytes are rewritten where they lie.
    pub fn overlay(&mut self, off: u64, data: &[u8], replace: bool) -> bool {
        let end = off + data.len() as u64;
        if end <= self.base {
            return false;
        }
        let mut conflict = false;
        let mut one = |held: &mut [u8], at: u64| {
            // `held` starts at stream offset `at`.
            let from = off.max(at);
            let to = end.min(at + held.len() as u64);
            if from >= to {
                return;
            }
            let h = &mut held[(from - at) as usize..(to - at) as usize];
            let d = &data[(from - off) as usize..(to - off) as usize];
            if h != d {
                conflict = true;
                if replace {
                    h.copy_from_slice(d);
                }
            }
        };
        let base = self.base;
        one(&mut self.buf, base);
        for (start, bytes) in &mut self.pieces {
            one(bytes, base + u64::from(*start));
        }
        conflict
    }

    /// The bytes received without a gap from the first unconsumed byte.
    pub fn contiguous(&self) -> &[u8] {
        &self.buf
    }

    /// Total bytes held (contiguous or not).
    pub fn held(&self) -> usize {
        self.buf.len() + self.pieces.iter().map(|p| p.1.len()).sum::<usize>()
    }

    /// Bytes of memory this buffer has allocated: the real capacities of
    /// its vectors, so a budget can be kept on what is actually spent.
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
            + self.pieces.capacity() * std::mem::size_of::<(u32, Vec<u8>)>()
            + self.pieces.iter().map(|p| p.1.capacity()).sum::<usize>()
    }

    /// Drop `n` bytes from the front of the contiguous prefix.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        if n == 0 {
            return;
        }
        self.buf.drain(..n);
        for p in &mut self.pieces {
            p.0 -= n as u32;
        }
        self.base += n as u64;
    }
}

impl Reassembly {
    /// Take the byte at stream offset `off` out of the stream: held bytes
    /// after it move one earlier. A receiver hands an urgent byte out of
    /// band, so data that arrived before it (out of order) sits one byte
    /// earlier in the stream it reads. Pieces brought together by the move
    /// are joined.
    pub fn excise(&mut self, off: u64) {
        let Some(at) = off.checked_sub(self.base) else {
            return;
        };
        let Ok(at) = u32::try_from(at) else {
            return;
        };
        if (at as usize) < self.buf.len() {
            // From the prefix: everything after moves, the gaps stay.
            self.buf.remove(at as usize);
            for p in &mut self.pieces {
                p.0 -= 1;
            }
            return;
        }
        // In a gap or a piece: a gap can close, so pieces may now touch.
        let mut i = self.pieces.partition_point(|p| piece_end(p) <= at);
        if let Some(p) = self.pieces.get_mut(i).filter(|p| p.0 <= at) {
            p.1.remove((at - p.0) as usize);
            if p.1.is_empty() {
                self.pieces.remove(i);
            } else {
                i += 1;
            }
        }
        for p in &mut self.pieces[i..] {
            p.0 -= 1;
        }
        self.join_touching();
    }

    /// Join pieces that touch the prefix or each other.
    fn join_touching(&mut self) {
        let mut i = 0;
        while i < self.pieces.len() {
            if self.pieces[i].0 as usize == self.buf.len() {
                let (_, bytes) = self.pieces.remove(i);
                self.buf.extend_from_slice(&bytes);
                continue;
            }
            if i + 1 < self.pieces.len() && piece_end(&self.pieces[i]) == self.pieces[i + 1].0 {
                let (_, next) = self.pieces.remove(i + 1);
                self.pieces[i].1.extend_from_slice(&next);
                continue;
            }
            i += 1;
        }
    }
}

fn piece_end(p: &(u32, Vec<u8>)) -> u32 {
    p.0 + p.1.len() as u32
}

/// Largest prefix allocation a buffer keeps when it goes back to the pool:
/// a ClientHello fits; a buffer grown bigger is shrunk, so idle buffers
/// hold at most `keep` times this.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Reassembly buffers kept for reuse, so a new flow takes a buffer that an
/// old one gave back instead of allocating; and the memory budget shared by
/// all buffers lent out.
#[derive(Debug, Default)]
pub struct Pool {
    // Boxed because flows hold them boxed (a flow without a buffer stays
    // small); moving the box in and out of the pool does not allocate.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Reassembly>>,
    /// Most buffers kept idle.
    pub keep: usize,
    /// Most bytes all lent buffers may have allocated together.
    pub budget: usize,
    /// Bytes the lent buffers have allocated now (inserted through
    /// [`Pool::insert`]).
    held: usize,
}

impl Pool {
    /// A pool keeping at most `keep` idle buffers, without a budget.
    pub fn new(keep: usize) -> Pool {
        Pool::with_budget(keep, usize::MAX)
    }
    /// A pool keeping at most `keep` idle buffers, its lent buffers holding
    /// at most `budget` bytes together.
    pub fn with_budget(keep: usize, budget: usize) -> Pool {
        Pool {
            free: Vec::new(),
            keep,
            budget,
            held: 0,
        }
    }
    /// An empty buffer, reused when one is idle.
    pub fn take(&mut self) -> Box<Reassembly> {
        self.free.pop().unwrap_or_default()
    }
    /// Return a buffer (emptied here); its bytes leave the budget.
    pub fn give(&mut self, mut r: Box<Reassembly>) {
        self.held = self.held.saturating_sub(r.counted);
        r.counted = 0;
        if self.free.len() < self.keep {
            r.clear();
            r.buf.shrink_to(KEEP_CAPACITY);
            r.pieces = Vec::new();
            self.free.push(r);
        }
    }
    /// [`Reassembly::insert`] into a lent buffer, within the budget: data
    /// that could take the lent buffers past it is refused.
    pub fn insert(
        &mut self,
        r: &mut Reassembly,
        off: u64,
        data: &[u8],
        max_bytes: usize,
        max_ranges: usize,
    ) -> Result<(), CapHit> {
        // What the insert may allocate at most: the data, plus the prefix
        // doubling when it grows, plus the list of pieces growing.
        let grow = data.len()
            + r.buf.capacity().min(max_bytes)
            + r.pieces.capacity().max(4) * std::mem::size_of::<(u32, Vec<u8>)>();
        if self.held.saturating_add(grow) > self.budget {
            return Err(CapHit::Budget);
        }
        let res = r.insert(off, data, max_bytes, max_ranges);
        let now = r.allocated();
        self.held = self.held - r.counted + now;
        r.counted = now;
        res
    }
    /// Bytes the lent buffers have allocated now.
    pub fn held(&self) -> usize {
        self.held
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
    fn excise_moves_later_bytes_down_and_closes_the_gap() {
        // Out of order: "cdef" at 3 before the urgent byte at 2 is known.
        let mut r = Reassembly::default();
        r.insert(3, b"cdef", 100, 8).unwrap();
        r.insert(9, b"xy", 100, 8).unwrap();
        r.excise(2);
        r.insert(0, b"ab", 100, 8).unwrap();
        assert_eq!(r.contiguous(), b"abcdef");
        assert_eq!(r.held(), 8);
        // The piece beyond the second gap moved too: 9 is now 8.
        r.insert(6, b"gh", 100, 8).unwrap();
        assert_eq!(r.contiguous(), b"abcdefghxy");
        // From the prefix: the byte goes, the rest moves up.
        r.excise(1);
        assert_eq!(r.contiguous(), b"acdefghxy");
        // Inside a piece, and before what was consumed: nothing else moves.
        let mut r = Reassembly::default();
        r.insert(0, b"01", 100, 8).unwrap();
        r.insert(4, b"4567", 100, 8).unwrap();
        r.excise(5);
        r.insert(2, b"23", 100, 8).unwrap();
        assert_eq!(r.contiguous(), b"0123467");
        r.consume(3);
        r.excise(1);
        assert_eq!(r.contiguous(), b"3467");
    }

    #[test]
    fn overlay_finds_conflicts_and_the_last_copy_replaces() {
        let mut r = Reassembly::default();
        r.insert(0, b"0123", 100, 8).unwrap();
        r.insert(8, b"89", 100, 8).unwrap();
        // Same bytes again, or bytes not held yet: no conflict.
        assert!(!r.overlay(0, b"0123", true));
        assert!(!r.overlay(4, b"4567", true));
        // First copy wins: reported, left as it was.
        assert!(r.overlay(2, b"XX", false));
        assert_eq!(r.contiguous(), b"0123");
        // Last copy wins, across the prefix and a piece beyond the gap.
        assert!(r.overlay(3, b"YzzzzZ", true));
        assert_eq!(r.contiguous(), b"012Y");
        r.insert(4, b"4567", 100, 8).unwrap();
        assert_eq!(r.contiguous(), b"012Y4567Z9");
        // Consumed bytes are gone: nothing to compare.
        r.consume(5);
        assert!(!r.overlay(0, b"-----", true));
        assert!(r.overlay(8, b"--", true));
        assert_eq!(r.contiguous(), b"567--");
    }

    #[test]
    fn memory_follows_bytes_not_offsets() {
        // A SYN, then one 700-byte segment far into the window: what is
        // allocated is about the segment, not the offset.
        let mut r = Reassembly::default();
        r.insert(32_001, &[7u8; 700], 32 * 1024, 32).unwrap();
        assert_eq!(r.held(), 700);
        assert!(r.allocated() < 1024, "allocated {}", r.allocated());
        // The gap filled: one contiguous stream, still sized to its bytes.
        r.insert(0, &vec![1u8; 32_001], 32 * 1024, 32).unwrap();
        assert_eq!(r.contiguous().len(), 32_701);
        assert_eq!(&r.contiguous()[32_001..], &[7u8; 700][..]);
        assert!(r.allocated() < 2 * 32_701);
    }

    #[test]
    fn pool_budget() {
        let mut pool = Pool::with_budget(4, 4096);
        let mut bufs: Vec<_> = (0..8).map(|_| pool.take()).collect();
        let mut refused = 0;
        for b in &mut bufs {
            if pool.insert(b, 20_000, &[1u8; 700], 32 * 1024, 32) == Err(CapHit::Budget) {
                refused += 1;
            }
        }
        assert!(pool.held() <= 4096, "held {}", pool.held());
        assert!(refused >= 3, "refused {refused}");
        for b in bufs {
            pool.give(b);
        }
        assert_eq!(pool.held(), 0);
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
