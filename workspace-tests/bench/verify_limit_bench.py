#!/usr/bin/env python3
"""Verify near the HTTP limit: Keyroll's POST /v1/verify on many distinct cached keys against a
bare actix-web handler (workspace-tests/bench/bare-verify) that only parses {"key"}, hashes it
and writes a small JSON answer. Same load generator, same keys in turn, alternating rounds in one
run: bare, Keyroll embedded (SQLite + in-process cache), bare, Keyroll on PostgreSQL + Redis, bare;
each Keyroll round is divided by the mean of the bare rounds just before and after it. Usage counting stays on (the default).

Run from the project root:  python3 workspace-tests/bench/verify_limit_bench.py
Needs wrk; PostgreSQL and Redis for the second configuration (skipped, with a word, if absent).
Environment: BENCH_KEYS (10000), BENCH_SECONDS (5), BENCH_ROUNDS (5), BENCH_CONNECTIONS (32),
BENCH_FLUSH_MS (the nodes' usage flush interval, default 5000 as shipped),
BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_BIN (a Keyroll binary; built when not given),
BENCH_BARE_BIN (the bare server; built when not given), BENCH_BIN_BEFORE (an earlier Keyroll build:
measured in the same rounds, each configuration once more with it, for before/after figures),
BENCH_CPU=1 (each round also says where the machine's time went, per request, in microseconds:
the server's user and kernel time, the load generator's, and how often the server's threads were
preempted, per 1 000 requests; read from /proc, Linux only), BENCH_FULL_ANSWER=1 (the bare server also
runs with --full-answer, writing an answer of the size and shape of Keyroll's with its two headers
more, measured in the same rounds as Keyroll: what the contract's answer alone costs)."""
import os, random, resource, socket, statistics, subprocess, sys, tempfile, time, uuid, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402
from capacity_bench import cycle_lua  # noqa: E402
from import_bench import post, tiers  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "10000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
FLUSH_MS = int(os.environ.get("BENCH_FLUSH_MS", "5000"))
BARE = os.environ.get("BENCH_BARE_BIN") or os.path.join(vb.ROOT, "target", "release", "bare-verify")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MASTER = "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM="


def native_key(head, rng):
    """A Keyroll key of the given head (`prefix_env_`): 32 random base62 and a CRC-32 checksum."""
    text = head + "".join(rng.choice(BASE62) for _ in range(32))
    n, sum_ = zlib.crc32(text.encode()), ""
    for _ in range(6):
        sum_ = BASE62[n % 62] + sum_
        n //= 62
    return text + sum_


def wait_port(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


CPU = os.environ.get("BENCH_CPU") == "1"
FULL_ANSWER = os.environ.get("BENCH_FULL_ANSWER") == "1"
TICK = os.sysconf("SC_CLK_TCK")


def threads_cpu(pid):
    """Ticks of user and kernel time and preemptions, summed over the process's threads."""
    user = kernel = preempted = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except OSError:
            continue  # a thread that ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        user, kernel = user + int(fields[11]), kernel + int(fields[12])
        preempted += int(next(l.split()[1] for l in status.splitlines() if l.startswith("nonvoluntary_ctxt_switches")))
    return user, kernel, preempted


def wrk(url, lua, seconds, pid=None):
    """wrk's figures; with BENCH_CPU and the server's pid, also the CPU each request took."""
    before = threads_cpu(pid) if CPU and pid else None
    # wrk is the only child reaped during the call: the children's usage grows by its own.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t2", f"-c{vb.CONNS}", f"-d{seconds}s", "--latency", "-s", lua, url],
                         capture_output=True, text=True, check=True).stdout
    result = vb.parse_wrk(out)
    if before is None:
        return result
    after, n = threads_cpu(pid), result[0] * seconds
    load = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_us = (load.ru_utime + load.ru_stime - children.ru_utime - children.ru_stime) * 1e6 / n
    user, kernel = ((a - b) / TICK * 1e6 / n for a, b in zip(after[:2], before[:2]))
    return result + ((user, kernel, load_us, (after[2] - before[2]) * 1000 / n),)


def cpu_text(r):
    """`server 3.9 + 4.2 µs, wrk 7.3 µs, 118 preempted` for a result of `wrk` with CPU figures."""
    if len(r) < 5:
        return ""
    user, kernel, load, preempted = r[4]
    return f" [server {user:.2f} + {kernel:.2f} µs, wrk {load:.2f} µs, {preempted:.0f} preempted]"


def postgres_env(dbs):
    """A node's environment on a new PostgreSQL database (named in `dbs`, to be dropped) and Redis."""
    db = "kr_bench_" + uuid.uuid4().hex[:12]
    dbs.append(db)
    subprocess.run(["psql", vb.PG, "-qc", f'CREATE DATABASE "{db}"'], check=True)
    return {"KEYROLL_DATABASE_URL": vb.PG.rsplit("/", 1)[0] + "/" + db, "KEYROLL_REDIS_URL": vb.REDIS,
            "KEYROLL_REDIS_PREFIX": f"{db}:", "KEYROLL_MASTER_KEY": MASTER}


