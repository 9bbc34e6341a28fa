#!/usr/bin/env python3
"""What writing usage counts costs: a node holding BENCH_KEYS imported keys (10 000), every one
cached, verifies each of them many times in a wrk round; then, with no load, the node's next
usage flush writes a count and a `last_used_at` for every key. Over that quiet window the bench
reads the CPU time of the node (its threads, from /proc) and of every PostgreSQL process (the
backends, the WAL writer, autovacuum), and prints them per flush. A window of the same length
with no round before it gives what an idle node and database cost anyway (the log tail, the job
poller), so the flush's own cost is the difference.

Embedded (SQLite), then PostgreSQL + Redis; with BENCH_BIN_BEFORE (an earlier Keyroll build) each
configuration also runs a node of it, and the two nodes take turns, round by round.

Run from the project root:  python3 workspace-tests/bench/flush_bench.py
Needs wrk; PostgreSQL and Redis for the second configuration (skipped, with a word, if absent).
Environment: BENCH_KEYS (10000), BENCH_ROUNDS (4), BENCH_SECONDS (3), BENCH_FLUSH_MS (the
flush interval, 5000 as shipped), BENCH_BIN, BENCH_BIN_BEFORE, BENCH_DATABASE_URL, BENCH_REDIS_URL."""
import glob, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_bench as vb  # noqa: E402
import verify_limit_bench as vl  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def process_ms(pid):
    """User + kernel CPU of one process, summed over its threads, in ms."""
    user, kernel, _ = vl.threads_cpu(pid)
    return (user + kernel) * TICK_MS


def postgres_ms():
    """User + kernel CPU of every PostgreSQL process now running, in ms, by pid."""
    out = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = open(stat).read()
        except OSError:
            continue
        if text[text.index("(") + 1:text.rindex(")")].startswith("postgres"):
            fields = text[text.rindex(")") + 2:].split()
            out[stat] = (int(fields[11]) + int(fields[12])) * TICK_MS
    return out


def window(pid, seconds):
    """The node's and PostgreSQL's CPU over `seconds` of quiet, in ms."""
    node, pg = process_ms(pid), postgres_ms()
    time.sleep(seconds)
    pg_after = postgres_ms()
    # A process that started meanwhile (an autovacuum worker) counts from zero.
    return process_ms(pid) - node, sum(v - pg.get(k, 0) for k, v in pg_after.items())


def main():
    if not os.environ.get("BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "keyroll"], check=True)
    builds = [("", vb.BIN)] + ([(" (before)", os.environ["BENCH_BIN_BEFORE"])] if os.environ.get("BENCH_BIN_BEFORE") else [])
    pg = subprocess.run(["psql", vb.PG, "-qc", "SELECT 1"], capture_output=True).returncode == 0
    if not pg:
        print("  PostgreSQL not reachable at BENCH_DATABASE_URL: only the embedded configuration is measured")
    tmp = tempfile.mkdtemp(prefix="kr-flush-")
    keys_path, lua = os.path.join(tmp, "keys.txt"), os.path.join(tmp, "cycle.lua")
    quiet = vl.FLUSH_MS / 1000 + 1.5
    print(f"{vl.KEYS:,} keys, flush every {vl.FLUSH_MS} ms, {SECONDS} s rounds, a quiet window of {quiet:.1f} s after each")
    dbs = []
    try:
        for config in ["embedded"] + (["postgres+redis"] if pg else []):
            nodes = []
            try:
                for suffix, binary in builds:
                    env = {} if config == "embedded" else vl.postgres_env(dbs)
                    proc, url = vl.keyroll(config + suffix, env, keys_path, lua, binary)
                    nodes.append((suffix, proc, url))
                time.sleep(quiet)  # the counts of the warm-up are flushed
                results = {suffix: [] for suffix, _ in builds}
                for r in range(ROUNDS):
                    for suffix, proc, url in nodes:
                        idle = window(proc.pid, quiet)
                        got = vl.wrk(url, lua, SECONDS)
                        flush = window(proc.pid, quiet)
                        results[suffix].append((flush[0] - idle[0], flush[1] - idle[1]))
                        print(f"  round {r + 1}, {config}{suffix}: {got[0]:,.0f} verifications/s; quiet window after the "
                              f"round: node {flush[0]:.0f} ms, PostgreSQL {flush[1]:.0f} ms; idle window: node {idle[0]:.0f} ms, "
                              f"PostgreSQL {idle[1]:.0f} ms")
            finally:
                for _, proc, _ in nodes:
                    proc.terminate()
                    proc.wait()
            for suffix, _ in builds:
                node = statistics.median(n for n, _ in results[suffix])
                db_ms = statistics.median(p for _, p in results[suffix])
                print(f"  {config}{suffix}: one flush of {vl.KEYS:,} keys, median over {ROUNDS} rounds: node {node:.0f} ms of CPU, "
                      f"PostgreSQL {db_ms:.0f} ms (idle windows subtracted)")
    finally:
        for db in dbs:
            subprocess.run(["psql", vb.PG, "-qc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'], capture_output=True)
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
