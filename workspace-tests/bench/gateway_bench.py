#!/usr/bin/env python3
"""The gateway endpoint against /v1/verify on one embedded node, in alternating rounds with the
same load: POST /v1/verify {"key"} and GET /v1/gateway/auth with the key in Authorization and
the original request in X-Original-Method/-URI, matched against three route rules. Prints
requests/s and p99 per round and the median ratio gateway/verify.

Run from the project root:  python3 workspace-tests/bench/gateway_bench.py
Needs wrk (Debian package `wrk`). Environment: BENCH_SECONDS (default 5), BENCH_ROUNDS (5),
BENCH_CONNECTIONS (32), BENCH_BIN (a built keyroll binary; else it is built in release)."""
import json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402


def wrk_get(url, headers):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write("".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items()))
    script.close()
    args = ["wrk", "-t2", f"-c{vb.CONNS}", f"-d{vb.SECONDS}s", "--latency", "-s", script.name, url]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    os.unlink(script.name)
    return vb.parse_wrk(out)


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    proc, url, body, data, root = vb.start_with_root({})
    try:
        key = json.loads(body)["key"]
        api = vb.http("POST", url + "/v1/verify", {"key": key})["api_id"]
        vb.http("PATCH", url + f"/v1/apis/{api}", {"gateway": {"routes": [
            {"method": "GET", "path_prefix": "/orders", "scopes": ["orders:read"]},
            {"method": "POST", "path_prefix": "/orders", "scopes": ["orders:write"]},
            {"path_prefix": "/health"},
        ]}}, root)
        gateway_url = f"{url}/v1/gateway/auth?api_id={api}"
        headers = {"Authorization": f"Bearer {key}", "X-Original-Method": "GET", "X-Original-URI": "/orders/7?x=1"}
        vb.wrk(url, "/v1/verify", body, seconds=2)  # warm-up: the key is cached from here on
        wrk_get(gateway_url, headers)
        rounds = []
        for _ in range(vb.ROUNDS):
            rounds.append((vb.wrk(url, "/v1/verify", body), wrk_get(gateway_url, headers)))
        print(f"\n== /v1/gateway/auth against /v1/verify ({vb.CONNS} connections, {vb.ROUNDS} alternating rounds "
              f"of {vb.SECONDS} s, wrk -t2, embedded)")
        for i, (v, g) in enumerate(rounds, 1):
            print(f"  round {i}: verify {v[0]:>8.0f} req/s (p99 {vb.fmt(v[2])})   gateway {g[0]:>8.0f} req/s "
                  f"(p99 {vb.fmt(g[2])})   gateway/verify {g[0] / v[0]:.3f}   non-2xx {v[3] + g[3]}")
        ratios = sorted(g[0] / v[0] for v, g in rounds)
        print(f"  median gateway/verify: {ratios[len(ratios) // 2]:.3f}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