def keyroll(label, env, keys_path, lua, binary):
    """A node of `binary` holding BENCH_KEYS imported keys, every one cached: (process, url)."""
    # Counts are flushed every FLUSH_MS (the default, 5 s, unless BENCH_FLUSH_MS says otherwise):
    # a round of that length holds one flush, and the pause after it holds the flush of its last
    # counts, so no round pays for another's.
    proc, url, _, _, root = vb.start_with_root(dict(env, KEYROLL_CACHE__L1_CAPACITY=str(KEYS * 2),
                                                    KEYROLL_USAGE_FLUSH_INTERVAL_MS=str(FLUSH_MS)), binary)
    api = post(url, "/v1/apis", {"name": "Limit", "key_prefix": "limit", "environment": "live"}, root)
    rng = random.Random(7)
    keys = [native_key("limit_live_", rng) for _ in range(KEYS)]
    for start in range(0, KEYS, 10_000):
        batch = [{"plaintext": k, "api_id": api["id"], "external_id": f"cus_{(start + i) // 10:06d}"}
                 for i, k in enumerate(keys[start:start + 10_000])]
        r = post(url, "/v1/keys/import", {"import_id": f"limit-{start}", "keys": batch}, root)
        assert not r["errors"], r["errors"][:3]
    with open(keys_path, "w") as f:
        f.write("\n".join(keys) + "\n")
    cycle_lua(lua, keys_path)
    # The import's announcements settle first (nodes drop cached misses of new keys), then every
    # key is read once into L1.
    time.sleep(3)
    for _ in range(10):
        wrk(url, lua, 3)
        if tiers(url).get(("database", "hit"), 0) >= KEYS * 0.99:
            break
    sample = vb.http("POST", url + "/v1/verify", {"key": keys[KEYS // 2]})
    assert sample["code"] == "VALID", sample
    print(f"  {label}: {KEYS:,} keys imported and cached")
    return proc, url


def main():
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    if not os.environ.get("BENCH_BARE_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "bare-verify"], check=True)
    tmp = tempfile.mkdtemp(prefix="kr-limit-")
    keys_path, lua = os.path.join(tmp, "keys.txt"), os.path.join(tmp, "cycle.lua")
    procs, targets, dbs = [], [], []
    builds = [("", vb.BIN)] + ([(" (before)", os.environ["BENCH_BIN_BEFORE"])] if os.environ.get("BENCH_BIN_BEFORE") else [])
    try:
        print(f"wrk {vb.CONNS} connections, {SECONDS} s rounds, {os.cpu_count()} cores shared by all")
        pg = subprocess.run(["psql", vb.PG, "-qc", "SELECT 1"], capture_output=True).returncode == 0
        if not pg:
            print("  PostgreSQL not reachable at BENCH_DATABASE_URL: only the embedded configuration is measured")
        for suffix, binary in builds:
            proc, url = keyroll("embedded" + suffix, {}, keys_path, lua, binary)
            procs.append(proc)
            targets.append(("embedded" + suffix, proc, url))
            if pg:
                proc, url = keyroll("postgres+redis" + suffix, postgres_env(dbs), keys_path, lua, binary)
                procs.append(proc)
                targets.append(("postgres+redis" + suffix, proc, url))
        port = vb.free_port()
        bare = subprocess.Popen([BARE, f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL)
        procs.append(bare)
        wait_port(port)
        bare_url = f"http://127.0.0.1:{port}"
        wrk(bare_url, lua, 2)
        before = {name: tiers(url) for name, _, url in targets}
        if FULL_ANSWER:
            port = vb.free_port()
            full = subprocess.Popen([BARE, f"127.0.0.1:{port}", "--full-answer"], stdout=subprocess.DEVNULL)
            procs.append(full)
            wait_port(port)
            targets.append(("bare, full answer", full, f"http://127.0.0.1:{port}"))
            wrk(targets[-1][2], lua, 2)
        ratios = {name: [] for name, _, _ in targets}
        for r in range(1, ROUNDS + 1):
            # The bare handler runs before and after each Keyroll round; the ratio is to their mean.
            b = wrk(bare_url, lua, SECONDS, bare.pid)
            line = f"  round {r}: bare {b[0]:>8,.0f}{cpu_text(b)}"
            for name, proc, url in targets:
                k = wrk(url, lua, SECONDS, proc.pid)
                if name in before:
                    time.sleep(FLUSH_MS / 1000 + 0.5)
                after = wrk(bare_url, lua, SECONDS, bare.pid)
                assert k[3] == 0 and b[3] == 0 and after[3] == 0, f"non-2xx answers: bare {b[3]}, {name} {k[3]}"
                ratio = k[0] / ((b[0] + after[0]) / 2)
                ratios[name].append(ratio)
                line += (f" | {name} {k[0]:>8,.0f} req/s (p99 {vb.fmt(k[2])}){cpu_text(k)} {ratio:.3f}×"
                         f" | bare {after[0]:>8,.0f}{cpu_text(after)}")
                b = after
            print(line)
        for name, _, url in targets:
            text = (f"  {name}: median {statistics.median(ratios[name]):.3f}× the bare handler "
                    f"(range {min(ratios[name]):.3f}–{max(ratios[name]):.3f})")
            if name in before:  # a Keyroll node: how many of its lookups L1 answered
                t = {k: v - before[name].get(k, 0) for k, v in tiers(url).items()}
                hits, lookups = t.get(("l1", "hit"), 0), t.get(("l1", "hit"), 0) + t.get(("l1", "miss"), 0)
                text += f"; L1 answered {100 * hits / max(lookups, 1):.1f} % of the measured rounds"
            print(text)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        for db in dbs:
            subprocess.run(["psql", vb.PG, "-qc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'], check=False)
        for f in (keys_path, lua):
            if os.path.exists(f):
                os.unlink(f)
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
