#!/usr/bin/env python3
"""Token issuance benchmark: POST /v1/oauth/token (client credentials for a cached key) beside
POST /v1/verify for the same key, with the same load generator in one run, interleaved, and
prints requests/s, p50/p99 and the ratio token/verify, for the embedded default and (when
reachable) PostgreSQL + Redis.

Run from the project root:  python3 workspace-tests/bench/token_bench.py
Needs wrk (Debian package `wrk`). Environment as verify_bench.py: BENCH_SECONDS (5),
BENCH_ROUNDS (3), BENCH_CONNECTIONS (32), BENCH_BIN, BENCH_DATABASE_URL, BENCH_REDIS_URL."""
import json, os, shutil, subprocess, sys, tempfile, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402


def wrk_token(url, secret, seconds=None):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "POST"\n'
                 'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
                 f'wrk.headers["Authorization"] = "Bearer {secret}"\n'
                 'wrk.body = "grant_type=client_credentials&scope=orders:read"\n')
    script.close()
    args = ["wrk", "-t2", f"-c{vb.CONNS}", f"-d{seconds or vb.SECONDS}s", "--latency", "-s", script.name]
    out = subprocess.run(args + [url + "/v1/oauth/token"], capture_output=True, text=True).stdout
    os.unlink(script.name)
    return vb.parse_wrk(out)


def run(label, env_extra):
    proc, url, body, data = vb.start(env_extra)
    secret = json.loads(body)["key"]
    try:
        vb.wrk(url, "/v1/verify", body, seconds=2)
        wrk_token(url, secret, seconds=2)  # warm-up: the key and the signing key are held from here on
        rounds = [(vb.wrk(url, "/v1/verify", body), wrk_token(url, secret)) for _ in range(vb.ROUNDS)]
        print(f"\n== {label} ({vb.CONNS} connections, {vb.ROUNDS} rounds of {vb.SECONDS} s per endpoint, wrk -t2)")
        for i, (v, t) in enumerate(rounds, 1):
            print(f"  round {i}: POST /v1/verify {v[0]:>8.0f} req/s (p50 {vb.fmt(v[1])}, p99 {vb.fmt(v[2])})   "
                  f"POST /v1/oauth/token {t[0]:>8.0f} req/s (p50 {vb.fmt(t[1])}, p99 {vb.fmt(t[2])})   "
                  f"ratio {t[0] / v[0]:.3f}   non-2xx {v[3] + t[3]}")
        ratios = sorted(t[0] / v[0] for v, t in rounds)
        tokens = sorted(t[0] for _, t in rounds)
        print(f"  median tokens/s: {tokens[len(tokens) // 2]:.0f}   median ratio token/verify: {ratios[len(ratios) // 2]:.3f}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    run("embedded (SQLite + in-process cache)", {})
    db = f"kr_bench_{uuid.uuid4().hex[:12]}"
    if shutil.which("psql") and subprocess.run(["psql", vb.PG, "-qc", f"CREATE DATABASE {db}"]).returncode == 0:
        try:
            run("PostgreSQL + Redis (warm cache)", {"KEYROLL_DATABASE_URL": vb.PG.rsplit("/", 1)[0] + "/" + db,
                                                   "KEYROLL_REDIS_URL": vb.REDIS,
                                                   "KEYROLL_REDIS_PREFIX": f"{db}:",
                                                   # Nodes on PostgreSQL keep signing keys sealed with a shared master key.
                                                   "KEYROLL_MASTER_KEY": "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM="})
        finally:
            subprocess.run(["psql", vb.PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
    else:
        print("\n(PostgreSQL not reachable: skipped the PostgreSQL + Redis run)")


if __name__ == "__main__":
    main()
