#!/usr/bin/env python3
"""Credits at scale: POST /v1/verify on one plain key and on one credit-limited key of the same
node (PostgreSQL + Redis), in alternating wrk rounds, with the ratio credit/plain per round, the
node's CPU per verification, the Redis script calls (round trips) per thousand verifications
(read from the server's own counters, so run it on a Redis nothing else uses meanwhile), and the
database writes to the balance row per second during the credit rounds.

With BENCH_BIN_BEFORE set to another build of keyroll (an earlier commit), the same rounds run
on it too, in the same run, for a before/after comparison.

Run from the project root:  python3 workspace-tests/bench/credits_bench.py
Needs wrk (Debian package `wrk`), psql, PostgreSQL and Redis.
Environment: BENCH_SECONDS (default 5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32),
BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_REDIS_URL (redis://127.0.0.1:6379),
BENCH_BIN (target/release/keyroll), BENCH_BIN_BEFORE (none)."""
import json, os, shutil, subprocess, sys, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402
from capacity_bench import cpu_seconds  # noqa: E402
from verify_bench import CONNS, PG, REDIS, ROUNDS, SECONDS, fmt, http, wrk  # noqa: E402

ROOT = os.getcwd()
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "keyroll")


def psql(db_url, sql):
    return subprocess.run(["psql", db_url, "-qAtc", sql], capture_output=True, text=True, check=True).stdout.strip()


def redis_scripts():
    """Script calls Redis has run so far (EVAL and EVALSHA)."""
    out = subprocess.run(["redis-cli", "-u", REDIS, "INFO", "commandstats"], capture_output=True, text=True).stdout
    calls = 0
    for line in out.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            calls += int(line.split("calls=")[1].split(",")[0])
    return calls


def measured(proc, url, body):
    """One wrk round, with the node's CPU µs per verification and Redis script calls per 1 000."""
    cpu, calls = cpu_seconds(proc.pid), redis_scripts()
    r = wrk(url, "/v1/verify", body)
    n = max(r[0] * SECONDS, 1)
    return r, (cpu_seconds(proc.pid) - cpu) * 1e6 / n, (redis_scripts() - calls) * 1000 / n


def node(binary, db_url, prefix):
    proc, url, data, env = vb.serve({"KEYROLL_DATABASE_URL": db_url, "KEYROLL_REDIS_URL": REDIS,
                                     "KEYROLL_REDIS_PREFIX": prefix,
                                     "KEYROLL_MASTER_KEY": "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM="},
                                    binary, prefix="kr-credits-")
    root = vb.tenant_root(env, binary)
    api = http("POST", url + "/v1/apis", {"name": "Bench", "key_prefix": "bench", "environment": "live"}, root)
    con = http("POST", url + "/v1/consumers", {"external_id": "cus_bench", "name": "Bench"}, root)
    plain = http("POST", url + "/v1/keys", {"api_id": api["id"], "consumer_id": con["id"]}, root)
    credit = http("POST", url + "/v1/keys", {"api_id": api["id"], "consumer_id": con["id"],
                                             "credits": {"remaining": 10**12}}, root)
    return proc, url, data, plain, credit


def run(label, binary):
    db = f"kr_bench_{uuid.uuid4().hex[:12]}"
    psql(PG, f"CREATE DATABASE {db}")
    db_url = PG.rsplit("/", 1)[0] + "/" + db
    proc, url, data, plain, credit = node(binary, db_url, f"{db}:")
    try:
        plain_body = json.dumps({"key": plain["secret"]})
        credit_body = json.dumps({"key": credit["secret"]})
        assert http("POST", url + "/v1/verify", {"key": credit["secret"]})["credits"]["remaining"] == 10**12 - 1
        wrk(url, "/v1/verify", plain_body, seconds=2)
        wrk(url, "/v1/verify", credit_body, seconds=2)
        print(f"\n== {label}: PostgreSQL + Redis, {CONNS} connections, {ROUNDS} rounds of {SECONDS} s per key, wrk -t2")
        ratios = []
        for i in range(1, ROUNDS + 1):
            p, p_cpu, p_cmds = measured(proc, url, plain_body)
            updates = int(psql(db_url, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'key_credits'") or 0)
            started = time.time()
            c, c_cpu, c_cmds = measured(proc, url, credit_body)
            # The statistics collector reports with a short delay.
            time.sleep(1.0)
            elapsed = time.time() - started
            updates = int(psql(db_url, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'key_credits'") or 0) - updates
            ratios.append(c[0] / p[0])
            print(f"  round {i}: plain key {p[0]:>8.0f} req/s (p50 {fmt(p[1])}, p99 {fmt(p[2])})   "
                  f"credit key {c[0]:>8.0f} req/s (p50 {fmt(c[1])}, p99 {fmt(c[2])})   ratio {c[0] / p[0]:.3f}   "
                  f"balance-row updates {updates / elapsed:>7.1f}/s   non-2xx {p[3] + c[3]}")
            print(f"           node CPU per verification: plain {p_cpu:.1f} µs, credit {c_cpu:.1f} µs   "
                  f"Redis script calls per 1 000 verifications: plain {p_cmds:.2f}, credit {c_cmds:.2f}")
        ratios.sort()
        print(f"  median ratio credit/plain: {ratios[len(ratios) // 2]:.3f}")
        time.sleep(6)  # one usage flush interval: the spends reach the database
        stored = int(psql(db_url, f"SELECT remaining FROM key_credits WHERE lineage_id = '{credit['key']['lineage_id']}'"))
        left = http("POST", url + "/v1/verify", {"key": credit["secret"], "cost": 0})["credits"]["remaining"]
        print(f"  balance after the rounds: {left} answered by the node, {stored} in the database")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)
        psql(PG, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if not shutil.which("psql"):
        sys.exit("psql not found: this benchmark needs PostgreSQL")
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    before = os.environ.get("BENCH_BIN_BEFORE")
    if before:
        run(f"before ({before})", before)
    run("this build", BIN)


if __name__ == "__main__":
    main()
