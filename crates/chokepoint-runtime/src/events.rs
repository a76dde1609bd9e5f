//! The live bridge's events writer: off the packet path.
//!
//! ```text
//!  worker 0 ─► bounded queue 0 ─┐
//!  worker 1 ─► bounded queue 1 ─┼─► writer thread ─► batch ─► write + flush every 200 ms
//!  worker k ─► bounded queue k ─┘   (drains every queue)       (and when it stops)
//! ```
//!
//! A worker formats its events into lines and hands each line to its own
//! queue without waiting: a full queue drops the line and counts it
//! ([`EventCounters::dropped_full`]), so a slow disk never stalls
//! forwarding. One writer thread drains the queues, writes whole lines in
//! batches, and flushes on a timer and at the end. Lines of one worker keep
//! their order; lines of different workers interleave whole. A write error
//! is logged once per outage and the lines of the failed batch are counted
//! ([`EventCounters::dropped_write`]). The writer flushes its output every
//! tick even when nothing came, so an output that reopens itself on a flag
//! ([`AppendLog`](chokepoint_rules::outfile::AppendLog), SIGUSR1) moves to
//! the new file within a tick. Replay does not use this: it writes its
//! events itself, in frame order.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Lines each worker's queue holds before it drops.
pub const QUEUE_LINES: usize = 16_384;

/// How often the writer flushes what it wrote.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Bytes a batch gathers before it is written out between ticks.
const BATCH_BYTES: usize = 1 << 20;

/// What the events writer did, for the metrics.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Lines written (and flushed, or in the flush under way).
    pub written: AtomicU64,
    /// Lines dropped because their worker's queue was full.
    pub dropped_full: AtomicU64,
    /// Lines lost in a batch whose write failed.
    pub dropped_write: AtomicU64,
    /// Writes (or flushes) that failed.
    pub write_errors: AtomicU64,
}

impl EventCounters {
    /// A reading of every counter.
    pub fn load(&self) -> EventStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EventStats {
            written: l(&self.written),
            dropped_full: l(&self.dropped_full),
            dropped_write: l(&self.dropped_write),
            write_errors: l(&self.write_errors),
        }
    }
}

/// A reading of [`EventCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Lines written.
    pub written: u64,
    /// Lines dropped with their worker's queue full.
    pub dropped_full: u64,
    /// Lines lost in failed writes.
    pub dropped_write: u64,
    /// Writes that failed.
    pub write_errors: u64,
}

/// The writer thread, once it runs: what a sender wakes when its queue
/// fills past half.
#[derive(Default)]
struct Waker(OnceLock<Thread>);

