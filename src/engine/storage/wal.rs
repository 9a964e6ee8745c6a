//! delayd's own write-ahead log: numbered batches in segment files.
//!
//! Why a log of our own in front of fjall: fjall's journal lock is held by
//! its background workers for whole fsyncs (each memtable flush fsyncs the
//! journal under the lock, fjall issue 329), so while the engine applied
//! batches to fjall itself, every commit, and with it the timer firing due
//! members, stalled for tens of milliseconds behind LSM maintenance. The log
//! is what replies and deliveries wait for; fjall is applied behind it by a
//! thread of its own ([`super::logged`]).
//!
//! A segment is a file `<first seq, 20 digits>.log` of records
//! `len: u32 | xxh3 of the rest: u64 | seq: u64 | ops`, each op
//! `kind: u8 | space: u8 | klen: u32 | key | vlen: u32 | value` (little
//! endian). Appending encodes into a buffer; [`Wal::write`] hands the
//! buffer to the OS, [`Wal::sync`] then `fdatasync`s the segment. A torn
//! record at the very end of the last segment (a crash mid-write) is cut
//! off at open, as Redis's `aof-load-truncated` does; a bad checksum
//! anywhere else is an error: the log is corrupt.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Op, Space};
use crate::{Error, Result};

/// Bytes of a record's header before its ops: length, checksum, seq.
const HEADER: usize = 4 + 8 + 8;

/// Largest record read back (a batch is one engine round: far smaller).
const MAX_RECORD: usize = 1 << 30;

/// The log.
pub(crate) struct Wal {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held while a buffer is written to the file, so buffers reach it in
    /// order while appends go on into the next buffer.
    writing: Mutex<()>,
}

struct State {
    /// Records appended and not yet written to the OS.
    buf: Vec<u8>,
    /// The buffer last written, emptied, to take `buf`'s place at the next
    /// write: no allocation per write.
    spare: Vec<u8>,
    /// The segment being appended to, written and fsynced without this
    /// lock held.
    file: Arc<File>,
    /// Sequence number of the last record appended.
    last_seq: u64,
    /// Segments closed by a rotation: (first seq, path).
    closed: Vec<(u64, PathBuf)>,
    /// First seq of the current segment.
    current_first: u64,
    /// Bytes in the current segment (written or buffered).
    current_bytes: u64,
    /// Set by a failed write: the log takes no more records.
    failed: Option<String>,
    /// Segments closed by a rotation whose fsync, and the directory's
    /// (which makes the new segment's name durable), have not finished
    /// yet: [`Wal::sync`] does them until [`Wal::rotate`] has.
    unsynced: Vec<Arc<File>>,
}

/// One record read back at open.
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) ops: Vec<Op>,
}

/// Locks `m`; a panic elsewhere while it was held leaves nothing half-done
/// that matters here (a buffer, a handle), so the poison is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// Creates a segment and makes its name durable in the directory.
fn create_segment(dir: &Path, first: u64) -> Result<Arc<File>> {
    let path = segment_path(dir, first);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    File::open(dir)?.sync_all()?;
    Ok(Arc::new(file))
}

fn space_code(s: Space) -> u8 {
    match s {
        Space::Schedule => 0,
        Space::Members => 1,
        Space::Meta => 2,
    }
}

fn space_of(b: u8) -> Option<Space> {
    match b {
        0 => Some(Space::Schedule),
        1 => Some(Space::Members),
        2 => Some(Space::Meta),
        _ => None,
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends the record of batch `seq` to `out`.
fn encode(out: &mut Vec<u8>, seq: u64, ops: &[Op]) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    for op in ops {
        match op {
            Op::Put(s, k, v) => {
                out.extend_from_slice(&[0, space_code(*s)]);
                put_bytes(out, k);
                put_bytes(out, v);
            }
            Op::Delete(s, k) => {
                out.extend_from_slice(&[1, space_code(*s)]);
                put_bytes(out, k);
            }
            Op::Clear(s) => out.extend_from_slice(&[2, space_code(*s)]),
        }
    }
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start + 12..start + 20].copy_from_slice(&seq.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&out[start + 12..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 12].copy_from_slice(&sum.to_le_bytes());
}

/// A cursor over a record's bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(n).ok()?).map(<[u8]>::to_vec)
    }
}

