#!/usr/bin/env python3
"""Key import at scale: 1,000,000 keys of a foreign format imported on PostgreSQL + Redis
through POST /v1/keys/import (100 calls of 10,000, 100,000 consumers made on the way), with the
time, the node's memory and the database's size; then verify throughput over a Zipf-distributed
sample of those keys with L1 smaller than the working set, and the share of lookups each cache
tier answered.

Run from the project root after `cargo build --release`:
    python3 workspace-tests/bench/import_bench.py
Needs wrk (Debian package `wrk`), PostgreSQL and Redis.
Environment: BENCH_KEYS (1000000), BENCH_SAMPLE (200000 distinct keys drawn from), BENCH_ZIPF
(1.1, the exponent), BENCH_L1 (20000 entries), BENCH_SECONDS (10), BENCH_ROUNDS (3),
BENCH_CONNECTIONS (32), BENCH_DATABASE_URL, BENCH_REDIS_URL."""
import hashlib, json, os, random, re, subprocess, sys, tempfile, time, urllib.request, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "1000000"))
SAMPLE = int(os.environ.get("BENCH_SAMPLE", "200000"))
ZIPF = float(os.environ.get("BENCH_ZIPF", "1.1"))
L1 = int(os.environ.get("BENCH_L1", "20000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH = 10_000


def secret(i):
    """A foreign key, deterministic: 40 characters no Keyroll head starts."""
    return f"lk-{i:07d}-" + hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:29]


def rss_kib(pid):
    """(current, peak) resident memory of a process, KiB."""
    text = open(f"/proc/{pid}/status").read()
    get = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1))
    return get("VmRSS"), get("VmHWM")


def post(url, path, body, token):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read().decode())


def tiers(url):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for tier, result, n in re.findall(r'keyroll_cache_lookups_total\{tier="(\w+)",result="(\w+)"\} (\d+)', text):
        out[(tier, result)] = int(n)
    return out


def psql(db_url, sql):
    return subprocess.run(["psql", db_url, "-Atc", sql], capture_output=True, text=True, check=True).stdout.strip()


def zipf_lua(path, keys_path):
    """A wrk script drawing keys by a Zipf law over the sample in `keys_path` (one per line): the
    key of rank r with weight 1/r^s."""
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write(f'local keys_path, s = "{keys_path}", {ZIPF}\n')
        f.write("""
local keys, cdf = {}, {}
for line in io.lines(keys_path) do keys[#keys + 1] = line end
local total = 0
for r = 1, #keys do total = total + 1 / r ^ s end
local acc = 0
for r = 1, #keys do acc = acc + (1 / r ^ s) / total; cdf[r] = acc end
local n = #cdf
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
request = function()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format(nil, "/v1/verify", nil, '{"key":"' .. keys[lo] .. '"}')
end
""")


def main():
    if not os.path.exists(vb.BIN):
        sys.exit(f"build first: cargo build --release ({vb.BIN} is missing)")
    admin = vb.PG.rsplit("/", 1)[0]
    name = "kr_bench_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", vb.PG, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    db_url = f"{admin}/{name}"
    env = {"KEYROLL_DATABASE_URL": db_url, "KEYROLL_REDIS_URL": vb.REDIS,
           "KEYROLL_REDIS_PREFIX": f"bench{uuid.uuid4().hex[:8]}:",
           "KEYROLL_MASTER_KEY": "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=",
           "KEYROLL_CACHE__L1_CAPACITY": str(L1)}
    proc, url, _, data, root = vb.start_with_root(env)
    try:
        api = post(url, "/v1/apis", {"name": "Legacy", "key_prefix": "legacy", "environment": "live"}, root)
        req = urllib.request.Request(url + f"/v1/apis/{api['id']}", data=json.dumps({"legacy_key_formats": True}).encode(),
                                     method="PATCH", headers={"content-type": "application/json", "authorization": f"Bearer {root}"})
        urllib.request.urlopen(req, timeout=10).read()
        before = rss_kib(proc.pid)
        print(f"importing {KEYS:,} keys in calls of {BATCH:,} (PostgreSQL + Redis, L1 {L1:,})")
        started = time.monotonic()
        slowest, imported, consumers = 0.0, 0, 0
        for start in range(0, KEYS, BATCH):
            keys = [{"plaintext": secret(i), "api_id": api["id"], "external_id": f"cus_{i // 10:06d}"}
                    for i in range(start, min(start + BATCH, KEYS))]
            t = time.monotonic()
            r = post(url, "/v1/keys/import", {"import_id": f"bench-{start}", "keys": keys}, root)
            slowest = max(slowest, time.monotonic() - t)
            assert not r["errors"], r["errors"][:3]
            imported += r["imported"]
            consumers += r["consumers_created"]
        took = time.monotonic() - started
        after = rss_kib(proc.pid)
        size = psql(db_url, "SELECT pg_size_pretty(pg_total_relation_size('keys')), pg_size_pretty(pg_database_size(current_database()))")
        print(f"  imported {imported:,} keys and {consumers:,} consumers in {took:.1f} s "
              f"({imported / took:,.0f} keys/s; slowest call {slowest:.2f} s)")
        print(f"  node memory: {before[0] / 1024:.0f} MiB before, {after[0] / 1024:.0f} MiB after, peak {after[1] / 1024:.0f} MiB")
        print(f"  PostgreSQL: keys table with indexes {size.split('|')[0]}, whole database {size.split('|')[1]}")

        # Verification over a Zipf-distributed sample, L1 smaller than the working set.
        rng = random.Random(7)
        sample = [secret(i) for i in rng.sample(range(KEYS), SAMPLE)]
        assert vb.http("POST", url + "/v1/verify", {"key": sample[0]})["code"] == "VALID"
        keys_file = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        keys_file.write("\n".join(sample) + "\n")
        keys_file.close()
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False).name
        zipf_lua(lua, keys_file.name)
        print(f"verify: Zipf s={ZIPF} over {SAMPLE:,} of the keys, L1 holds {L1:,}; wrk {vb.CONNS} connections, {SECONDS} s rounds")
        for n in range(1, ROUNDS + 1):
            t0 = tiers(url)
            out = subprocess.run(["wrk", "-t2", f"-c{vb.CONNS}", f"-d{SECONDS}s", "--latency", "-s", lua, url],
                                 capture_output=True, text=True, check=True).stdout
            t1 = tiers(url)
            rps, p50, p99, errors = vb.parse_wrk(out)
            d = {k: t1.get(k, 0) - t0.get(k, 0) for k in t1}
            lookups = d.get(("l1", "hit"), 0) + d.get(("l1", "miss"), 0)
            share = lambda tier: 100.0 * d.get((tier, "hit"), 0) / max(lookups, 1)
            print(f"  round {n}: {rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, non-2xx {errors}; "
                  f"answered by L1 {share('l1'):.1f} %, L2 {share('l2'):.1f} %, database {share('database'):.1f} %")
        os.unlink(lua)
        os.unlink(keys_file.name)
        print(f"  node memory after the rounds: {rss_kib(proc.pid)[0] / 1024:.0f} MiB")
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["psql", vb.PG, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=False)


if __name__ == "__main__":
    main()
