#!/usr/bin/env python3
"""The figures of docs/capacity.md: verifications per core-second of the node answered from L1,
from L2 (Redis) and from the database; memory per cached key in L1 and in Redis; and what an
idle node costs PostgreSQL and Redis (the price of each extra node).

Per core-second: the node's own CPU time (utime + stime from /proc) during a wrk round, so the
figure does not depend on how many cores wrk, Redis and PostgreSQL take on the same machine.

Run from the project root after `cargo build --release`:
    python3 workspace-tests/bench/capacity_bench.py
Needs wrk, psql, redis-cli, PostgreSQL and Redis.
Environment: BENCH_KEYS (30000), BENCH_SECONDS (8), BENCH_CONNECTIONS (32), BENCH_DATABASE_URL,
BENCH_REDIS_URL, BENCH_BIN."""
import json, os, re, subprocess, sys, tempfile, time, urllib.request, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402
from import_bench import post, psql, rss_kib, secret, tiers  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "30000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
BATCH = 10_000
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def redis_cli(*args):
    host, port = re.match(r"redis://([^:/]+):?(\d*)", vb.REDIS).groups()
    cmd = ["redis-cli", "-h", host, "-p", port or "6379", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def redis_cpu():
    info = redis_cli("INFO", "cpu")
    get = lambda k: float(re.search(rf"^{k}:([\d.]+)", info, re.M).group(1))
    return get("used_cpu_user") + get("used_cpu_sys")


def cycle_lua(path, keys_path):
    """A wrk script going through the keys in turn (each thread from its own offset)."""
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write(f'local keys_path = "{keys_path}"\n')
        f.write("""
local keys = {}
for line in io.lines(keys_path) do keys[#keys + 1] = line end
local i = 0
setup = function(thread) thread:set("offset", math.random(#keys)) end
request = function()
  i = i + 1
  local k = keys[((i + (offset or 0)) % #keys) + 1]
  return wrk.format(nil, "/v1/verify", nil, '{"key":"' .. k .. '"}')
end
""")


def round_on(proc, url, lua, label):
    t0, c0, r0, w0 = tiers(url), cpu_seconds(proc.pid), redis_cpu(), time.monotonic()
    out = subprocess.run(["wrk", "-t2", f"-c{vb.CONNS}", f"-d{SECONDS}s", "--latency", "-s", lua, url],
                         capture_output=True, text=True, check=True).stdout
    t1, c1, r1, w1 = tiers(url), cpu_seconds(proc.pid), redis_cpu(), time.monotonic()
    rps, p50, p99, errors = vb.parse_wrk(out)
    d = {k: t1.get(k, 0) - t0.get(k, 0) for k in t1}
    lookups = max(d.get(("l1", "hit"), 0) + d.get(("l1", "miss"), 0), 1)
    share = lambda tier: 100.0 * d.get((tier, "hit"), 0) / lookups
    node_cores = (c1 - c0) / (w1 - w0)
    redis_per_k = (r1 - r0) / max(rps * (w1 - w0), 1) * 1e6
    print(f"  {label}: {rps:>8,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, non-2xx {errors}; "
          f"L1 {share('l1'):.1f} %, L2 {share('l2'):.1f} %, database {share('database'):.1f} %; "
          f"node CPU {node_cores:.2f} cores -> {rps / max(node_cores, 0.01):>8,.0f} verifications per core-second; "
          f"Redis CPU {redis_per_k:.1f} us per verification")


def node(env, extra):
    """A node on the shared database with its own settings."""
    proc, url, _, _ = vb.serve({**env, **extra}, prefix="kr-cap-")
    return proc, url


def stop(proc):
    proc.terminate()
    proc.wait(30)


def main():
    if not os.path.exists(vb.BIN):
        sys.exit(f"build first: cargo build --release ({vb.BIN} is missing)")
    admin = vb.PG.rsplit("/", 1)[0]
    name = "kr_bench_" + uuid.uuid4().hex[:12]
    prefix = f"cap{uuid.uuid4().hex[:8]}:"
    subprocess.run(["psql", vb.PG, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    db_url = f"{admin}/{name}"
    env = {"KEYROLL_DATABASE_URL": db_url, "KEYROLL_REDIS_URL": vb.REDIS, "KEYROLL_REDIS_PREFIX": prefix,
           "KEYROLL_MASTER_KEY": "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM="}
    proc, url, _, data, root = vb.start_with_root(dict(env, KEYROLL_CACHE__L1_CAPACITY=str(KEYS * 2)))
    keys_file = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False).name
    others = []
    try:
        api = post(url, "/v1/apis", {"name": "Legacy", "key_prefix": "legacy", "environment": "live"}, root)
        req = urllib.request.Request(url + f"/v1/apis/{api['id']}", data=json.dumps({"legacy_key_formats": True}).encode(),
                                     method="PATCH", headers={"content-type": "application/json", "authorization": f"Bearer {root}"})
        urllib.request.urlopen(req, timeout=10).read()
        for start in range(0, KEYS, BATCH):
            keys = [{"plaintext": secret(i), "api_id": api["id"], "external_id": f"cus_{i // 10:06d}"}
                    for i in range(start, min(start + BATCH, KEYS))]
            r = post(url, "/v1/keys/import", {"import_id": f"cap-{start}", "keys": keys}, root)
            assert not r["errors"], r["errors"][:3]
        keys_file.write("\n".join(secret(i) for i in range(KEYS)) + "\n")
        keys_file.close()
        cycle_lua(lua, keys_file.name)
        print(f"{KEYS:,} keys; wrk {vb.CONNS} connections, {SECONDS} s rounds, on {os.cpu_count()} cores shared by all")

        # Memory: the node's RSS and Redis's memory before and after every key is cached. First
        # the import's announcements settle (every node drops cached misses for new keys, and
        # records read within seconds of them are read again).
        time.sleep(10)
        before = rss_kib(proc.pid)[0]
        redis_before = int(re.search(r"used_memory:(\d+)", redis_cli("INFO", "memory")).group(1))
        for _ in range(12):
            subprocess.run(["wrk", "-t2", "-c16", "-d5s", "-s", lua, url], capture_output=True, check=True)
            first = tiers(url)
            if first.get(("database", "hit"), 0) >= KEYS * 0.99:
                break
        assert first.get(("database", "hit"), 0) >= KEYS * 0.99, f"not every key was read: {first}"
        after = rss_kib(proc.pid)[0]
        redis_after = int(re.search(r"used_memory:(\d+)", redis_cli("INFO", "memory")).group(1))
        sample = redis_cli("--scan", "--pattern", f"{prefix}kr:*:rec").split()[:500]
        usage = [int(redis_cli("MEMORY", "USAGE", k).strip() or 0) for k in sample]
        print("memory per cached key:")
        print(f"  L1 (node RSS): {before / 1024:.0f} MiB -> {after / 1024:.0f} MiB for {KEYS:,} records: "
              f"{(after - before) * 1024 / KEYS:,.0f} bytes per key")
        print(f"  Redis: used_memory {redis_before / 2**20:.1f} MiB -> {redis_after / 2**20:.1f} MiB: "
              f"{(redis_after - redis_before) / KEYS:,.0f} bytes per key; MEMORY USAGE of {len(usage)} records "
              f"averages {sum(usage) / max(len(usage), 1):,.0f} bytes")

        print("verification by the tier that answers (keys in turn):")
        subprocess.run(["wrk", "-t2", "-c16", "-d3s", "-s", lua, url], capture_output=True, check=True)
        round_on(proc, url, lua, "L1        ")
        # L2: a node whose L1 keeps almost nothing, so Redis answers.
        p2, u2 = node(env, {"KEYROLL_CACHE__L1_CAPACITY": "16"})
        others.append(p2)
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", "-s", lua, u2], capture_output=True, check=True)
        round_on(p2, u2, lua, "L2 (Redis)")
        # The database: no Redis, and an L1 that keeps almost nothing.
        p3, u3 = node({k: v for k, v in env.items() if k not in ("KEYROLL_REDIS_URL", "KEYROLL_REDIS_PREFIX")},
                      {"KEYROLL_CACHE__L1_CAPACITY": "16"})
        others.append(p3)
        round_on(p3, u3, lua, "database  ")
        for p in others:
            stop(p)
        others.clear()

        # What an idle node costs PostgreSQL and Redis.
        print("idle cost per node (10 s without traffic):")
        for n in (1, 3):
            extra = [node(env, {}) for _ in range(n - 1)]
            others.extend(p for p, _ in extra)
            time.sleep(3)
            q0 = int(psql(db_url, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"))
            r0 = int(re.search(r"total_commands_processed:(\d+)", redis_cli("INFO", "stats")).group(1))
            time.sleep(10)
            q1 = int(psql(db_url, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"))
            r1 = int(re.search(r"total_commands_processed:(\d+)", redis_cli("INFO", "stats")).group(1))
            print(f"  {n} node(s): PostgreSQL {(q1 - q0) / 10:.1f} transactions/s, Redis {(r1 - r0) / 10:.1f} commands/s "
                  "(the shared Redis: other clients count too)")
            for p in others:
                stop(p)
            others.clear()
    finally:
        for p in others:
            stop(p)
        stop(proc)
        os.unlink(lua)
        os.unlink(keys_file.name)
        subprocess.run(["psql", vb.PG, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=False)


if __name__ == "__main__":
    main()
