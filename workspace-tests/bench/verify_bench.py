#!/usr/bin/env python3
"""Verify-path benchmark: drives POST /v1/verify (a valid, cached key) and GET /healthz with
the same load generator in one run, and prints requests/s, p50/p99 latency and the ratio
verify/healthz, for the embedded default and (when reachable) PostgreSQL + Redis.
Then a fixed-rate run at half the measured verify peak, for p99 under moderate load.

Run from the project root:  python3 workspace-tests/bench/verify_bench.py
Needs wrk (Debian package `wrk`) and, for the fixed-rate run, oha (`cargo install oha`).
Environment: BENCH_SECONDS (default 5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32),
BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_REDIS_URL (redis://127.0.0.1:6379)."""
import atexit, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request, uuid

# A SIGTERM (what `timeout` sends) ends a bench through its `finally` blocks, as Ctrl-C does: the
# servers it started are stopped and its databases dropped. Every bench that imports this module
# gets it; the others set it themselves.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

ROOT = os.getcwd()
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "keyroll")
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(method, url, body=None, token=None):
    h = {"content-type": "application/json"}
    if token:
        h["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=h), timeout=10) as r:
        return json.loads(r.read().decode() or "null")


def start(env_extra):
    """A node with a team, an API, a consumer and a cached key: (process, url, verify body, data dir)."""
    return start_with_root(env_extra)[:4]


def serve(env_extra, binary=None, prefix="kr-bench-"):
    """A node of `binary` (BENCH_BIN) on its own port and data directory, once it answers
    /readyz: (process, url, data dir, its environment)."""
    port = free_port()
    data = tempfile.mkdtemp(prefix=prefix)
    # Removed when the bench ends, however it ends, after its `finally` has stopped the node.
    atexit.register(shutil.rmtree, data, True)
    env = dict(os.environ, KEYROLL_LISTEN=f"127.0.0.1:{port}", KEYROLL_DATA_DIR=data, RUST_LOG="warn", **env_extra)
    proc = subprocess.Popen([binary or BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    return proc, url, data, env


def tenant_root(env, binary=None):
    """A new team's root key, from the command line."""
    out = subprocess.run([binary or BIN, "tenant", "create", "--name", "Bench", "--owner-email", "ops@bench.test", "--json"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["root_key"]


def start_with_root(env_extra, binary=None):
    """The same, with the team's root key last."""
    proc, url, data, env = serve(env_extra, binary)
    root = tenant_root(env, binary)
    api = http("POST", url + "/v1/apis", {"name": "Bench", "key_prefix": "bench", "environment": "live"}, root)
    con = http("POST", url + "/v1/consumers", {"external_id": "cus_bench", "name": "Bench"}, root)
    key = http("POST", url + "/v1/keys", {"api_id": api["id"], "consumer_id": con["id"], "scopes": ["orders:*"]}, root)
    secret = key["secret"]
    body = json.dumps({"key": secret, "scopes": ["orders:read"]})
    assert http("POST", url + "/v1/verify", json.loads(body))["code"] == "VALID"
    return proc, url, body, data, root


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, val, unit in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(val) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, lat.get("50"), lat.get("99"), int(errors.group(1)) if errors else 0


def wrk(url, path, body=None, seconds=None):
    script = None
    args = ["wrk", "-t2", f"-c{CONNS}", f"-d{seconds or SECONDS}s", "--latency"]
    if body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(body)}\n")
        script.close()
        args += ["-s", script.name]
    out = subprocess.run(args + [url + path], capture_output=True, text=True).stdout
    if script:
        os.unlink(script.name)
    return parse_wrk(out)


def oha(url, body, rate, path="/v1/verify"):
    if not shutil.which("oha"):
        return None
    args = ["oha", "--no-tui", "--latency-correction", "--output-format", "json", "-z", f"{SECONDS}s", "-c", str(CONNS),
            "-q", str(int(rate))]
    if body is not None:
        args += ["-m", "POST", "-H", "content-type: application/json", "-d", body]
    out = subprocess.run(args + [url + path], capture_output=True, text=True).stdout
    try:
        d = json.loads(out)
    except json.JSONDecodeError:
        return None
    p = d.get("latencyPercentiles", {})
    return d["summary"]["requestsPerSec"], p.get("p50", 0) * 1000, p.get("p99", 0) * 1000


def fmt(ms):
    return "n/a" if ms is None else f"{ms:.3f} ms"


def run(label, env_extra):
    proc, url, body, data = start(env_extra)
    try:
        wrk(url, "/v1/verify", body, seconds=2)  # warm-up: the key is cached from here on
        # Interleaved rounds on a shared machine: each ratio compares two neighbouring runs.
        rounds = []
        for _ in range(ROUNDS):
            rounds.append((wrk(url, "/healthz"), wrk(url, "/v1/verify", body)))
        print(f"\n== {label} ({CONNS} connections, {ROUNDS} rounds of {SECONDS} s per endpoint, wrk -t2)")
        for i, (h, v) in enumerate(rounds, 1):
            print(f"  round {i}: GET /healthz {h[0]:>8.0f} req/s (p50 {fmt(h[1])}, p99 {fmt(h[2])})   "
                  f"POST /v1/verify {v[0]:>8.0f} req/s (p50 {fmt(v[1])}, p99 {fmt(v[2])})   "
                  f"ratio {v[0] / h[0]:.3f}   non-2xx {h[3] + v[3]}")
        ratios = sorted(v[0] / h[0] for h, v in rounds)
        v = sorted((v for _, v in rounds), key=lambda x: x[0])[len(rounds) // 2]
        print(f"  median ratio verify/healthz: {ratios[len(ratios) // 2]:.3f}")
        half = oha(url, body, v[0] / 2)
        if half:
            base = oha(url, None, v[0] / 2, "/healthz")
            print(f"  at half the verify peak ({v[0] / 2:.0f} req/s target, oha -q, latency-corrected):")
            print(f"    POST /v1/verify  {half[0]:>8.0f} req/s   p50 {fmt(half[1])}   p99 {fmt(half[2])}")
            if base:
                print(f"    GET  /healthz    {base[0]:>8.0f} req/s   p50 {fmt(base[1])}   p99 {fmt(base[2])}"
                      "   (the machine's own floor at that rate)")
        else:
            print("  (oha not found: skipped the fixed-rate run; cargo install oha)")
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
    if shutil.which("psql") and subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"]).returncode == 0:
        try:
            run("PostgreSQL + Redis (warm cache)", {"KEYROLL_DATABASE_URL": PG.rsplit("/", 1)[0] + "/" + db,
                                                   "KEYROLL_REDIS_URL": REDIS,
                                                   "KEYROLL_REDIS_PREFIX": f"{db}:"})
        finally:
            subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
    else:
        print("\n(PostgreSQL not reachable: skipped the PostgreSQL + Redis run)")


if __name__ == "__main__":
    main()
