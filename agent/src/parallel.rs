//! The streaming engine's parallel part, shared by `desensitize` and
//! `scan`: CSV and JSON Lines input is cut into chunks at record
//! boundaries (a newline outside quotes, so quoted newlines stay inside
//! their record), chunks are processed on every core the process is
//! given, and results are consumed in input order. At most a few chunks
//! per thread are in flight, so memory stays flat in the file size.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Condvar, Mutex};

/// Bytes per chunk (a chunk grows past it only for one longer record).
pub const CHUNK: usize = 4 << 20;

/// Worker threads: `AGENT_THREADS` if set, else the CPUs this process may
/// use (its affinity and cgroup quota, as the standard library reads them).
pub fn threads() -> usize {
    std::env::var("AGENT_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Chunk size: [`CHUNK`], or `AGENT_CHUNK_BYTES` (tests cut small files
/// into many chunks with it).
pub fn chunk_size() -> usize {
    std::env::var("AGENT_CHUNK_BYTES")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(CHUNK)
}

/// Chunk buffers given back after use, for the next chunks. A 4 MiB
/// buffer allocated anew each time came fresh from the kernel (glibc and
/// musl map blocks that large and unmap them on free): a page fault and a
/// zeroed page for every 4 KiB, about a tenth of `desensitize`'s time.
/// Only buffers that were in use at once come back, so memory stays what
/// the chunks in flight need.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// At most this many spare buffers are kept.
const MAX_SPARE: usize = 16;

/// An empty buffer with room for `capacity` bytes, a used one if any.
pub fn buffer(capacity: usize) -> Vec<u8> {
    let spare = SPARE.lock().ok().and_then(|mut s| s.pop());
    let mut b = spare.unwrap_or_default();
    b.clear();
    b.reserve_exact(capacity);
    b
}

/// Give a buffer back for [`buffer`] to hand out again.
pub fn give_back(mut b: Vec<u8>) {
    if b.capacity() == 0 {
        return;
    }
    b.clear();
    if let Ok(mut s) = SPARE.lock()
        && s.len() < MAX_SPARE
    {
        s.push(b);
    }
}

/// A piece of the input holding whole records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based, in input order.
    pub seq: usize,
    pub data: Vec<u8>,
    /// Line number (1-based) of the chunk's first byte in the file.
    pub first_line: u64,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.data));
    }
}

/// Cuts a stream into [`Chunk`]s after the last newline outside quotes
/// (`quotes: false` for JSON Lines, where a newline always ends a record).
pub struct Chunker<R> {
    input: R,
    quotes: bool,
    size: usize,
    carry: Vec<u8>,
    seq: usize,
    line: u64,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// `first_line`: line number of the stream's first byte.
    pub fn new(input: R, quotes: bool, first_line: u64) -> Self {
        Self::with_size(input, quotes, first_line, CHUNK)
    }

    pub fn with_size(input: R, quotes: bool, first_line: u64, size: usize) -> Self {
        Chunker {
            input,
            quotes,
            size: size.max(1),
            carry: Vec::new(),
            seq: 0,
            line: first_line,
            eof: false,
        }
    }

    /// Read until the buffer holds `size` more bytes or the input ends
    /// (into spare capacity: zeroing each new chunk first cost a pass).
    fn fill(&mut self) -> io::Result<()> {
        let want = self.carry.len() + self.size;
        self.carry.reserve_exact(want - self.carry.len());
        while self.carry.len() < want && !self.eof {
            let room = (want - self.carry.len()) as u64;
            let n = (&mut self.input).take(room).read_to_end(&mut self.carry)?;
            self.eof = n == 0;
        }
        Ok(())
    }

    fn emit(&mut self, end: usize) -> Chunk {
        let rest = &self.carry[end..];
        let mut next = buffer(rest.len() + self.size);
        next.extend_from_slice(rest);
        self.carry.truncate(end);
        let data = std::mem::replace(&mut self.carry, next);
        let first_line = self.line;
        self.line += memchr::memchr_iter(b'\n', &data).count() as u64;
        self.seq += 1;
        Chunk {
            seq: self.seq - 1,
            data,
            first_line,
        }
    }
}

