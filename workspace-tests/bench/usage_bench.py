#!/usr/bin/env python3
"""Usage-counting overhead on the verify path: two servers in one run, identical but for
KEYROLL_USAGE__COUNTING (true, the default, vs false), driven in alternating rounds by the same
load generator with POST /v1/verify over many keys and client addresses (so the counters hold
many cells and addresses, as in production). Prints, per round, requests/s and the server's own
CPU time per verification (user + system, from /proc; steadier than throughput on a shared
machine), then the medians and the overhead of counting by both measures. Target: at most 5 %.

Run from the project root:  python3 workspace-tests/bench/usage_bench.py
Needs wrk (Debian package `wrk`). Environment: BENCH_SECONDS (default 5), BENCH_ROUNDS (5),
BENCH_CONNECTIONS (32), BENCH_KEYS (200)."""
import json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "200"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def bodies(url, root, api_id, con_id):
    out = []
    for i in range(KEYS):
        key = vb.http("POST", url + "/v1/keys", {"api_id": api_id, "consumer_id": con_id, "scopes": ["orders:*"]}, root)
        out.append(json.dumps({"key": key["secret"], "scopes": ["orders:read"], "ip": f"198.51.100.{i % 250 + 1}"}))
    return out


def start(counting):
    proc, url, _, data = vb.start({"KEYROLL_USAGE__COUNTING": "true" if counting else "false"})
    env = dict(os.environ, KEYROLL_DATA_DIR=data, RUST_LOG="warn")
    out = subprocess.run([vb.BIN, "tenant", "create", "--name", "Load", "--owner-email", "ops@load.test", "--json"],
                         env=env, capture_output=True, text=True, check=True).stdout
    root = json.loads(out.strip().splitlines()[-1])["root_key"]
    api = vb.http("POST", url + "/v1/apis", {"name": "Load", "key_prefix": "load", "environment": "live"}, root)
    con = vb.http("POST", url + "/v1/consumers", {"external_id": "cus_load", "name": "Load"}, root)
    return proc, url, data, bodies(url, root, api["id"], con["id"])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(server, seconds):
    """wrk against one server: (requests/s, p99, non-2xx, server CPU microseconds per request)."""
    before = cpu_seconds(server[0].pid)
    rps, _, p99, errors = wrk(server[1], server[3], seconds)
    cpu = cpu_seconds(server[0].pid) - before
    return rps, p99, errors, 1e6 * cpu / max(rps * seconds, 1)


def wrk(url, bodies, seconds):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal bodies = {\n')
    script.write(",\n".join(json.dumps(b) for b in bodies))
    script.write("\n}\nlocal i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
                 "  return wrk.format(nil, nil, nil, bodies[i])\nend\n")
    script.close()
    out = subprocess.run(["wrk", "-t2", f"-c{vb.CONNS}", f"-d{seconds}s", "--latency", "-s", script.name,
                          url + "/v1/verify"], capture_output=True, text=True).stdout
    os.unlink(script.name)
    return vb.parse_wrk(out)


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    on = start(True)
    off = start(False)
    try:
        for s in (on, off):
            wrk(s[1], s[3], 2)  # warm-up: every key cached
        rows = []
        for r in range(ROUNDS):
            # Alternate which goes first, so neither always runs on a warmer machine.
            order = [("counting", on), ("off", off)] if r % 2 == 0 else [("off", off), ("counting", on)]
            got = {name: measured(s, vb.SECONDS) for name, s in order}
            rows.append(got)
        print(f"\n== usage counting on vs off: embedded SQLite, {KEYS} keys, {vb.CONNS} connections, "
              f"{ROUNDS} rounds of {vb.SECONDS} s, wrk -t2")
        for i, g in enumerate(rows, 1):
            c, o = g["counting"], g["off"]
            print(f"  round {i}: counting {c[0]:>8.0f} req/s {c[3]:6.2f} us CPU/req (p99 {vb.fmt(c[1])})   "
                  f"off {o[0]:>8.0f} req/s {o[3]:6.2f} us CPU/req (p99 {vb.fmt(o[1])})   non-2xx {c[2] + o[2]}")
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        c = med([g["counting"][0] for g in rows])
        o = med([g["off"][0] for g in rows])
        ratios = [g["counting"][0] / g["off"][0] for g in rows]
        cc = med([g["counting"][3] for g in rows])
        oc = med([g["off"][3] for g in rows])
        cpu_ratios = [g["counting"][3] / g["off"][3] for g in rows]
        print(f"  throughput: median counting {c:.0f} req/s, off {o:.0f} req/s; median round ratio "
              f"{med(ratios):.3f}: overhead {100 * (1 - med(ratios)):.1f} % (target <= 5 %)")
        print(f"  server CPU per verification: median counting {cc:.2f} us, off {oc:.2f} us; median round ratio "
              f"{med(cpu_ratios):.3f}: overhead {100 * (med(cpu_ratios) - 1):.1f} % (target <= 5 %)")
    finally:
        for s in (on, off):
            s[0].terminate()
            s[0].wait(10)
            shutil.rmtree(s[2], ignore_errors=True)


if __name__ == "__main__":
    main()
