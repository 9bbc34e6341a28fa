#!/usr/bin/env python3
"""Instructions per verification, counted by valgrind's callgrind (a count, not a time: the same
for the same binary and inputs however loaded the machine is), for the bare handler of
verify_limit_bench.py and for Keyroll's POST /v1/verify on cached keys (embedded).

Each server runs under callgrind; one keep-alive client verifies every key once (warming L1),
the counters are zeroed, then BENCH_VERIFICATIONS verifications cycle through the keys. Printed:
instructions per verification in the whole process and in the HTTP dispatcher (the request path,
without background tasks); with BENCH_CACHE_SIM=1 also callgrind's cache model (a last-level
cache of BENCH_LL_BYTES), in misses per verification.

Run from the project root after `cargo build --release` (and `-p bare-verify`):
    python3 workspace-tests/bench/verify_instructions.py
Needs valgrind. Environment: BENCH_KEYS (2000), BENCH_VERIFICATIONS (4000), BENCH_BIN,
BENCH_BIN_BEFORE (an earlier Keyroll build, counted too), BENCH_BARE_BIN, BENCH_CACHE_SIM,
BENCH_LL_BYTES (2097152), BENCH_TOP (with BENCH_CACHE_SIM: list the functions that miss the
last-level cache most, this many), BENCH_KEEP (a directory: each server's callgrind output is
kept there, for callgrind_annotate)."""
import http.client, json, os, random, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402
import verify_limit_bench as vl  # noqa: E402
from import_bench import post  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "2000"))
N = int(os.environ.get("BENCH_VERIFICATIONS", "4000"))
CACHE_SIM = os.environ.get("BENCH_CACHE_SIM") == "1"
LL = int(os.environ.get("BENCH_LL_BYTES", "2097152"))
TOP = int(os.environ.get("BENCH_TOP", "0"))
KEEP = os.environ.get("BENCH_KEEP")
DISPATCHER = "<actix_http::h1::dispatcher::Dispatcher<T,S,B,X,U> as core::future::future::Future>::poll"


def verify_all(port, keys, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for i in range(n):
        c.request("POST", "/v1/verify", json.dumps({"key": keys[i % len(keys)]}), {"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, body
    c.close()


def wait(port):
    for _ in range(1200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/healthz")
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing answers on {port} under valgrind")


def prepare(binary):
    """A data directory holding KEYS imported keys, and the keys."""
    proc, url, data, env = vb.serve({}, binary)
    try:
        root = vb.tenant_root(env, binary)
        api = post(url, "/v1/apis", {"name": "Limit", "key_prefix": "limit", "environment": "live"}, root)
        rng = random.Random(7)
        keys = [vl.native_key("limit_live_", rng) for _ in range(KEYS)]
        batch = [{"plaintext": k, "api_id": api["id"], "external_id": f"cus_{i // 10:06d}"} for i, k in enumerate(keys)]
        r = post(url, "/v1/keys/import", {"import_id": "instructions", "keys": batch}, root)
        assert not r["errors"], r["errors"][:3]
    finally:
        proc.terminate()
        proc.wait(30)
    return data, env, keys


def count(label, argv, env, port, keys, tmp):
    out = os.path.join(tmp, "callgrind.out")
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
    if CACHE_SIM:
        args += ["--cache-sim=yes", f"--LL={LL},16,64"]
    p = subprocess.Popen(args + argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(port)
        verify_all(port, keys, len(keys) + 200)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True)
        verify_all(port, keys, N)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
    finally:
        p.terminate()
        p.wait(120)
    dumps = sorted(f for f in os.listdir(tmp) if f.startswith("callgrind.out."))
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", os.path.join(tmp, dumps[-1])],
                          capture_output=True, text=True, check=True).stdout
    top = []
    if CACHE_SIM and TOP:
        by_miss = subprocess.run(["callgrind_annotate", "--show=DLmr", "--sort=DLmr", "--threshold=100", os.path.join(tmp, dumps[-1])],
                                 capture_output=True, text=True, check=True).stdout
        top = [ln for ln in by_miss.split("\n") if re.match(r"\s*[\d,]+\s+\(", ln)][1:TOP + 1]
    if KEEP:
        os.makedirs(KEEP, exist_ok=True)
        shutil.copy(os.path.join(tmp, dumps[-1]), os.path.join(KEEP, re.sub(r"\W+", "-", label).strip("-") + ".callgrind"))
    for f in os.listdir(tmp):
        if f.startswith("callgrind.out"):
            os.unlink(os.path.join(tmp, f))
    events = re.search(r"Events shown:\s+(.*)", text).group(1).split()

    def row(name):
        for line in text.split("\n"):
            if line.rstrip().endswith(name) or f"{name} [" in line:
                return [int(x.replace(",", "")) for x in re.findall(r"([\d,]+)\s+\(\s*[\d.]+%\)", line)]
        return [0] * len(events)

    total, disp = dict(zip(events, row("PROGRAM TOTALS"))), dict(zip(events, row(DISPATCHER)))
    line = f"  {label}: {total['Ir'] / N:,.0f} instructions per verification, {disp['Ir'] / N:,.0f} in the HTTP dispatcher"
    if CACHE_SIM:
        line += (f"; misses per verification: L1 data read {total['D1mr'] / N:,.1f}, write {total['D1mw'] / N:,.1f}, "
                 f"last level read {total['DLmr'] / N:,.1f}, write {total['DLmw'] / N:,.1f}")
    print(line, flush=True)
    for ln in top:
        fields = ln.split()
        print(f"    {int(fields[0].replace(',', '')) / N:6.2f} last-level read misses per verification  {' '.join(fields[2:])[:150]}")


def main():
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (Debian package valgrind)")
    bare = vl.BARE
    builds = [("Keyroll", vb.BIN)] + ([("Keyroll (before)", os.environ["BENCH_BIN_BEFORE"])]
                                     if os.environ.get("BENCH_BIN_BEFORE") else [])
    data, env, keys = prepare(vb.BIN)
    tmp = tempfile.mkdtemp(prefix="kr-instr-")
    try:
        print(f"{KEYS:,} keys, {N:,} verifications counted" + (f", last-level cache {LL:,} bytes" if CACHE_SIM else ""))
        port = vb.free_port()
        count("bare handler", [bare, f"127.0.0.1:{port}"], dict(os.environ), port, keys, tmp)
        for label, binary in builds:
            port = vb.free_port()
            # Counts are flushed after the run, not during it: a flush's cost depends on time,
            # which valgrind stretches.
            e = dict(env, KEYROLL_LISTEN=f"127.0.0.1:{port}", KEYROLL_USAGE_FLUSH_INTERVAL_MS="3600000")
            count(label, [binary, "serve"], e, port, keys, tmp)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