fn decode_ops(mut r: Reader<'_>) -> Option<Vec<Op>> {
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let kind = r.u8()?;
        let space = space_of(r.u8()?)?;
        ops.push(match kind {
            0 => Op::Put(space, r.bytes()?, r.bytes()?),
            1 => Op::Delete(space, r.bytes()?),
            2 => Op::Clear(space),
            _ => return None,
        });
    }
    Some(ops)
}

/// Reads the records of one segment. `last`: this is the newest segment,
/// whose torn tail is cut off (its length is returned) rather than an
/// error.
fn read_segment(path: &Path, last: bool, after: u64) -> Result<(Vec<Record>, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let corrupt = |at: usize| {
        Error::storage(format!(
            "write-ahead log {} is corrupt at byte {at}",
            path.display()
        ))
    };
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let whole = rest.len() >= 4 && {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            (HEADER - 4..=MAX_RECORD).contains(&len) && rest.len() >= 4 + len
        };
        if !whole {
            // A record cut short: only the end of the newest segment may be.
            if last {
                break;
            }
            return Err(corrupt(at));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let body = &rest[12..4 + len];
        let sum = u64::from_le_bytes(rest[4..12].try_into().map_err(|_| corrupt(at))?);
        if xxhash_rust::xxh3::xxh3_64(body) != sum {
            // A torn last write can leave a whole-looking record with
            // garbage inside: tolerated only if nothing follows it.
            if last && at + 4 + len == data.len() {
                break;
            }
            return Err(corrupt(at));
        }
        let seq = u64::from_le_bytes(body[..8].try_into().map_err(|_| corrupt(at))?);
        // Only what fjall lacks is decoded (and kept): the rest was applied.
        let ops = if seq > after {
            decode_ops(Reader(&body[8..])).ok_or_else(|| corrupt(at))?
        } else {
            Vec::new()
        };
        records.push(Record { seq, ops });
        at += 4 + len;
    }
    Ok((records, at as u64))
}

/// The segments in `dir`, oldest first: (first seq, path).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

