#!/usr/bin/env python3
"""Dashboard speed for a team with 10 000 keys (1 000 consumers with 10 keys each) besides a
consumer with 1 000 key versions (10 lineages of 100 versions, 100 versions a page): every main
page, the API hub with its filters, the header search and the pickers, fetched over one
keep-alive connection. Prints p50/p90/p99 in milliseconds as the client saw them (an upper bound
of the server's time: loopback adds well under 0.1 ms).

Run from the project root:  python3 workspace-tests/bench/page_bench.py
Environment: BENCH_DATABASE_URL (PostgreSQL instead of the embedded SQLite), BENCH_REQUESTS (300),
BENCH_KEYS (10000), BENCH_SETTLE (seconds after the import, 20), BENCH_KEEP (keep the SQLite data directory, to look into)."""
import http.client, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.parse, uuid

ROOT = os.getcwd()
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "keyroll")
PG = os.environ.get("BENCH_DATABASE_URL")
N = int(os.environ.get("BENCH_REQUESTS", "300"))
KEYS = int(os.environ.get("BENCH_KEYS", "10000"))


class Conn:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies = {}

    def req(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.c.request(method, path, body=body, headers=h)
        r = self.c.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, value = v.split(";", 1)[0].split("=", 1)
                self.cookies[name] = value
        if r.status in (302, 303) and method == "POST":
            return self.req("GET", r.getheader("location"))
        return r.status, data.decode()

    def api(self, method, path, root, body=None):
        st, text = self.req(method, path, json.dumps(body) if body is not None else None,
                            {"authorization": f"Bearer {root}", "content-type": "application/json"})
        return st, json.loads(text or "null")


def main():
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    data = tempfile.mkdtemp(prefix="kr-pages-")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, KEYROLL_DATA_DIR=data, KEYROLL_LISTEN=f"127.0.0.1:{port}", RUST_LOG="warn")
    db = None
    if PG:
        db = f"kr_bench_{uuid.uuid4().hex[:12]}"
        subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"], check=True)
        env["KEYROLL_DATABASE_URL"] = PG.rsplit("/", 1)[0] + "/" + db
    proc = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        c = Conn(port)
        st, page = c.req("GET", "/setup")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrf": csrf, "team": "Bench", "name": "Ann", "email": "ann@bench.test",
                                       "password": "correct horse battery"})
        st, page = c.req("POST", "/setup", form, {"content-type": "application/x-www-form-urlencoded"})
        root = re.search(r"kr_root_\w+", page).group(0)
        st, api = c.api("POST", "/v1/apis", root, {"name": "Orders", "key_prefix": "acme", "environment": "live"})
        st, con = c.api("POST", "/v1/consumers", root, {"external_id": "cus_1", "name": "Big Customer"})
        t0 = time.time()
        newest = None
        for lineage in range(10):
            st, k = c.api("POST", "/v1/keys", root, {"api_id": api["id"], "consumer_id": con["id"], "name": f"key {lineage}"})
            kid = k["key"]["id"]
            for _ in range(99):
                st, r = c.api("POST", f"/v1/keys/{kid}/rotate", root, {"overlap_seconds": 0})
                assert st == 201, r
                kid = r["key"]["id"]
            newest = kid
        print(f"made 1000 key versions in {time.time() - t0:.1f} s")
        t0 = time.time()
        some_key = None
        for i in range(KEYS // 10):
            st, cc = c.api("POST", "/v1/consumers", root,
                           {"external_id": f"cus_bulk_{i}", "name": f"Customer {i}", "email": f"c{i}@example.test"})
            assert st == 201, cc
            for j in range(10):
                st, k = c.api("POST", "/v1/keys", root,
                              {"api_id": api["id"], "consumer_id": cc["id"], "name": f"key {i}-{j}"})
                assert st == 201, k
                some_key = k
        print(f"made {KEYS // 10} consumers with 10 keys each in {time.time() - t0:.1f} s")
        # What a team in use has: the import digested by the background jobs (expiry notices,
        # the invalidation log) and, on PostgreSQL, the table vacuumed and analysed, as
        # autovacuum does within a minute of such an import.
        if PG:
            subprocess.run(["psql", env["KEYROLL_DATABASE_URL"], "-qc", "VACUUM ANALYZE"], check=True)
        time.sleep(int(os.environ.get("BENCH_SETTLE", "20")))
        c.c.close()
        c.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def measure(path):
            for _ in range(20):
                c.req("GET", path)
            times = []
            for _ in range(N):
                t = time.perf_counter()
                st, body = c.req("GET", path)
                times.append((time.perf_counter() - t) * 1000)
                assert st == 200, (st, body[:200])
            times.sort()
            q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
            print(f"  {path[:60]:<60} {len(body) / 1024:6.1f} KiB: "
                  f"p50 {statistics.median(times):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms")
            return statistics.median(times)

        total = KEYS + 1000
        print(f"\n== dashboard pages on {'PostgreSQL' if PG else 'SQLite'}, {total} keys in the team, "
              f"{N} requests each, one connection")
        start = some_key["key"]["start"]
        a = api["id"]
        st, first = c.req("GET", f"/app/consumers/{con['id']}")
        cursor = re.search(r"cursor=([\w-]+)", first)
        st, hub = c.req("GET", f"/app/apis/{a}")
        hub_next = re.search(r"cursor=([\w-]+)#keys", hub)
        pages = [
            "/app",
            "/app/apis",
            f"/app/apis/{a}",
            f"/app/apis/{a}?state=valid" + (f"&cursor={hub_next.group(1)}" if hub_next else ""),
            f"/app/apis/{a}?q={start}",
            f"/app/apis/{a}?q=key+512",
            "/app/consumers",
            "/app/consumers?q=customer+77",
            f"/app/consumers/{con['id']}",
            f"/app/consumers/{con['id']}?cursor={cursor.group(1)}" if cursor else None,
            f"/app/consumers/{some_key['key']['consumer_id']}",
            f"/app/keys/{newest}",
            f"/app/keys/{some_key['key']['id']}",
            f"/app/keys/new?api_id={a}",
            f"/app/keys/new?api_id={a}&consumer_q=customer+9",
            f"/app/search?q={start}",
            "/app/search?q=customer+42",
            "/app/policies",
            "/app/playbooks",
            "/app/playbooks/leaked_key",
            "/app/alerts",
            "/app/audit",
            "/app/team",
            "/app/account",
        ]
        medians = [(p, measure(p)) for p in pages if p]
        worst = max(medians, key=lambda m: m[1])
        print(f"\nslowest page at p50: {worst[0]} {worst[1]:.2f} ms; "
              f"{sum(1 for _, m in medians if m < 10)} of {len(medians)} pages under 10 ms at p50")
    finally:
        proc.terminate()
        proc.wait(10)
        if db and not os.environ.get("BENCH_KEEP"):
            subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
        elif db:
            print(f"database kept: {db}")
        if os.environ.get("BENCH_KEEP"):
            print(f"data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    # Ends through the `finally` blocks, as Ctrl-C does (see verify_bench.py).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
