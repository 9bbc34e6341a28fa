#!/usr/bin/env python3
"""Verify speed while Redis is down: one node on PostgreSQL and a Redis server of this script's own
(on a free port), POST /v1/verify driven with wrk while Redis is healthy, then after Redis was
killed — first with L1 as configured (the hot key answered from memory), then with L1 holding
100 entries and 2 000 keys verified in turn (nearly every verification goes to Redis, or, while
it is down, to the database): the case a circuit breaker exists for. Prints requests/s, p50/p99
and the ratios. wrk keeps 32 requests in flight, so its p50 is mostly queueing once the database
is the bottleneck; each case is therefore also run at a fixed rate (BENCH_RATE, 500/s, from 4
paced keep-alive connections), where p50 is the latency one verification takes.

Run from the project root:  python3 workspace-tests/bench/outage_bench.py
Needs wrk and redis-server. Environment: BENCH_SECONDS (5), BENCH_CONNECTIONS (32),
BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_BIN."""
import os, shutil, socket, subprocess, sys, tempfile, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402
import usage_bench as ub  # noqa: E402


def redis_server(port, workdir):
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not come up")


def many_bodies(url, n):
    # The command writes to the database of ENV; its own data directory holds nothing to keep.
    with tempfile.TemporaryDirectory(prefix="kr-outage-cli-") as data_dir:
        out = subprocess.run([vb.BIN, "tenant", "create", "--name", "Many", "--owner-email", "ops@many.test", "--json"],
                             env=dict(os.environ, KEYROLL_DATA_DIR=data_dir, **ENV), capture_output=True,
                             text=True, check=True).stdout
    root = __import__("json").loads(out.strip().splitlines()[-1])["root_key"]
    api = vb.http("POST", url + "/v1/apis", {"name": "Many", "key_prefix": "many", "environment": "live"}, root)
    con = vb.http("POST", url + "/v1/consumers", {"external_id": "cus_many", "name": "Many"}, root)
    ub.KEYS = n
    return ub.bodies(url, root, api["id"], con["id"])


ENV = {}
RATE = int(os.environ.get("BENCH_RATE", "500"))


def paced(url, bodies, seconds=5, conns=4):
    """Sends `RATE` requests a second for `seconds`, spread over `conns` keep-alive connections, each
    on its own schedule (a late request does not push the next one back); returns (p50, p99) ms."""
    import http.client, threading  # noqa: E401
    host, port = url.split("//")[1].split(":")
    lat, lock = [], threading.Lock()
    per = RATE / conns

    def one(k):
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        t0, n, mine = time.perf_counter(), 0, []
        while True:
            due = t0 + n / per
            if due - t0 > seconds:
                break
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            body = bodies[(n * conns + k) % len(bodies)]
            sent = time.perf_counter()
            c.request("POST", "/v1/verify", body=body, headers={"Content-Type": "application/json"})
            c.getresponse().read()
            mine.append((time.perf_counter() - sent) * 1000)
            n += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


def run(label, extra, keys=0):
    port = vb.free_port()
    workdir = tempfile.mkdtemp(prefix="kr-outage-")
    redis = redis_server(port, workdir)
    db = f"kr_bench_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", vb.PG, "-qc", f"CREATE DATABASE {db}"], check=True)
    env = {"KEYROLL_DATABASE_URL": vb.PG.rsplit("/", 1)[0] + "/" + db, "KEYROLL_REDIS_URL": f"redis://127.0.0.1:{port}",
           "KEYROLL_REDIS_PREFIX": f"{db}:", **extra}
    proc, url, body, data = vb.start(env)
    ENV.clear()
    ENV.update(env)
    try:
        if keys:
            bodies = many_bodies(url, keys)
            load = lambda seconds=None: ub.wrk(url, bodies, seconds or vb.SECONDS)  # noqa: E731
        else:
            bodies = [__import__("json").dumps(body) if not isinstance(body, str) else body]
            load = lambda seconds=None: vb.wrk(url, "/v1/verify", body, seconds=seconds)  # noqa: E731
        load(2)
        healthy = load()
        healthy_paced = paced(url, bodies)
        redis.kill()
        redis.wait()
        time.sleep(1)
        load(1)
        down = load()
        down_paced = paced(url, bodies)
        print(f"\n== {label} ({vb.CONNS} connections, {vb.SECONDS} s each, wrk -t2)")
        for name, r in (("Redis healthy", healthy), ("Redis killed", down)):
            print(f"  {name:14} {r[0]:>8.0f} req/s   p50 {vb.fmt(r[1])}   p99 {vb.fmt(r[2])}   non-2xx {r[3]}")
        if healthy[1] and down[1]:
            print(f"  p50 down/healthy: {down[1] / healthy[1]:.2f}   throughput down/healthy: {down[0] / healthy[0]:.2f}")
        print(f"  at {RATE}/s:  healthy p50 {vb.fmt(healthy_paced[0])} p99 {vb.fmt(healthy_paced[1])}   "
              f"killed p50 {vb.fmt(down_paced[0])} p99 {vb.fmt(down_paced[1])}   "
              f"p50 down/healthy: {down_paced[0] / healthy_paced[0]:.2f}")
    finally:
        proc.terminate()
        proc.wait(10)
        if redis.poll() is None:
            redis.kill()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        subprocess.run(["psql", vb.PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


def main():
    for tool in ("wrk", "redis-server", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    run("L1 as configured (a hot key)", {})
    run("L1 of 100 entries, 2 000 keys in turn (Redis or the database answers)", {"KEYROLL_CACHE__L1_CAPACITY": "100"},
        keys=2000)


if __name__ == "__main__":
    main()
