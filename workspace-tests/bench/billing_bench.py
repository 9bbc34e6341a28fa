#!/usr/bin/env python3
"""What billing costs on the verify path: two embedded nodes in one run, one with billing off
and one with billing on (a plan whose monthly allowance the bench goes far beyond, the team's
own Stripe account connected, its consumer mapped to a Stripe customer and its API to a meter
event), driven in alternating rounds with the same load; prints requests/s and p99 per round
and the median ratio on/off. The verify path reads no plan and writes nothing for billing: the
meter reads the same counts the usage pages read, after the hour closes.

Run from the project root:  python3 workspace-tests/bench/billing_bench.py
Needs wrk (Debian package `wrk`). Environment: BENCH_SECONDS (default 5), BENCH_ROUNDS (5),
BENCH_CONNECTIONS (32), BENCH_BIN (a built keyroll binary; else it is built in release)."""
import json, os, shutil, subprocess, sys, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402

RECORDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop", "stripe_recorder.py")


def recorder():
    proc = subprocess.Popen([sys.executable, RECORDER], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().strip())
    return proc, f"http://127.0.0.1:{port}"


def bill_consumers(url, token, body):
    """Connects the team's Stripe account and maps the bench key's consumer and API."""
    key = json.loads(body)["key"]
    v = vb.http("POST", url + "/v1/verify", {"key": key})
    consumer, api = v["consumer"]["id"], v["api_id"]
    vb.http("PUT", url + "/v1/billing/stripe/connection", {"stripe_key": "rk_test_51BenchRestrictedKey"}, token)
    vb.http("PATCH", url + f"/v1/consumers/{consumer}", {"stripe_customer_id": "cus_BenchOne"}, token)
    vb.http("PATCH", url + f"/v1/apis/{api}", {"stripe_meter_event": "bench_requests"}, token)


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    stripe, base = recorder()
    on_env = {
        "KEYROLL_BILLING__STRIPE_SECRET_KEY": "sk_test_bench",
        "KEYROLL_BILLING__STRIPE_API_BASE": base,
        "KEYROLL_BILLING__PLANS__FREE__NAME": "Free",
        "KEYROLL_BILLING__PLANS__FREE__LIMITS__VERIFICATIONS_PER_MONTH": "1000",
    }
    nodes = []
    try:
        off = vb.start({})
        nodes.append(off)
        on = start_billed(on_env)
        nodes.append(on)
        for n in nodes:
            vb.wrk(n[1], "/v1/verify", n[2], seconds=2)  # warm-up: the key is cached from here on
        rounds = []
        for _ in range(vb.ROUNDS):
            rounds.append((vb.wrk(off[1], "/v1/verify", off[2]), vb.wrk(on[1], "/v1/verify", on[2])))
        print(f"\n== POST /v1/verify, billing off and on ({vb.CONNS} connections, {vb.ROUNDS} alternating rounds "
              f"of {vb.SECONDS} s, wrk -t2, embedded)")
        for i, (a, b) in enumerate(rounds, 1):
            print(f"  round {i}: off {a[0]:>8.0f} req/s (p99 {vb.fmt(a[2])})   on {b[0]:>8.0f} req/s "
                  f"(p99 {vb.fmt(b[2])})   on/off {b[0] / a[0]:.3f}   non-2xx {a[3] + b[3]}")
        ratios = sorted(b[0] / a[0] for a, b in rounds)
        print(f"  median on/off: {ratios[len(ratios) // 2]:.3f}")
        used = vb.http("GET", on[1] + "/v1/billing", None, on[4])
        print(f"  billed team: {used['usage']['verifications']} verifications this period against an allowance of "
              f"{used['limits']['verifications_per_month']} (overage {used['overage']}); none refused")
    finally:
        for n in nodes:
            n[0].terminate()
            n[0].wait(10)
            shutil.rmtree(n[3], ignore_errors=True)
        stripe.terminate()


def start_billed(env):
    """A billed node: like verify_bench's, plus the consumer billing set-up."""
    proc, url, body, data, root = vb.start_with_root(env)
    bill_consumers(url, root, body)
    return proc, url, body, data, root


if __name__ == "__main__":
    try:
        main()
    except urllib.error.HTTPError as e:
        sys.exit(f"{e.code} {e.read().decode()}")
