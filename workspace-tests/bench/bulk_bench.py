#!/usr/bin/env python3
"""Bulk rotation on PostgreSQL: N current keys (default 100 000, spread over 1 000 consumers with
an email each and one tenant webhook endpoint, so every rotation queues notifications) are
rotated, each time on a fresh database:
  floor     bulk_floor.sql: the same rows written by set-based SQL in one transaction, no
            application in between (the database's floor for this work);
  bulk      one POST /v1/rotations/bulk; the time until its job is done;
  playbook  the built-in "Breach: mass rotation" playbook (approval, rotate, notify, validate),
            started with one root key and approved with a second; the time from the approval
            until the run has completed, its validation included.
Prints the times and the server's CPU and peak memory, and with `floor` and `bulk` both run, the ratio
of each bulk run to the floor runs' median (the target is at most 1.5). BENCH_ROUNDS repeats the
modes in turn, so both are measured alternately on the same machine in one run.

Run from the project root:  python3 workspace-tests/bench/bulk_bench.py
Environment: BENCH_MODES (floor,bulk,playbook), BENCH_ROUNDS (1), BENCH_KEYS (100000), BENCH_DATABASE_URL, BENCH_REDIS_URL; BENCH_PG_STATS=1 also
prints the statements the database spent its time on (needs pg_stat_statements in the server's
shared_preload_libraries)."""
import http.client, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, uuid