impl Waker {
    fn wake(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}

/// One worker's end of the events writer.
pub struct EventSender {
    tx: SyncSender<String>,
    pending: Arc<AtomicUsize>,
    waker: Arc<Waker>,
    counters: Arc<EventCounters>,
    capacity: usize,
}

impl EventSender {
    /// Queue one line (its newline included). Never waits: a full queue
    /// drops the line and counts it.
    pub fn send(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {
                // Past half full, wake the writer rather than wait for its
                // tick.
                if self.pending.fetch_add(1, Ordering::Relaxed) + 1 >= self.capacity / 2 {
                    self.waker.wake();
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for EventSender {
    /// The writer ends once every sender is gone: tell it now.
    fn drop(&mut self) {
        self.waker.wake();
    }
}

/// The writer's end: [`run`](EventWriter::run) it in a thread of its own.
pub struct EventWriter {
    queues: Vec<(Receiver<String>, Arc<AtomicUsize>)>,
    out: Box<dyn Write + Send>,
    waker: Arc<Waker>,
    counters: Arc<EventCounters>,
    flush_every: Duration,
    batch: Vec<u8>,
    lines: u64,
    failing: bool,
}

/// An events writer to `out` fed by `workers` queues of `capacity` lines
/// each, counting in `counters`.
pub fn channel(
    out: Box<dyn Write + Send>,
    workers: usize,
    capacity: usize,
    counters: Arc<EventCounters>,
) -> (Vec<EventSender>, EventWriter) {
    let waker = Arc::new(Waker::default());
    let capacity = capacity.max(2);
    let (senders, queues) = (0..workers.max(1))
        .map(|_| {
            let (tx, rx) = sync_channel(capacity);
            let pending = Arc::new(AtomicUsize::new(0));
            let sender = EventSender {
                tx,
                pending: pending.clone(),
                waker: waker.clone(),
                counters: counters.clone(),
                capacity,
            };
            (sender, (rx, pending))
        })
        .unzip();
    let writer = EventWriter {
        queues,
        out,
        waker,
        counters,
        flush_every: FLUSH_EVERY,
        batch: Vec::new(),
        lines: 0,
        failing: false,
    };
    (senders, writer)
}

impl EventWriter {
    /// Flush every `every` instead of [`FLUSH_EVERY`].
    pub fn flush_every(mut self, every: Duration) -> EventWriter {
        self.flush_every = every;
        self
    }

    /// Write until every sender is gone, then write what is left, flush and
    /// return.
    pub fn run(mut self) {
        let _ = self.waker.0.set(std::thread::current());
        let mut next_flush = Instant::now() + self.flush_every;
        loop {
            let open = self.drain();
            let now = Instant::now();
            if open == 0 {
                self.write_out(true);
                return;
            }
            if now >= next_flush {
                self.write_out(true);
                next_flush = now + self.flush_every;
            }
            std::thread::park_timeout(next_flush.saturating_duration_since(now));
        }
    }

    /// Take every queued line into the batch (written out when it grows
    /// large). Returns how many queues still have a sender.
    fn drain(&mut self) -> usize {
        let mut open = 0;
        for k in 0..self.queues.len() {
            loop {
                let (rx, pending) = &self.queues[k];
                match rx.try_recv() {
                    Ok(line) => {
                        pending.fetch_sub(1, Ordering::Relaxed);
                        self.batch.extend_from_slice(line.as_bytes());
                        self.lines += 1;
                        if self.batch.len() >= BATCH_BYTES {
                            self.write_out(false);
                        }
                    }
                    Err(TryRecvError::Empty) => {
                        open += 1;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            }
        }
        open
    }

    /// Write the batch (and flush, if asked). An error is logged once per
    /// outage; the batch's lines are counted as lost either way.
    fn write_out(&mut self, flush: bool) {
        let mut r = self.out.write_all(&self.batch);
        if flush {
            r = r.and_then(|()| self.out.flush());
        }
        let c = &self.counters;
        match r {
            Ok(()) => {
                c.written.fetch_add(self.lines, Ordering::Relaxed);
                if self.failing {
                    tracing::info!("events are written again");
                }
                self.failing = false;
            }
            Err(e) => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                c.dropped_write.fetch_add(self.lines, Ordering::Relaxed);
                if !self.failing {
                    tracing::error!(error = %e, "events not written (said once until writes work again)");
                }
                self.failing = true;
            }
        }
        self.batch.clear();
        self.lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A shared in-memory output.
    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Vec<u8>>>);

    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Fails every write until told otherwise.
    struct Broken(Arc<std::sync::atomic::AtomicBool>, Mem);

    impl Write for Broken {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("disk full"));
            }
            self.1.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_counted_and_writing_resumes() {
        let mem = Mem::default();
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let counters = Arc::new(EventCounters::default());
        let (tx, mut writer) = channel(
            Box::new(Broken(broken.clone(), mem.clone())),
            1,
            16,
            counters.clone(),
        );
        tx[0].send("lost\n".into());
        tx[0].send("lost too\n".into());
        writer.drain();
        writer.write_out(true);
        assert_eq!(counters.dropped_write.load(Ordering::Relaxed), 2);
        assert_eq!(counters.write_errors.load(Ordering::Relaxed), 1);
        broken.store(false, Ordering::Relaxed);
        tx[0].send("kept\n".into());
        drop(tx);
        writer.run();
        assert_eq!(&*mem.0.lock().unwrap(), b"kept\n");
        assert_eq!(counters.written.load(Ordering::Relaxed), 1);
    }
}