impl Wal {
    /// Opens the log in `dir` (created if missing) and returns it with
    /// every record it holds after `after`, in order. The next record is
    /// numbered after the last one found (or after `after`).
    ///
    /// # Errors
    ///
    /// An I/O error, or a corrupt record before the end of the log.
    pub(crate) fn open(dir: &Path, after: u64) -> Result<(Wal, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let found = segments(dir)?;
        let mut records = Vec::new();
        let mut last_seq = after;
        let mut closed = Vec::new();
        let n = found.len();
        let firsts: Vec<u64> = found.iter().map(|(f, _)| *f).collect();
        for (i, (first, path)) in found.into_iter().enumerate() {
            let newest = i + 1 == n;
            // A closed segment wholly at or before `after` is not read: a
            // restart reads only the log's tail.
            if let Some(next) = firsts.get(i + 1)
                && next.saturating_sub(1) <= after
            {
                last_seq = last_seq.max(next.saturating_sub(1));
                closed.push((first, path));
                continue;
            }
            let (recs, good_len) = read_segment(&path, newest, after)?;
            if newest {
                // Cut a torn tail so that new records follow whole ones.
                let f = OpenOptions::new().write(true).open(&path)?;
                let len = f.metadata()?.len();
                if len > good_len {
                    tracing::warn!(
                        "write-ahead log {}: cut a torn tail of {} bytes (a write the crash interrupted, never acknowledged)",
                        path.display(),
                        len - good_len
                    );
                    f.set_len(good_len)?;
                    f.sync_all()?;
                }
            }
            for r in recs {
                last_seq = last_seq.max(r.seq);
                if r.seq > after {
                    records.push(r);
                }
            }
            closed.push((first, path));
        }
        // Always start a new segment: the old ones are deleted once fjall
        // holds what they say durably (see `checkpoint`).
        let current_first = last_seq + 1;
        let file = create_segment(dir, current_first)?;
        closed.retain(|(first, _)| *first != current_first);
        let wal = Wal {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                spare: Vec::with_capacity(64 * 1024),
                file,
                last_seq,
                closed,
                current_first,
                current_bytes: 0,
                failed: None,
                unsynced: Vec::new(),
            }),
            writing: Mutex::new(()),
        };
        Ok((wal, records))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn writing(&self) -> MutexGuard<'_, ()> {
        lock(&self.writing)
    }

    /// Appends a batch and returns its sequence number. It reaches the OS
    /// with the next [`Wal::write`].
    ///
    /// # Errors
    ///
    /// The log failed earlier: it takes nothing more.
    pub(crate) fn append(&self, ops: &[Op]) -> Result<u64> {
        let mut s = self.state();
        if let Some(f) = &s.failed {
            return Err(Error::storage(f.clone()));
        }
        let seq = s.last_seq + 1;
        let before = s.buf.len();
        encode(&mut s.buf, seq, ops);
        s.current_bytes += (s.buf.len() - before) as u64;
        s.last_seq = seq;
        Ok(seq)
    }

    /// Sequence number of the last record appended.
    pub(crate) fn last_seq(&self) -> u64 {
        self.state().last_seq
    }

    /// Bytes in the current segment.
    pub(crate) fn current_bytes(&self) -> u64 {
        self.state().current_bytes
    }

    /// Hands every record appended so far to the OS.
    ///
    /// # Errors
    ///
    /// The write failed: the log takes no more records.
    pub(crate) fn write(&self) -> Result<()> {
        let _order = self.writing();
        let (buf, file) = {
            let mut s = self.state();
            if let Some(f) = &s.failed {
                return Err(Error::storage(f.clone()));
            }
            if s.buf.is_empty() {
                return Ok(());
            }
            let spare = std::mem::take(&mut s.spare);
            let buf = std::mem::replace(&mut s.buf, spare);
            (buf, s.file.clone())
        };
        let r = (&*file)
            .write_all(&buf)
            .map_err(|e| self.poison("writing", &e));
        let mut buf = buf;
        buf.clear();
        self.state().spare = buf;
        r
    }

    /// Records a failed write or fsync: the log takes no more records (what
    /// reached the file is unknown), and the error says what failed.
    fn poison(&self, what: &str, e: &std::io::Error) -> Error {
        let why = format!("{what} the write-ahead log failed: {e}");
        self.state().failed.get_or_insert(why.clone());
        Error::storage(why)
    }

    /// Makes every record appended so far durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// The write or the fsync failed.
    pub(crate) fn sync(&self) -> Result<()> {
        self.write()?;
        let (file, closed) = {
            let s = self.state();
            (s.file.clone(), s.unsynced.clone())
        };
        for f in &closed {
            f.sync_data().map_err(|e| self.poison("fsyncing", &e))?;
        }
        if !closed.is_empty() {
            self.sync_dir()?;
        }
        file.sync_data().map_err(|e| self.poison("fsyncing", &e))
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.poison("fsyncing the directory of", &e))
    }

    /// Closes the current segment and starts the next one.
    ///
    /// The old segment's fsync and the directory's come after the swap,
    /// with no lock held: appends (every round) and writes go on meanwhile
    /// (held behind two fsyncs, a checkpoint every 4 MiB of log raised the
    /// firing lateness under load from ≤ 2 to 5 ms by the server's p99,
    /// BENCHMARKS.md session 9). Until they are done, [`Wal::sync`] does
    /// them too, so nothing is acknowledged as durable before it is.
    ///
    /// # Errors
    ///
    /// An I/O error (no descriptor left, say): the log goes on in the
    /// current segment. A failed fsync poisons the log, as in
    /// [`Wal::sync`].
    pub(crate) fn rotate(&self) -> Result<()> {
        self.write()?;
        let old = {
            let _order = self.writing();
            let mut s = self.state();
            // Records appended since: into the old segment too, so a segment
            // named `first` holds no record before `first`.
            if !s.buf.is_empty() {
                let buf = std::mem::take(&mut s.buf);
                (&*s.file).write_all(&buf)?;
            }
            let first = s.last_seq + 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, first))?;
            let old = std::mem::replace(&mut s.file, Arc::new(file));
            let old_first = std::mem::replace(&mut s.current_first, first);
            s.closed
                .push((old_first, segment_path(&self.dir, old_first)));
            s.current_bytes = 0;
            s.unsynced.push(old.clone());
            old
        };
        old.sync_data().map_err(|e| self.poison("fsyncing", &e))?;
        self.sync_dir()?;
        self.state().unsynced.retain(|f| !Arc::ptr_eq(f, &old));
        Ok(())
    }

    /// Deletes the closed segments holding only records up to `durable`
    /// (applied to fjall and fsynced there).
    pub(crate) fn drop_through(&self, durable: u64) {
        let mut s = self.state();
        let current_first = s.current_first;
        let closed = std::mem::take(&mut s.closed);
        let mut keep = Vec::new();
        for (i, (first, path)) in closed.iter().enumerate() {
            // A segment ends where the next one (or the current) starts.
            let next_first = closed.get(i + 1).map_or(current_first, |(f, _)| *f);
            if next_first.saturating_sub(1) <= durable {
                if let Err(e) = std::fs::remove_file(path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!("removing {}: {e}", path.display());
                    keep.push((*first, path.clone()));
                }
            } else {
                keep.push((*first, path.clone()));
            }
        }
        s.closed = keep;
    }

    /// Bytes on disk.
    pub(crate) fn disk_space(&self) -> u64 {
        segments(&self.dir)
            .map(|segs| {
                segs.iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(i: u64) -> Vec<Op> {
        vec![
            Op::Put(
                Space::Members,
                format!("k{i}").into_bytes(),
                vec![i as u8; 3],
            ),
            Op::Delete(Space::Schedule, b"gone".to_vec()),
            Op::Clear(Space::Meta),
        ]
    }

    /// A log in `dir` with batches 1..=n written to the OS.
    fn written(dir: &Path, n: u64) {
        let (wal, _) = Wal::open(dir, 0).unwrap();
        for i in 1..=n {
            wal.append(&ops(i)).unwrap();
        }
        wal.write().unwrap();
    }

    fn seqs(recs: &[Record]) -> Vec<u64> {
        recs.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_come_back_in_order_after_the_given_seq() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, old) = Wal::open(dir.path(), 0).unwrap();
            assert!(old.is_empty());
            for i in 1..=5 {
                assert_eq!(wal.append(&ops(i)).unwrap(), i);
            }
            wal.write().unwrap();
            wal.rotate().unwrap();
            for i in 6..=7 {
                assert_eq!(wal.append(&ops(i)).unwrap(), i);
            }
            wal.sync().unwrap();
        }
        let (wal, recs) = Wal::open(dir.path(), 3).unwrap();
        assert_eq!(seqs(&recs), vec![4, 5, 6, 7]);
        assert_eq!(recs[0].ops, ops(4));
        assert_eq!(wal.append(&[]).unwrap(), 8);
    }

    #[test]
    fn unwritten_records_are_lost_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path(), 0).unwrap();
            wal.append(&ops(1)).unwrap();
            wal.append(&ops(2)).unwrap();
            wal.write().unwrap();
            wal.append(&ops(3)).unwrap(); // never written
        }
        // Tear the last written record.
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (wal, recs) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(seqs(&recs), vec![1]);
        // New records follow the whole ones and read back.
        assert_eq!(wal.append(&ops(9)).unwrap(), 2);
        wal.write().unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(seqs(&recs), vec![1, 2]);
        assert_eq!(recs[1].ops, ops(9));
    }

    #[test]
    fn corruption_before_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 2);
        let (_, path) = segments(dir.path()).unwrap().into_iter().next().unwrap();
        let mut data = std::fs::read(&path).unwrap();
        data[HEADER + 2] ^= 0xFF;
        std::fs::write(&path, data).unwrap();
        assert!(Wal::open(dir.path(), 0).is_err());
    }

    #[test]
    fn segments_wholly_durable_elsewhere_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(&ops(1)).unwrap();
        wal.rotate().unwrap();
        wal.append(&ops(2)).unwrap();
        wal.rotate().unwrap();
        wal.append(&ops(3)).unwrap();
        wal.write().unwrap();
        // Segments 1: [1], 2: [2], and the current one, 3: [3].
        wal.drop_through(1);
        let left: Vec<u64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(left, vec![2, 3]);
        drop(wal);
        let (_, recs) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(seqs(&recs), vec![2, 3]);
    }
}
