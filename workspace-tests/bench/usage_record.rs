//! What counting one verification costs, in nanoseconds of CPU, next to the server CPU time a whole
//! verification takes over HTTP (measured by `usage_bench.py`): two threads (as the server's two
//! workers) count outcomes of 200 keys from 250 client addresses, with the counter on and off,
//! in alternating rounds. Prints the nanoseconds per count of each round and the medians.
//!
//! `cargo bench -p workspace-tests --bench usage_record`

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use keyroll::verify::Code;
use keyroll::verify::usage::UsageCounter;

const PER_THREAD: usize = 2_000_000;

fn round(counter: &Arc<UsageCounter>, keys: &Arc<Vec<Arc<str>>>, tenant: &Arc<str>) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let (counter, keys, tenant) = (counter.clone(), keys.clone(), tenant.clone());
            std::thread::spawn(move || {
                let now = chrono::Utc::now().timestamp_millis();
                for i in 0..PER_THREAD {
                    let ip = IpAddr::from([198, 51, 100, u8::try_from((i + t) % 250).unwrap_or(0)]);
                    let code = if i % 50 == 0 { Code::InsufficientScope } else { Code::Valid };
                    let at = now + i64::try_from(i / 1_000).unwrap_or(0);
                    counter.record(&keys[(i * 7 + t) % keys.len()], &tenant, code, Some(ip), at);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    // Both threads ran the whole time: CPU time per count is the wall time over one thread's share.
    #[expect(clippy::cast_precision_loss, reason = "a figure")]
    let per = started.elapsed().as_nanos() as f64 / PER_THREAD as f64;
    per
}

fn main() {
    let keys: Arc<Vec<Arc<str>>> = Arc::new((0..200).map(|i| Arc::from(format!("key_{i:026}").as_str())).collect());
    let tenant: Arc<str> = Arc::from("ten_01h455vb4pex5vsknk084sn02q");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for r in 0..7 {
        // A fresh counter per round, as after a flush.
        let counting = Arc::new(UsageCounter::default());
        let idle = Arc::new(UsageCounter::off());
        let (a, b) = if r % 2 == 0 {
            (round(&counting, &keys, &tenant), round(&idle, &keys, &tenant))
        } else {
            let b = round(&idle, &keys, &tenant);
            (round(&counting, &keys, &tenant), b)
        };
        println!("round {}: counting {a:.1} ns of CPU per verification, off {b:.1} ns", r + 1);
        on.push(a);
        off.push(b);
    }
    on.sort_by(f64::total_cmp);
    off.sort_by(f64::total_cmp);
    println!(
        "median: counting {:.1} ns, off {:.1} ns of CPU per verification (2 threads, 200 keys, 250 addresses)",
        on[on.len() / 2],
        off[off.len() / 2]
    );
}
