//! Micro-benchmarks of delayd's hot paths, one layer at a time:
//!
//! * `wheel/*`: the hierarchical timing wheel (insert, cancel, advance) at
//!   1k, 100k and 1M entries;
//! * `codec/*`: framing a `DELAYADD` request and encoding a 16-member
//!   `DELAYPOP` reply in RESP2 and RESP3;
//! * `store/*`: one fjall write batch (put + commit, no fsync) of 1 and of
//!   64 members, hot (time index only) and cold (time index + point-lookup
//!   entry).
//!
//! Run with `cargo bench --bench micro` (a few minutes); pass a filter to run
//! one group, e.g. `cargo bench --bench micro -- wheel/advance`.
//!
//! The allocator is mimalloc, as in the server binary.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use delayd::engine::store::{MemberMeta, Store};
use delayd::engine::wheel::Wheel;
use delayd::protocol::{Decoder, Limits, Protocol, Reply};

#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wheel sizes measured.
const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// The wheel's time at the start of every benchmark: a realistic Unix time
/// in ms, so deadlines spread over the same wheel levels as in the server.
const T0: u64 = 1_750_000_000_000;

/// Deadlines of the wheel benchmarks are spread over this many ms after
/// [`T0`] (ten minutes: levels 0 to 3 of the wheel).
const SPREAD_MS: u64 = 600_000;

/// splitmix64: a small deterministic generator, so runs are comparable and
/// no dependency is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn deadlines(n: usize, spread: u64) -> Vec<u64> {
    let mut rng = Rng(n as u64);
    (0..n).map(|_| T0 + 1 + rng.next() % spread).collect()
}

fn filled_wheel(deadlines: &[u64]) -> (Wheel<u64>, Vec<delayd::engine::wheel::TimerKey>) {
    let mut w = Wheel::new(T0);
    let keys = deadlines
        .iter()
        .enumerate()
        .map(|(i, &d)| w.insert(d, i as u64).expect("deadline after T0"))
        .collect();
    (w, keys)
}

fn wheel(c: &mut Criterion) {
    // Insert N entries into an empty wheel (slab growth included).
    let mut g = c.benchmark_group("wheel/insert");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let ds = deadlines(n, SPREAD_MS);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &ds, |b, ds| {
            b.iter_batched_ref(
                || Wheel::<u64>::new(T0),
                |w| {
                    for (i, &d) in ds.iter().enumerate() {
                        let _ = black_box(w.insert(d, i as u64));
                    }
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();

    // One insert + one cancel in a wheel that holds N entries (steady
    // size: the slab's free list is reused, nothing grows).
    let mut g = c.benchmark_group("wheel/insert+cancel_at_size");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let ds = deadlines(n, SPREAD_MS);
        let (mut w, _) = filled_wheel(&ds);
        let mut rng = Rng(7);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let d = T0 + 1 + rng.next() % SPREAD_MS;
                let k = w.insert(black_box(d), 0).expect("future deadline");
                black_box(w.remove(k))
            });
        });
    }
    g.finish();

    // Cancel all N entries of a full wheel, in random order (as DELAYREM and
    // rescheduling do: the entries are scattered over the slab).
    let mut g = c.benchmark_group("wheel/cancel");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let ds = deadlines(n, SPREAD_MS);
        let (proto, keys) = filled_wheel(&ds);
        drop(proto);
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng(11);
        for i in (1..n).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let shuffled: Vec<_> = order.iter().map(|&i| keys[i]).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &shuffled, |b, keys| {
            b.iter_batched_ref(
                || filled_wheel(&ds).0,
                |w| {
                    for &k in keys {
                        black_box(w.remove(k));
                    }
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();

    // Advance a full wheel through its whole span in 1 ms steps, firing
    // every entry (cascades from the coarser levels included), as the engine
    // does when it wakes every ms under load. Entries are spread over 10 s,
    // the window of the firing-precision benchmark.
    let mut g = c.benchmark_group("wheel/advance");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    const ADVANCE_SPAN_MS: u64 = 10_000;
    for n in SIZES {
        let ds = deadlines(n, ADVANCE_SPAN_MS);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &ds, |b, ds| {
            b.iter_batched_ref(
                || (filled_wheel(ds).0, Vec::with_capacity(n)),
                |(w, fired)| {
                    let mut now = T0;
                    while now < T0 + ADVANCE_SPAN_MS {
                        now += 1;
                        w.advance(now, fired);
                    }
                    assert_eq!(fired.len(), n);
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

/// One `DELAYADD queue:orders 30000 <20-byte member>` in RESP.
fn delayadd_request() -> Vec<u8> {
    let args: [&[u8]; 4] = [
        b"DELAYADD",
        b"queue:orders",
        b"30000",
        b"job:0000000000012345",
    ];
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let limits = Limits::default();

    let one = delayadd_request();
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode/delayadd", |b| {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::with_capacity(one.len());
        b.iter(|| {
            buf.extend_from_slice(&one);
            let args = dec.decode(&mut buf, &limits).unwrap().unwrap();
            black_box(args)
        });
    });

    // 16 pipelined requests arriving in one read.
    let sixteen = one.repeat(16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("decode/delayadd_x16_pipelined", |b| {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::with_capacity(sixteen.len());
        b.iter(|| {
            buf.extend_from_slice(&sixteen);
            while let Some(args) = dec.decode(&mut buf, &limits).unwrap() {
                black_box(args);
            }
        });
    });

    // A DELAYPOP COUNT 16 reply: an array of 16 bulk members.
    let reply = Reply::Array(
        (0..16)
            .map(|i| Reply::Bulk(Bytes::from(format!("job:{i:016}"))))
            .collect(),
    );
    g.throughput(Throughput::Elements(1));
    for (name, proto) in [("resp2", Protocol::Resp2), ("resp3", Protocol::Resp3)] {
        g.bench_function(format!("encode/delaypop_16_members/{name}"), |b| {
            let mut out = BytesMut::with_capacity(1024);
            b.iter(|| {
                out.clear();
                black_box(&reply).encode(proto, &mut out);
                black_box(out.len())
            });
        });
    }
    g.finish();
}

fn store(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/write_batch");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path()).expect("open store");
    let queue = Bytes::from_static(b"queue:orders");
    let mut n_members = 0u64;
    let mut card = 0u64;
    // hot: due within the in-memory horizon (a time-index entry only);
    // cold: beyond it (time-index entry + point-lookup entry).
    for (kind, cold) in [("hot", false), ("cold", true)] {
        for batch in [1usize, 64] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(format!("put+commit/{kind}"), batch), |b| {
                b.iter(|| {
                    for _ in 0..batch {
                        n_members += 1;
                        let member = format!("job:{n_members:016}");
                        let meta = MemberMeta {
                            due: T0 + n_members % SPREAD_MS,
                            seq: store.next_seq(),
                            deliveries: 0,
                            flags: 0,
                        };
                        store.put(&queue, member.as_bytes(), meta, cold, None);
                    }
                    card += batch as u64;
                    store.set_queue(&queue, card, T0);
                    black_box(store.commit().expect("commit"))
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, wheel, codec, store);
criterion_main!(benches);