ROOT = os.getcwd()
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "keyroll")
N = int(os.environ.get("BENCH_KEYS", "100000"))
PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def call(port, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"content-type": "application/json", "authorization": f"Bearer {token}"} if token else {"content-type": "application/json"}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """User plus system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    modes = [m.strip() for m in os.environ.get("BENCH_MODES", "floor,bulk,playbook").split(",")]
    took = {}
    for _ in range(int(os.environ.get("BENCH_ROUNDS", "1"))):
        for mode in modes:
            took.setdefault(mode, []).append(measure(mode))
    if took.get("floor") and took.get("bulk"):
        floor = statistics.median(took["floor"])
        ratios = ", ".join(f"{t / floor:.2f}" for t in took["bulk"])
        print(f"\n== bulk rotation against the floor ({N} keys)")
        print(f"  floor {', '.join(f'{t:.2f}' for t in took['floor'])} s (median {floor:.2f} s)")
        print(f"  bulk  {', '.join(f'{t:.2f}' for t in took['bulk'])} s: {ratios} × the floor (target ≤ 1.5)")


def wait_done(port, root, path, done):
    while True:
        st, body = call(port, "GET", path, None, root)
        if done(body):
            return body
        time.sleep(0.05)


def measure(mode):
    db = f"kr_bench_{uuid.uuid4().hex[:12]}"
    url = PG.rsplit("/", 1)[0] + "/" + db
    subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"], check=True)
    data = tempfile.mkdtemp(prefix="kr-bulk-")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, KEYROLL_DATABASE_URL=url, KEYROLL_REDIS_URL=REDIS, KEYROLL_REDIS_PREFIX=f"{db}:",
               KEYROLL_DATA_DIR=data, KEYROLL_LISTEN=f"127.0.0.1:{port}", RUST_LOG="warn",
               KEYROLL_MASTER_KEY="a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=", KEYROLL_JOBS__POLL_MS="50",
               # Deliveries stay queued during the measurement (nobody listens at the endpoint).
               KEYROLL_NOTIFY__POLL_MS="600000", KEYROLL_WEBHOOKS__ALLOW_PRIVATE="true")
    proc = None
    try:
        subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
        out = subprocess.run([BIN, "tenant", "create", "--name", "Bench", "--owner-email", "ops@bench.test", "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
        t = json.loads(out.strip().splitlines()[-1])
        proc = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        st, api = call(port, "POST", "/v1/apis", {"name": "Bulk", "key_prefix": "bulk", "environment": "live"}, t["root_key"])
        st, hook = call(port, "POST", "/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, t["root_key"])
        assert st == 201, hook
        tid, aid = t["tenant_id"], api["id"]
        t0 = time.time()
        sql = f"""
        INSERT INTO consumers (id, tenant_id, external_id, name, email, meta, created_at, updated_at)
          SELECT 'con_bench' || lpad(i::text, 21, '0'), '{tid}', 'cus_' || i, 'Customer ' || i,
                 'c' || i || '@bench.test', '{{}}', now(), now() FROM generate_series(1, 1000) i;
        INSERT INTO keys (id, tenant_id, api_id, consumer_id, lineage_id, version, is_root, hash, start, name, scopes,
                          meta, enabled, created_at, updated_at)
          SELECT 'key_bench' || lpad(i::text, 21, '0'), '{tid}', '{aid}', 'con_bench' || lpad((i % 1000 + 1)::text, 21, '0'),
                 'key_bench' || lpad(i::text, 21, '0'), 1, false, md5(i::text) || md5((i + 7)::text), 'bulk_live_x' || i,
                 'k', '["orders:*"]', '{{}}', true, now() - interval '1 hour', now() FROM generate_series(1, {N}) i;
        """
        subprocess.run(["psql", url, "-qc", sql], check=True)
        print(f"seeded {N} keys in {time.time() - t0:.1f} s")
        base = rss_kib(proc.pid, "VmRSS:")
        if mode == "bulk":
            st, dry = call(port, "POST", "/v1/rotations/bulk", {"api_id": aid, "dry_run": True, "overlap_seconds": 600}, t["root_key"])
            assert dry["keys"] == N, dry
        elif mode == "playbook":
            st, second = call(port, "POST", "/v1/root-keys", {"scopes": ["playbooks:run", "keys:read"]}, t["root_key"])
            st, started = call(port, "POST", "/v1/playbooks/mass_rotation/runs", {"target": {"api_id": aid}}, t["root_key"])
            assert st == 202, started
            assert started["plan"]["steps"][1]["keys"] == N, started["plan"]
            run_path = f"/v1/playbook-runs/{started['run']['id']}"
            wait_done(port, t["root_key"], run_path, lambda r: r["state"] == "awaiting_approval")
        stats = os.environ.get("BENCH_PG_STATS") == "1"
        if stats:
            subprocess.run(["psql", url, "-qc", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()"],
                           check=True, capture_output=True)
        cpu0 = cpu_s(proc.pid)
        t1 = time.perf_counter()
        if mode == "floor":
            # BENCH_FLOOR_TIMING=1 prints each statement's time.
            timing = ["-e", "-c", "\\timing on"] if os.environ.get("BENCH_FLOOR_TIMING") == "1" else []
            subprocess.run(["psql", url, "-q", "-v", f"tenant={tid}", "-v", f"api={aid}", "-v", "actor=root_key:bench",
                            *timing, "-f", os.path.join(ROOT, "workspace-tests", "bench", "bulk_floor.sql")], check=True)
            outcome = "one transaction of set-based SQL"
        elif mode == "bulk":
            st, run = call(port, "POST", "/v1/rotations/bulk", {"api_id": aid, "overlap_seconds": 600, "compromise": True}, t["root_key"])
            assert st == 202, run
            job = wait_done(port, t["root_key"], f"/v1/jobs/{run['job_id']}", lambda j: j["state"] in ("done", "failed"))
            outcome = f"job {job['state']}; progress {job['progress']}"
        else:
            st, ok = call(port, "POST", f"{run_path}/approve", {}, second["secret"])
            assert st == 200, ok
            run = wait_done(port, t["root_key"], run_path, lambda r: r["state"] in ("completed", "failed"))
            outcome = f"run {run['state']} {run.get('error') or ''}; steps " + ", ".join(
                f"{s['step']['kind']} {s['state']}" for s in run["steps"])
        took = time.perf_counter() - t1
        peak = rss_kib(proc.pid, "VmHWM:")
        cpu = cpu_s(proc.pid) - cpu0
        counts = subprocess.run(["psql", url, "-Atc",
                                 "SELECT (SELECT count(*) FROM rotations), (SELECT count(*) FROM events), "
                                 "(SELECT count(*) FROM deliveries), (SELECT count(*) FROM pending_secrets), "
                                 "(SELECT count(*) FROM keys), (SELECT count(*) FROM audit_events)"], capture_output=True, text=True).stdout.strip()
        title = {"floor": "floor (bulk_floor.sql)", "bulk": "bulk rotation"}.get(mode, "mass-rotation playbook")
        print(f"\n== {title} on PostgreSQL, {N} keys")
        print(f"  {took:.2f} s ({N / took:.0f} keys/s); {outcome}")
        print(f"  server CPU {cpu:.2f} s ({100 * cpu / took:.0f} % of one core)")
        print(f"  server RSS before {base / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB")
        print(f"  rotations | events | deliveries queued | secrets held | keys | audit entries: {counts}")
        if stats:
            # Where the database spent its time (needs pg_stat_statements preloaded).
            print(subprocess.run(["psql", url, "-c",
                                  "SELECT round(total_exec_time::numeric / 1000, 2) AS seconds, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query "
                                  "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"],
                                 capture_output=True, text=True).stdout)
        return took
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
        subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    # Ends through the `finally` blocks, as Ctrl-C does (see verify_bench.py).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