/// Just past the last `\n` outside double quotes in `b` (which starts
/// outside quotes).
pub fn last_boundary(b: &[u8], quotes: bool) -> Option<usize> {
    if !quotes {
        return memchr::memrchr(b'\n', b).map(|i| i + 1);
    }
    let mut inside = false;
    let mut last = None;
    for i in memchr::memchr2_iter(b'"', b'\n', b) {
        if b[i] == b'"' {
            inside = !inside;
        } else if !inside {
            last = Some(i + 1);
        }
    }
    last
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
            if self.eof {
                return (!self.carry.is_empty()).then(|| Ok(self.emit(self.carry.len())));
            }
            if let Some(end) = last_boundary(&self.carry, self.quotes) {
                return Some(Ok(self.emit(end)));
            }
            // One record longer than the buffer: read on.
        }
    }
}

/// Runs `work` on every item on `threads` threads and hands the results
/// to `consume` in input order (on one thread: inline, in order). The first error (reading, or from
/// `consume`) stops the run and is returned.
pub fn ordered<T, R, E>(
    items: impl Iterator<Item = Result<T, E>> + Send,
    threads: usize,
    work: impl Fn(usize, T) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    E: Send,
{
    if threads <= 1 {
        // One thread: everything in order on this one, nothing spawned, so
        // a single-core Job uses one core and the same code path.
        for (seq, item) in items.enumerate() {
            consume(work(seq, item?))?;
        }
        return Ok(());
    }
    let (work_tx, work_rx) = sync_channel::<(usize, T)>(threads);
    let (done_tx, done_rx) = sync_channel::<(usize, R)>(threads);
    let work_rx = Mutex::new(Some(work_rx));
    std::thread::scope(|s| {
        let feeder = s.spawn(move || feed(items, work_tx));
        for _ in 0..threads {
            let (rx, tx, work) = (&work_rx, done_tx.clone(), &work);
            s.spawn(move || run_worker(rx, tx, work));
        }
        drop(done_tx);
        let consumed = consume_in_order(done_rx, &mut consume);
        // After an error, dropping both receivers stops the workers and the feeder.
        if let Ok(mut rx) = work_rx.lock() {
            rx.take();
        }
        let fed = feeder.join().unwrap_or(Ok(()));
        consumed.and(fed)
    })
}

fn feed<T, E>(
    items: impl Iterator<Item = Result<T, E>>,
    tx: SyncSender<(usize, T)>,
) -> Result<(), E> {
    for (seq, item) in items.enumerate() {
        if tx.send((seq, item?)).is_err() {
            break;
        }
    }
    Ok(())
}

fn run_worker<T, R>(
    rx: &Mutex<Option<Receiver<(usize, T)>>>,
    tx: SyncSender<(usize, R)>,
    work: &(impl Fn(usize, T) -> R + Sync),
) {
    loop {
        let next = match rx.lock() {
            Ok(r) => r.as_ref().and_then(|r| r.recv().ok()),
            Err(_) => None,
        };
        let Some((seq, item)) = next else { return };
        if tx.send((seq, work(seq, item))).is_err() {
            return;
        }
    }
}

fn consume_in_order<R, E>(
    rx: Receiver<(usize, R)>,
    consume: &mut impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (seq, r) in rx {
        waiting.insert(seq, r);
        while let Some(r) = waiting.remove(&next) {
            consume(r)?;
            next += 1;
        }
    }
    Ok(())
}

/// Where each chunk's rows start among all rows, when a worker needs it
/// before its chunk is consumed (row-indexed noise and sampling): each
/// worker tells how many rows its chunk holds and waits for the chunks
/// before it to have told theirs.
#[derive(Default)]
pub struct RowBases {
    state: Mutex<Bases>,
    ready: Condvar,
}

#[derive(Default)]
struct Bases {
    /// The run stopped: nobody waits any more.
    aborted: bool,
    /// First chunk whose base is not yet known, and that base.
    next: usize,
    base: u64,
    counts: BTreeMap<usize, u64>,
    known: BTreeMap<usize, u64>,
}

impl RowBases {
    /// Stop: chunks still waiting get 0 (their results are discarded).
    pub fn abort(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.aborted = true;
        }
        self.ready.notify_all();
    }

    /// Chunk `seq` holds `rows` rows: the index of its first row.
    pub fn base(&self, seq: usize, rows: u64) -> u64 {
        let Ok(mut st) = self.state.lock() else {
            return 0;
        };
        st.counts.insert(seq, rows);
        loop {
            let (next, base) = (st.next, st.base);
            let Some(n) = st.counts.remove(&next) else {
                break;
            };
            st.known.insert(next, base);
            st.base += n;
            st.next += 1;
        }
        self.ready.notify_all();
        loop {
            if let Some(b) = st.known.remove(&seq) {
                return b;
            }
            if st.aborted {
                return 0;
            }
            st = match self.ready.wait(st) {
                Ok(s) => s,
                Err(_) => return 0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunks(data: &[u8], quotes: bool, size: usize) -> Vec<Chunk> {
        Chunker::with_size(data, quotes, 2, size)
            .collect::<io::Result<_>>()
            .expect("chunks")
    }

    #[test]
    fn quoted_newlines_stay_inside_their_chunk() {
        let data = b"1,\"a\nb\"\n2,x\n3,\"c\"\"\n\"\n4,y";
        let cs = chunks(data, true, 4);
        let joined: Vec<u8> = cs.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, data);
        for c in &cs {
            let quotes = c.data.iter().filter(|b| **b == b'"').count();
            assert_eq!(quotes % 2, 0, "{:?}", String::from_utf8_lossy(&c.data));
        }
        assert_eq!(cs[0].first_line, 2);
        assert_eq!(cs[0].data, b"1,\"a\nb\"\n");
        assert_eq!(cs[1].first_line, 4);
    }

    #[test]
    fn results_come_back_in_order_and_errors_stop() {
        let items = (0..200u64).map(Ok::<u64, String>);
        let mut seen = Vec::new();
        ordered(
            items,
            4,
            |_, x| x * 2,
            |r| {
                seen.push(r);
                Ok(())
            },
        )
        .expect("run");
        assert_eq!(seen, (0..200).map(|x| x * 2).collect::<Vec<_>>());
        let items = (0..1000u64).map(|x| {
            if x == 500 {
                Err("bad".to_string())
            } else {
                Ok(x)
            }
        });
        let r = ordered(items, 3, |_, x| x, |_| Ok(()));
        assert_eq!(r, Err("bad".to_string()));
        let r = ordered(
            (0..1000u64).map(Ok),
            3,
            |_, x| x,
            |x| if x == 10 { Err(x) } else { Ok(()) },
        );
        assert_eq!(r, Err(10));
    }

    #[test]
    fn row_bases_are_prefix_sums_whatever_the_order() {
        let bases = RowBases::default();
        let counts = [5u64, 0, 7, 3, 9, 1];
        let got: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = counts
                .iter()
                .enumerate()
                .rev()
                .map(|(i, n)| {
                    let b = &bases;
                    s.spawn(move || b.base(i, *n))
                })
                .collect();
            let mut v: Vec<u64> = hs.into_iter().map(|h| h.join().expect("join")).collect();
            v.reverse();
            v
        });
        assert_eq!(got, vec![0, 5, 5, 12, 15, 24]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Chunks concatenate to the input and each parses to the same
        // records as the whole file.
        #[test]
        fn chunks_cut_only_between_records(
            records in proptest::collection::vec(proptest::collection::vec("[a\",\n 张]{0,5}", 1..4), 1..20),
            size in 1usize..40,
        ) {
            let mut w = ::csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            for r in &records {
                w.write_record(r).expect("write");
            }
            let data = w.into_inner().expect("flush");
            let parse = |b: &[u8]| -> Vec<Vec<Vec<u8>>> {
                ::csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(b)
                    .byte_records().map(|r| r.expect("record").iter().map(<[u8]>::to_vec).collect()).collect()
            };
            let cs = chunks(&data, true, size);
            let joined: Vec<u8> = cs.iter().flat_map(|c| c.data.clone()).collect();
            prop_assert_eq!(&joined, &data);
            let pieces: Vec<Vec<Vec<u8>>> = cs.iter().flat_map(|c| parse(&c.data)).collect();
            prop_assert_eq!(pieces, parse(&data));
        }
    }
}
