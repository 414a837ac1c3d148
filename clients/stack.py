#!/usr/bin/env python3
"""Runs clients/scenario.py against a stack of its own, on loopback.

Started by scripts/client-check.sh, which generates the Python client first;
alone:

    python3 clients/stack.py --work DIR --bin PATH --python VENV_PYTHON --client-path DIR

What it starts, each on a free loopback port, everything under DIR:

- a fresh database `stock_tracker_clients_<random>` on the local PostgreSQL
  (127.0.0.1:5432, user postgres), migrated with `stock-tracker migrate`;
- `stock-tracker serve` and `stock-tracker worker`, on RabbitMQ queues of
  the run's own and under a Redis key prefix of its own, so other runs and
  tests on the same servers are not disturbed;

then runs the scenario with VENV_PYTHON (the virtualenv with the generated
client's dependencies; --client-path is the directory holding the generated
package) and returns its exit code. Everything is stopped, the database
dropped, the queues and the run's Redis keys deleted on success, failure,
SIGINT or SIGTERM.

The process handling is the multi-replica check's (scripts/scale_check.py):
its `Stack` (spawn, readiness, logs, cleanup) and its service environment
(short retry delays, webhooks allowed to reach loopback over http on any
port, rate limits out of reach), narrowed here to one Redis and one replica
of each role. Python 3 standard library only.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import scale_check  # noqa: E402  (scripts/ is not a package)
from scale_check import Fail, Stack, free_port, pg_url, psql, run_bounded, say  # noqa: E402

REDIS_PORT = 6379
# Products the demo marketplace lists: enough for several pages at the
# scenario's page size, few enough for a sync of a second or two.
DEMO_PRODUCTS = 25
READY_SECS = 60  # each process, from its start
MIGRATE_SECS = 120
SCENARIO_SECS = 120
HARD_LIMIT_SECS = 240  # the whole run, whatever happens


def redis_prefix(stack):
    return f"client-check:{stack.run_id}:"


def service_env(stack, port, hook_host):
    """The multi-replica check's environment, on the single local Redis."""
    direct = pg_url(stack.db)
    env = scale_check.app_env(stack, [REDIS_PORT], direct, direct, False, port, hook_host)
    env.pop("STOCK_TRACKER__REDIS__CLUSTER_NODES", None)
    env.update({
        "STOCK_TRACKER__REDIS__KEY_PREFIX": redis_prefix(stack),
        "STOCK_TRACKER__WORKER__DEMO_PRODUCTS": str(DEMO_PRODUCTS),
    })
    return env


def drop_redis_keys(stack):
    """Deletes the run's keys from the shared Redis."""
    argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT)]
    try:
        keys = subprocess.run([*argv, "--scan", "--pattern", redis_prefix(stack) + "*"],
                              capture_output=True, text=True, timeout=30, check=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run([*argv, "DEL", *keys[i:i + 500]], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        print(f"warn cleanup: deleting the Redis keys {redis_prefix(stack)}*: {err}", file=sys.stderr)


def run(stack, args):
    if not os.access(stack.binary, os.X_OK):
        raise Fail(f"{stack.binary} not found or not executable")
    binary = str(stack.binary)

    psql(f'CREATE DATABASE "{stack.db}"')
    stack.db_created = True
    (stack.work / "database").write_text(stack.db + "\n")
    res = subprocess.run([binary, "migrate"], env={**scale_check.clean_env(), "DATABASE_URL": pg_url(stack.db)},
                         capture_output=True, text=True, timeout=MIGRATE_SECS, check=False)
    if res.returncode != 0:
        raise Fail(f"stock-tracker migrate failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    say(f"database {stack.db} created and migrated")

    # Some keys (cache generations, revocation markers) never expire.
    (stack.work / "redis-prefix").write_text(redis_prefix(stack) + "\n")
    stack.queues_used = True
    (stack.work / "queues").write_text("\n".join(stack.queues) + "\n")
    ports = {"api": free_port(), "worker": free_port()}
    stack.spawn("api", [binary, "serve"], service_env(stack, ports["api"], "127.0.0.1"))
    stack.spawn("worker", [binary, "worker"], service_env(stack, ports["worker"], "127.0.0.1"))
    base = f"http://127.0.0.1:{ports['api']}"
    stack.wait_http("api", f"{base}/api/v1/health/ready", READY_SECS)
    stack.wait_http("worker", f"http://127.0.0.1:{ports['worker']}/health/ready", READY_SECS)
    say(f"serve on {ports['api']}, worker on {ports['worker']}; queues {', '.join(stack.queues)}")

    env = {**os.environ, "PYTHONPATH": args.client_path, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        res = subprocess.run([args.python, str(ROOT / "clients" / "scenario.py"), "--base-url", base,
                              *(["--summary-file", args.summary_file] if args.summary_file else [])],
                             env=env, timeout=SCENARIO_SECS, check=False)
    except subprocess.TimeoutExpired:
        raise Fail(f"the scenario took longer than {SCENARIO_SECS} s") from None
    if res.returncode != 0:
        raise Fail(f"the scenario failed (exit {res.returncode}) after {time.monotonic() - started:.1f} s")
    for name in ("api", "worker"):
        stack.check_alive(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="an empty directory for logs")
    parser.add_argument("--bin", required=True, help="the stock-tracker binary")
    parser.add_argument("--python", required=True, help="the Python that runs the scenario")
    parser.add_argument("--client-path", required=True, help="the directory holding the generated package")
    parser.add_argument("--summary-file", default=None, help="where the scenario writes its closing line")
    args = parser.parse_args()

    stack = Stack(pathlib.Path(args.work).resolve(), pathlib.Path(args.bin))
    # The run's own names, apart from the multi-replica check's.
    stack.db = f"stock_tracker_clients_{stack.run_id}"
    stack.queues = (f"client-check-{stack.run_id}-sync", f"client-check-{stack.run_id}-notifications")
    return run_bounded("client check", stack, lambda: run(stack, args), HARD_LIMIT_SECS,
                       after_cleanup=lambda: drop_redis_keys(stack))


if __name__ == "__main__":
    sys.exit(main())
