#!/usr/bin/env python3
"""Revocation propagation across three nodes sharing PostgreSQL and Redis: for each of N keys,
warm the key into the caches of nodes B and C, revoke it through node A, and measure how long
until B and C answer REVOKED (both are polled in parallel threads). Prints p50/p90/p99/max.

Run from the project root:  python3 workspace-tests/bench/propagation_bench.py
Environment: BENCH_KEYS (default 200), BENCH_DATABASE_URL, BENCH_REDIS_URL."""
import http.client, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time, uuid

ROOT = os.getcwd()
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "keyroll")
KEYS = int(os.environ.get("BENCH_KEYS", "200"))
PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Client:
    """One keep-alive connection per node and thread."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method, path, body=None, token=None):
        h = {"content-type": "application/json"}
        if token:
            h["authorization"] = f"Bearer {token}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        return json.loads(data) if data else None

    def code(self, key):
        return self.call("POST", "/v1/verify", {"key": key})["code"]


def start_node(env, port):
    proc = subprocess.Popen([BIN, "serve"], env=dict(env, KEYROLL_LISTEN=f"127.0.0.1:{port}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    sys.exit("a node did not start")


def main():
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    db = f"kr_bench_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"], check=True)
    data = tempfile.mkdtemp(prefix="kr-prop-")
    env = dict(os.environ, KEYROLL_DATABASE_URL=PG.rsplit("/", 1)[0] + "/" + db, KEYROLL_REDIS_URL=REDIS,
               KEYROLL_REDIS_PREFIX=f"{db}:", KEYROLL_DATA_DIR=data, RUST_LOG="warn", KEYROLL_WORKERS="1")
    ports = [free_port() for _ in range(3)]
    procs = []
    try:
        # Migrations run once, then three nodes.
        subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
        procs = [start_node(env, p) for p in ports]
        out = subprocess.run([BIN, "tenant", "create", "--name", "Bench", "--owner-email", "ops@bench.test", "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
        root = json.loads(out.strip().splitlines()[-1])["root_key"]
        a, b, c = (Client(p) for p in ports)
        api = a.call("POST", "/v1/apis", {"name": "B", "key_prefix": "prop", "environment": "live"}, root)
        con = a.call("POST", "/v1/consumers", {"external_id": "c", "name": "C"}, root)
        keys = []
        for _ in range(KEYS):
            k = a.call("POST", "/v1/keys", {"api_id": api["id"], "consumer_id": con["id"]}, root)
            keys.append((k["key"]["id"], k["secret"]))
        for _, secret in keys:
            assert b.code(secret) == "VALID" and c.code(secret) == "VALID"
        results = []
        for key_id, secret in keys:
            seen = {}

            def watch(port, name):
                cl = Client(port)
                while cl.code(secret) != "REVOKED":
                    pass
                seen[name] = time.perf_counter()

            threads = [threading.Thread(target=watch, args=(p, n)) for p, n in ((ports[1], "b"), (ports[2], "c"))]
            t0 = time.perf_counter()
            a.call("POST", f"/v1/keys/{key_id}/revoke", {"reason": "bench"}, root)
            t_commit = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
            # From the moment the revoke call returned (committed) to the slower of B and C.
            done = max(seen.values()) if len(seen) == 2 else float("inf")
            results.append(((done - t_commit) * 1000, (done - t0) * 1000))
        print(f"\n== revocation propagation, 3 nodes (PostgreSQL + Redis), {KEYS} keys")
        for i, label in ((0, "from the revoke's 200 on node A"), (1, "from sending the revoke to node A")):
            xs = sorted(r[i] for r in results)
            q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
            print(f"  {label} until both B and C answer REVOKED:")
            print(f"    p50 {q(0.5):.2f} ms   p90 {q(0.9):.2f} ms   p99 {q(0.99):.2f} ms   max {xs[-1]:.2f} ms"
                  f"   mean {statistics.mean(xs):.2f} ms")
        print("  (includes starting the two polling threads and one verify round trip each)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    # Ends through the `finally` blocks, as Ctrl-C does (see verify_bench.py).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
