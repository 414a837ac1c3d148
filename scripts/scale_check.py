#!/usr/bin/env python3
"""The multi-replica check: the service as it runs at scale, on loopback,
with one replica of each kind killed under load.

Started by scripts/scale-check.sh (which installs HAProxy and Prometheus
when missing and removes the working directory); alone:

    python3 scripts/scale_check.py --work DIR [--bin PATH]

What it starts, each on a free loopback port, everything under DIR:

- a Redis Cluster of three masters (`redis-server --cluster-enabled yes`,
  then `redis-cli --cluster create`);
- a fresh database `stock_tracker_scale_<random>` on the local PostgreSQL
  (127.0.0.1:5432, user postgres), migrated with `stock-tracker migrate`;
- a PgBouncer in transaction mode (scripts/pgbouncer.sh) in front of it,
  which every service goes through (`database.pooler = "transaction"`,
  migrations on `database.direct_url`); left out, with a note, only when
  pgbouncer is not installed;
- two RabbitMQ quorum queues of the run's own on the local RabbitMQ;
- a webhook receiver (here, in this process) recording each request's
  `webhook-id` and answering 200;
- two `stock-tracker serve` behind HAProxy (roundrobin, readiness health
  checks, `retries 2` + `option redispatch`, `X-Served-By` on every answer,
  HAProxy's own 502/503 included), two `worker` and two `beat`;
- Prometheus scraping the six service targets every second (jobs `api`,
  `worker`, `beat`) with the shipped monitoring/prometheus/rules/availability.yml.

Then about 60 s of mixed load through HAProxy from a few client threads
(product reads and writes, syncs, webhook test events of a few tenants);
about 20 s in, SIGKILL for one API replica, one worker (one running a sync,
if any does within a few seconds) and the beat whose /health/live says it
leads. After the load it waits (bounded) for the syncs and deliveries to
settle and checks: (a) no 5xx from a surviving replica, no more 5xx from the
killed one than there are client threads (requests in flight), no 5xx of no
replica and no request left without an answer, and no 4xx (the load sends
only valid requests); (b) every product answered 201 is in
PostgreSQL; (c) every sync job requested succeeded, with exactly one
`sync.completed` event; (d) every webhook delivery of the run's
subscriptions reached the receiver (duplicates counted, not failed);
(e) Prometheus fires `TargetDown` for each killed target and not for the
survivors. Prints the requests by status and replica, the throughput, how
soon the standby beat led, the sync jobs and their attempts, then a table
(check, measured value, pass/fail), and exits 1 unless every check passes.

Everything started is stopped, the database dropped and the queues deleted
on success, failure, SIGINT or SIGTERM. Python 3 standard library only.
"""

import argparse
import collections
import datetime
import http.server
import json
import os
import pathlib
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "monitoring" / "prometheus" / "rules" / "availability.yml"
PG = ("127.0.0.1", 5432)
PG_PASSWORD = os.environ.get("PGPASSWORD") or "postgres"
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"

LOAD_SECS = 60  # mixed load through HAProxy
KILL_AFTER_SECS = 20  # into the load
CONCURRENCY = 6  # client threads
TENANTS = 3
SETTLE_SECS = 60  # after the load, for syncs and deliveries
ALERT_WITHIN_SECS = 100  # after the kill (TargetDown has `for: 1m`)
SYNC_EVERY_SECS = 1.0  # per tenant
TEST_EVENT_EVERY_SECS = 2.0  # per tenant
PGBOUNCER_POOL = 10  # server connections for the whole run
DEMO_PRODUCTS = 300
HARD_LIMIT_SECS = 300  # the whole run, whatever happens

T0 = time.monotonic()


class Fail(Exception):
    pass


def say(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port():
    """A port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port < 55000:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                pass


def pg_url(db, port=PG[1]):
    return f"postgres://postgres:{urllib.parse.quote(PG_PASSWORD, safe='')}@{PG[0]}:{port}/{db}"


def psql(sql, db="postgres", timeout=60):
    """Runs SQL (given on stdin, so it may be long) and returns its rows as lists."""
    res = subprocess.run(["psql", "-h", PG[0], "-p", str(PG[1]), "-U", "postgres", "-d", db, "-X",
                          "-v", "ON_ERROR_STOP=1", "-qAt", "-F", "\t", "-f", "-"],
                         input=sql, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PGCONNECT_TIMEOUT": "5", "PGPASSWORD": PG_PASSWORD})
    if res.returncode != 0:
        raise Fail(f"psql: {sql[:300]}: {res.stderr.strip()}")
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def uuid_array(ids):
    ids = sorted(set(ids))
    for value in ids:
        if len(value) != 36 or any(c not in "0123456789abcdef-" for c in value):
            raise Fail(f"not a UUID: {value!r}")
    return "ARRAY[" + ",".join(f"'{v}'" for v in ids) + "]::uuid[]" if ids else "ARRAY[]::uuid[]"


def http_get(url, timeout=3):
    """(status, text) of a GET; (0, error) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


def resp_ping(port, *command, timeout=2):
    """One command over RESP to a Redis node; the raw reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        out = [f"*{len(command)}\r\n".encode()]
        for arg in command:
            raw = arg.encode()
            out.append(f"${len(raw)}\r\n".encode() + raw + b"\r\n")
        sock.sendall(b"".join(out))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                break
            if data.startswith(b"$"):
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
        return data.decode(errors="replace")


# --------------------------------------------------------------------------
# The webhook receiver


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.ids = collections.Counter()  # webhook-id -> requests
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.ids[self.headers.get("webhook-id") or ""] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return collections.Counter(self.ids)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# Processes


class Stack:
    def __init__(self, work, binary):
        self.work = work
        self.binary = binary
        self.run_id = secrets.token_hex(4)
        self.db = f"stock_tracker_scale_{self.run_id}"
        self.queues = (f"scale-check-{self.run_id}-sync", f"scale-check-{self.run_id}-notifications")
        self.procs = {}  # name -> (Popen, log path)
        self.receiver = None
        self.db_created = False
        self.queues_used = False
        self.pgbouncer_dir = None

    def spawn(self, name, argv, env=None):
        log = self.work / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env if env is not None else dict(os.environ),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.work)
        self.procs[name] = (proc, log)
        # For scale-check.sh's trap, should this program itself be killed.
        with open(self.work / "pids", "a") as pids:
            pids.write(f"{proc.pid} {name}\n")
        return proc

    def alive(self, name):
        return self.procs[name][0].poll() is None

    def check_alive(self, name):
        proc, log = self.procs[name]
        if proc.poll() is not None:
            raise Fail(f"{name} exited with code {proc.returncode} (log {log})")

    def kill(self, name):
        proc, _ = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def log_text(self, name):
        try:
            return self.procs[name][1].read_text(errors="replace")
        except OSError:
            return ""

    def wait_http(self, name, url, timeout, want=200):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.check_alive(name)
            status, body = http_get(url)
            if status == want:
                return body
            last = f"HTTP {status}: {body[:200]}" if status else body
            time.sleep(0.2)
        raise Fail(f"{name} not ready at {url} after {timeout}s (last: {last})")

    def log_tails(self, lines=25):
        for name, (proc, log) in self.procs.items():
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            print(f"---- last {lines} lines of {name} ({state}):", file=sys.stderr)
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                text = []
            for line in text[-lines:]:
                print(f"     {line[:400]}", file=sys.stderr)

    def cleanup(self):
        problems = []
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 8
        for name, (proc, _) in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append(f"{name} ignored SIGTERM for 8 s; killed")
        if self.pgbouncer_dir:
            subprocess.run([str(ROOT / "scripts" / "pgbouncer.sh"), "stop", str(self.pgbouncer_dir)],
                           capture_output=True, timeout=30)
        if self.receiver:
            self.receiver.close()
        if self.db_created:
            try:
                psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            except (Fail, OSError, subprocess.SubprocessError) as err:
                problems.append(f"dropping database {self.db}: {err}")
        if self.queues_used:
            for queue in self.queues:
                try:
                    res = subprocess.run(["rabbitmqctl", "delete_queue", queue],
                                         capture_output=True, text=True, timeout=60)
                    if res.returncode != 0 and "not found" not in (res.stdout + res.stderr).lower():
                        problems.append(f"rabbitmqctl delete_queue {queue}: {res.stdout}{res.stderr}".strip())
                except (OSError, subprocess.SubprocessError) as err:
                    problems.append(f"rabbitmqctl delete_queue {queue}: {err}")
        (self.work / "cleaned").write_text("done\n")
        for problem in problems:
            print(f"warn cleanup: {problem}", file=sys.stderr)


# --------------------------------------------------------------------------
# Start-up


def start_redis_cluster(stack):
    ports = []
    for i in range(3):
        port = free_cluster_port()
        while port in ports:
            port = free_cluster_port()
        ports.append(port)
        stack.spawn(f"redis-{i + 1}", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                       "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                                       "--dir", str(stack.work), "--save", "", "--appendonly", "no",
                                       "--cluster-node-timeout", "2000"])
    for i, port in enumerate(ports):
        deadline = time.monotonic() + 15
        while True:
            stack.check_alive(f"redis-{i + 1}")
            try:
                if resp_ping(port, "PING").startswith("+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Fail(f"redis-server on {port} does not answer")
            time.sleep(0.1)
    res = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                          "--cluster-replicas", "0", "--cluster-yes"],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise Fail(f"redis-cli --cluster create failed: {res.stdout[-1000:]}{res.stderr[-1000:]}")
    deadline = time.monotonic() + 30
    while True:
        states = []
        for port in ports:
            try:
                states.append("cluster_state:ok" in resp_ping(port, "CLUSTER", "INFO"))
            except OSError:
                states.append(False)
        if all(states):
            return ports
        if time.monotonic() > deadline:
            raise Fail("the Redis Cluster never reached cluster_state:ok")
        time.sleep(0.1)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("STOCK_TRACKER") and k not in ("DATABASE_URL", "REDIS_URL")}


def app_env(stack, redis_ports, service_url, direct_url, pooled, port, hook_host):
    env = clean_env()
    million = "1000000"
    env.update({
        "DATABASE_URL": service_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_ports[0]}",
        "STOCK_TRACKER__REDIS__CLUSTER_NODES": ",".join(f"redis://127.0.0.1:{p}" for p in redis_ports),
        "STOCK_TRACKER__REDIS__KEY_PREFIX": f"scale-check:{stack.run_id}:",
        "STOCK_TRACKER__BROKER__URL": BROKER_URL,
        "STOCK_TRACKER__BROKER__SYNC_QUEUE": stack.queues[0],
        "STOCK_TRACKER__BROKER__NOTIFICATIONS_QUEUE": stack.queues[1],
        # Each role's one port: the API's, the worker's or beat's own endpoints.
        "STOCK_TRACKER__SERVER__PORT": str(port),
        "STOCK_TRACKER__WORKER__PORT": str(port),
        "STOCK_TRACKER__BEAT__PORT": str(port),
        "STOCK_TRACKER__SERVER__SHUTDOWN_TIMEOUT_SECS": "5",
        "STOCK_TRACKER__WORKER__SHUTDOWN_TIMEOUT_SECS": "5",
        # Short leases: a dead worker's job and a dead beat's lead pass on in seconds.
        "STOCK_TRACKER__WORKER__JOB_LEASE_SECS": "3",
        "STOCK_TRACKER__BEAT__LEADER_LEASE_SECS": "3",
        "STOCK_TRACKER__BEAT__STANDBY_RETRY_SECS": "1",
        "STOCK_TRACKER__BEAT__SWEEP_INTERVAL_SECS": "1",
        "STOCK_TRACKER__NOTIFICATIONS__DISPATCH_INTERVAL_SECS": "1",
        "STOCK_TRACKER__WORKER__RETRY_BASE_SECS": "1",
        "STOCK_TRACKER__WORKER__RETRY_MAX_SECS": "2",
        "STOCK_TRACKER__WORKER__DEMO_PRODUCTS": str(DEMO_PRODUCTS),
        # The receiver is http:// on loopback.
        "STOCK_TRACKER__WEBHOOKS__ALLOW_HTTP": "true",
        "STOCK_TRACKER__WEBHOOKS__ALLOW_PRIVATE_NETWORKS": "true",
        "STOCK_TRACKER__WEBHOOKS__ALLOWED_PORTS": "",
        # Rate limits out of the load's reach (the limiter still runs).
        "STOCK_TRACKER__RATE_LIMIT__TIERS__FREE__SECOND": million,
        "STOCK_TRACKER__RATE_LIMIT__TIERS__FREE__MINUTE": million,
        "STOCK_TRACKER__RATE_LIMIT__TIERS__FREE__HOUR": million,
        "STOCK_TRACKER__RATE_LIMIT__ANONYMOUS__SECOND": million,
        "STOCK_TRACKER__RATE_LIMIT__ANONYMOUS__MINUTE": million,
        "STOCK_TRACKER__RATE_LIMIT__ANONYMOUS__HOUR": million,
        "STOCK_TRACKER__RATE_LIMIT__GLOBAL__LIMIT": million,
        "STOCK_TRACKER__RATE_LIMIT__ANONYMOUS_GLOBAL__LIMIT": million,
        "STOCK_TRACKER__RATE_LIMIT__RULES__LOGIN__LIMIT": million,
        "STOCK_TRACKER__RATE_LIMIT__RULES__REGISTER__LIMIT": million,
        "STOCK_TRACKER__RATE_LIMIT__RULES__SYNC__LIMIT": million,
    })
    if pooled:
        env["STOCK_TRACKER__DATABASE__POOLER"] = "transaction"
        env["STOCK_TRACKER__DATABASE__DIRECT_URL"] = direct_url
    return env


def haproxy_config(path, listen, api_ports):
    servers = "\n".join(
        f"    server api-{i + 1} 127.0.0.1:{port} check inter 500ms fall 2 rise 2 "
        "observe layer4 error-limit 1 on-error mark-down"
        for i, port in enumerate(api_ports))
    path.write_text(f"""global
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 3s
    retries 2
    option redispatch

frontend api
    bind 127.0.0.1:{listen}
    default_backend api
    # Which replica answered, HAProxy's own 502/503 included (empty: no server).
    http-after-response set-header X-Served-By %[srv_name]

backend api
    balance roundrobin
    option httpchk GET /api/v1/health/ready
    http-check expect status 200
{servers}
""")


def prometheus_config(path, targets):
    # JSON is YAML: the standard library writes it.
    doc = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics",
             "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
            for job, ports in targets.items()
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --------------------------------------------------------------------------
# Load


class Client:
    """Requests through HAProxy, each recorded with its status, replica and time."""

    def __init__(self, base):
        self.base = base
        self.lock = threading.Lock()
        self.records = []  # (t, op, status, served_by, error)
        self.in_flight = 0

    def call(self, op, method, path, body=None, token=None, timeout=10):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with self.lock:
            self.in_flight += 1
        status, served_by, raw, error = 0, "", b"", ""
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
                served_by = resp.headers.get("X-Served-By", "")
        except urllib.error.HTTPError as err:
            status, served_by = err.code, err.headers.get("X-Served-By", "")
            try:
                raw = err.read()
            except OSError:
                raw = b""
        except (urllib.error.URLError, OSError) as err:
            error = str(getattr(err, "reason", err))
        finally:
            with self.lock:
                self.in_flight -= 1
                self.records.append((time.monotonic(), op, status, served_by, error))
        try:
            parsed = json.loads(raw or b"null")
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, parsed


class Tenant:
    def __init__(self, index):
        self.index = index
        self.token = None
        self.connection = None
        self.subscription = None
        self.next_sync = 0.0
        self.next_test = 0.0
        self.lock = threading.Lock()


def setup_tenant(client, tenant, run_id, hook):
    email = f"scale-{run_id}-{tenant.index}@example.com"
    password = "scale-check-" + secrets.token_urlsafe(12)

    def expect(op, status, body, want):
        if status not in want:
            raise Fail(f"{op}: HTTP {status}: {str(body)[:400]}")
        return body

    expect("register", *client.call("register", "POST", "/api/v1/auth/register",
                                    {"email": email, "password": password,
                                     "tenant_name": f"Scale check {tenant.index}"}, timeout=30), (201,))
    body = expect("login", *client.call("login", "POST", "/api/v1/auth/login",
                                        {"email": email, "password": password}, timeout=30), (200,))
    tenant.token = body["access_token"]
    body = expect("marketplace", *client.call("marketplace", "POST", "/api/v1/marketplaces",
                                              {"kind": "demo", "name": f"Demo {tenant.index}"},
                                              token=tenant.token), (201,))
    tenant.connection = body["id"]
    body = expect("webhook", *client.call("webhook", "POST", "/api/v1/webhooks",
                                          {"url": f"{hook}/hooks/{tenant.index}", "events": ["sync.completed"],
                                           "description": "scale check"}, token=tenant.token), (201,))
    tenant.subscription = body["id"]


class Load:
    def __init__(self, client, tenants, run_id):
        self.client = client
        self.tenants = tenants
        self.run_id = run_id
        self.lock = threading.Lock()
        self.products = []  # ids answered 201
        self.jobs = []  # job ids answered 202/200
        self.test_deliveries = []
        self.counter = 0
        self.stop_at = 0.0

    def worker(self, index):
        rnd = random.Random(index)
        tenant = self.tenants[index % len(self.tenants)]
        while time.monotonic() < self.stop_at:
            op = None
            now = time.monotonic()
            with tenant.lock:
                if now >= tenant.next_sync:
                    tenant.next_sync = now + SYNC_EVERY_SECS
                    op = "sync"
                elif now >= tenant.next_test:
                    tenant.next_test = now + TEST_EVENT_EVERY_SECS
                    op = "webhook-test"
            if op is None:
                op = "read" if rnd.random() < 0.6 else "write"
            if op == "read":
                self.client.call(op, "GET", "/api/v1/products?limit=50", token=tenant.token)
            elif op == "write":
                with self.lock:
                    self.counter += 1
                    n = self.counter
                status, body = self.client.call(op, "POST", "/api/v1/products",
                                                {"sku": f"SC-{self.run_id}-{n}", "name": f"Scale item {n}",
                                                 "price": f"{1 + n % 50}.99", "stock": n % 40},
                                                token=tenant.token)
                if status == 201 and isinstance(body, dict) and body.get("id"):
                    with self.lock:
                        self.products.append(body["id"])
            elif op == "sync":
                status, body = self.client.call(op, "POST", "/api/v1/sync", {"connection_id": tenant.connection},
                                                token=tenant.token)
                if status in (200, 202) and isinstance(body, dict) and body.get("job_id"):
                    with self.lock:
                        self.jobs.append(body["job_id"])
            else:
                status, body = self.client.call(op, "POST", f"/api/v1/webhooks/{tenant.subscription}/test",
                                                token=tenant.token)
                if status == 202 and isinstance(body, dict) and body.get("id"):
                    with self.lock:
                        self.test_deliveries.append(body["id"])


# --------------------------------------------------------------------------
# Observation


def beat_role(port):
    status, body = http_get(f"http://127.0.0.1:{port}/health/live", timeout=2)
    if status != 200:
        return None
    try:
        return json.loads(body).get("role")
    except ValueError:
        return None


def syncs_in_progress(port):
    """Syncs a worker is running now (its tasks-in-progress gauge), or -1."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    if status != 200:
        return -1
    for line in body.splitlines():
        if line.startswith("stock_tracker_worker_tasks_in_progress{") and 'task="sync_tenant_products"' in line:
            try:
                return int(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                return -1
    return 0


def log_time(line):
    """The wall-clock time of a JSON log line, if it says."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    for key in ("timestamp", "ts", "time"):
        value = entry.get(key) if isinstance(entry, dict) else None
        if isinstance(value, str):
            try:
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def lead_lines(text):
    return [line for line in text.splitlines() if '"beat holds the schedule"' in line]


class AlertWatch(threading.Thread):
    """Polls Prometheus's /api/v1/alerts until TargetDown fires for every
    killed instance (or the time is up)."""

    def __init__(self, prom, killed, until):
        super().__init__(daemon=True)
        self.prom = prom
        self.killed = set(killed)
        self.until = until
        self.fired_at = {}  # instance -> monotonic time first seen firing
        self.last = []
        self.error = None

    def poll(self):
        status, body = http_get(f"{self.prom}/api/v1/alerts", timeout=3)
        if status != 200:
            raise OSError(f"HTTP {status}: {body[:200]}")
        return [a for a in json.loads(body)["data"]["alerts"] if a["labels"].get("alertname") == "TargetDown"]

    def run(self):
        while time.monotonic() < self.until:
            try:
                self.last = self.poll()
                for alert in self.last:
                    instance = alert["labels"].get("instance")
                    if alert["state"] == "firing" and instance not in self.fired_at:
                        self.fired_at[instance] = time.monotonic()
                if self.killed <= set(self.fired_at):
                    return
            except (OSError, ValueError, KeyError) as err:
                self.error = str(err)
            time.sleep(0.5)


# --------------------------------------------------------------------------


def run(stack, args):
    if not os.access(stack.binary, os.X_OK):
        raise Fail(f"{stack.binary} not found or not executable: build it first (`cargo build`; "
                   "`make test` does) or set STOCK_TRACKER_BIN")
    for tool in ("redis-server", "redis-cli", "psql", "rabbitmqctl", "haproxy", "prometheus"):
        if not shutil.which(tool):
            raise Fail(f"{tool} not found on PATH")
    binary = str(stack.binary)

    # Redis Cluster
    redis_ports = start_redis_cluster(stack)
    say(f"Redis Cluster of 3 masters on {', '.join(map(str, redis_ports))}: cluster_state:ok")

    # Database
    psql(f'CREATE DATABASE "{stack.db}"')
    stack.db_created = True
    (stack.work / "database").write_text(stack.db + "\n")
    direct = pg_url(stack.db)
    res = subprocess.run([binary, "migrate"], env={**clean_env(), "DATABASE_URL": direct},
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise Fail(f"stock-tracker migrate failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    say(f"database {stack.db} created and migrated")

    # PgBouncer
    pooled = bool(shutil.which("pgbouncer"))
    service_url = direct
    if pooled:
        stack.pgbouncer_dir = stack.work / "pgbouncer"
        res = subprocess.run([str(ROOT / "scripts" / "pgbouncer.sh"), "start", str(stack.pgbouncer_dir),
                              str(PGBOUNCER_POOL), direct], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise Fail(f"scripts/pgbouncer.sh start failed: {res.stderr[-1000:]}")
        bouncer = int(res.stdout.strip())
        with open(stack.work / "pids", "a") as pids:
            pids.write(f"{(stack.pgbouncer_dir / 'pid').read_text().strip()} pgbouncer\n")
        service_url = pg_url(stack.db, bouncer)
        say(f"PgBouncer in transaction mode on {bouncer} ({PGBOUNCER_POOL} server connections): "
            "every service goes through it, migrations direct")
    else:
        say("NOTE pgbouncer is not installed: the services connect to PostgreSQL directly "
            "(scripts/services.sh installs it)")

    # Receiver, services
    stack.receiver = Receiver()
    hook = f"http://127.0.0.1:{stack.receiver.port}"
    stack.queues_used = True
    (stack.work / "queues").write_text("\n".join(stack.queues) + "\n")
    ports = {name: free_port() for name in ("api-1", "api-2", "worker-1", "worker-2", "beat-1", "beat-2")}
    for name, port in ports.items():
        role = {"api": "serve", "worker": "worker", "beat": "beat"}[name.split("-")[0]]
        stack.spawn(name, [binary, role], app_env(stack, redis_ports, service_url, direct, pooled, port, hook))
        if name == "beat-1":
            # The first beat leads from the start; the second stands by.
            stack.wait_http(name, f"http://127.0.0.1:{port}/health/live", 90)
    for name, port in ports.items():
        path = "/api/v1/health/ready" if name.startswith("api") else "/health/live"
        if name.startswith("worker"):
            path = "/health/ready"
        stack.wait_http(name, f"http://127.0.0.1:{port}{path}", 90)
    say("2 serve, 2 worker, 2 beat ready; queues " + ", ".join(stack.queues))

    # HAProxy
    lb_port = free_port()
    cfg = stack.work / "haproxy.cfg"
    haproxy_config(cfg, lb_port, [ports["api-1"], ports["api-2"]])
    res = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise Fail(f"haproxy -c: {res.stdout}{res.stderr}")
    stack.spawn("haproxy", ["haproxy", "-f", str(cfg), "-db"])
    lb = f"http://127.0.0.1:{lb_port}"
    stack.wait_http("haproxy", f"{lb}/api/v1/health/ready", 30)

    # Prometheus
    prom_port = free_port()
    prom_cfg = stack.work / "prometheus.yml"
    prometheus_config(prom_cfg, {"api": [ports["api-1"], ports["api-2"]],
                                 "worker": [ports["worker-1"], ports["worker-2"]],
                                 "beat": [ports["beat-1"], ports["beat-2"]]})
    stack.spawn("prometheus", ["prometheus", f"--config.file={prom_cfg}",
                               f"--storage.tsdb.path={stack.work / 'prometheus-data'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}",
                               "--rules.alert.resend-delay=1s"])
    prom = f"http://127.0.0.1:{prom_port}"
    stack.wait_http("prometheus", f"{prom}/-/ready", 30)
    deadline = time.monotonic() + 30
    while True:
        status, body = http_get(f"{prom}/api/v1/targets?state=active")
        targets = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        up = [t for t in targets if t["health"] == "up"]
        if len(up) == 6:
            break
        if time.monotonic() > deadline:
            raise Fail(f"Prometheus targets not all up after 30 s: "
                       f"{[(t['labels'], t['health'], t.get('lastError')) for t in targets]}")
        time.sleep(0.5)
    _, body = http_get(f"{prom}/api/v1/rules")
    rules = [r["name"] for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
    if "TargetDown" not in rules:
        raise Fail(f"Prometheus did not load TargetDown from {RULES}: {rules}")
    say(f"HAProxy on {lb_port} in front of api-1/api-2; Prometheus on {prom_port} scrapes 6 targets "
        f"every 1 s with {RULES.relative_to(ROOT)} ({len(rules)} rules)")

    # Tenants
    client = Client(lb)
    tenants = [Tenant(i + 1) for i in range(TENANTS)]
    for tenant in tenants:
        setup_tenant(client, tenant, stack.run_id, hook)
    say(f"{TENANTS} tenants registered, each with a demo marketplace and a webhook subscription")

    # Load, with the kill 20 s in
    load = Load(client, tenants, stack.run_id)
    load_start = time.monotonic()
    load.stop_at = load_start + LOAD_SECS
    threads = [threading.Thread(target=load.worker, args=(i,), daemon=True) for i in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    say(f"load: {CONCURRENCY} client threads for {LOAD_SECS} s through HAProxy")
    time.sleep(max(0.0, load_start + KILL_AFTER_SECS - time.monotonic()))
    for name in ports:
        stack.check_alive(name)
    # The leading beat, as each beat's /health/live says.
    deadline = time.monotonic() + 10
    while True:
        roles = {name: beat_role(ports[name]) for name in ("beat-1", "beat-2")}
        leaders = [name for name, role in roles.items() if role == "leader"]
        if len(leaders) == 1:
            break
        if time.monotonic() > deadline:
            raise Fail(f"expected exactly one leading beat before the kill, found {roles}")
        time.sleep(0.1)
    leader = leaders[0]
    standby = "beat-2" if leader == "beat-1" else "beat-1"
    # The worker: one running a sync if there is one within a few seconds
    # (its job must then pass to the other worker), else worker-1.
    victim_worker, busy = "worker-1", 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not busy:
        for name in ("worker-1", "worker-2"):
            busy = syncs_in_progress(ports[name])
            if busy > 0:
                victim_worker = name
                break
        else:
            busy = 0
            time.sleep(0.05)
    killed = ["api-1", victim_worker, leader]
    survivors = [name for name in ports if name not in killed]
    standby_leads_before = len(lead_lines(stack.log_text(standby)))
    kill_wall = time.time()
    kill_time = time.monotonic()
    in_flight_at_kill = client.in_flight
    for name in (victim_worker, "api-1", leader):  # the worker first: its sync may end any moment
        stack.kill(name)
    running_at_kill = [r[0] for r in psql("SELECT id FROM sync_jobs WHERE status = 'running'", stack.db)]
    say(f"SIGKILL: {', '.join(killed)} ({in_flight_at_kill} requests in flight, {max(busy, 0)} syncs running "
        f"on {victim_worker}); the standby beat is {standby}")
    watch = AlertWatch(prom, [f"127.0.0.1:{ports[n]}" for n in killed], kill_time + ALERT_WITHIN_SECS)
    watch.start()

    # The standby's takeover, while the load goes on
    takeover = None
    while time.monotonic() < load.stop_at:
        lines = lead_lines(stack.log_text(standby))
        if takeover is None and len(lines) > standby_leads_before:
            stamped = log_time(lines[standby_leads_before])
            takeover = (stamped - kill_wall) if stamped else (time.monotonic() - kill_time)
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=15)
    load_end = time.monotonic()
    if takeover is None:
        lines = lead_lines(stack.log_text(standby))
        if len(lines) > standby_leads_before:
            stamped = log_time(lines[standby_leads_before])
            takeover = (stamped - kill_wall) if stamped else None
    say(f"load done: {len(client.records)} requests; waiting for syncs and deliveries to settle")

    # Settle: jobs finished, events dispatched, deliveries received
    jobs = sorted(set(load.jobs))
    subs = [t.subscription for t in tenants]
    settle_deadline = load_end + SETTLE_SECS
    settled_at = None
    pending = {}
    while True:
        job_rows = psql(f"SELECT status, count(*) FROM sync_jobs WHERE id = ANY({uuid_array(jobs)}) GROUP BY 1",
                        stack.db)
        unfinished = sum(int(n) for status, n in job_rows if status not in ("succeeded", "failed"))
        unpublished = int(psql("SELECT count(*) FROM outbox_events WHERE published_at IS NULL", stack.db)[0][0])
        delivery_ids = [r[0] for r in psql(
            f"SELECT id FROM webhook_deliveries WHERE subscription_id = ANY({uuid_array(subs)})", stack.db)]
        received = stack.receiver.snapshot()
        missing = [d for d in delivery_ids if d not in received]
        pending = {"unfinished jobs": unfinished, "undispatched events": unpublished,
                   "deliveries not received": len(missing)}
        if not unfinished and not unpublished and not missing:
            settled_at = time.monotonic()
            break
        if time.monotonic() > settle_deadline:
            break
        time.sleep(1)
    say(f"settled {settled_at - load_end:.1f} s after the load" if settled_at
        else f"not settled {SETTLE_SECS} s after the load: {pending}")
    watch.join(timeout=max(0.0, kill_time + ALERT_WITHIN_SECS - time.monotonic()))

    # ------------------------------------------------------------------ checks
    rows = []

    def check(name, value, passed):
        rows.append((name, str(value), "pass" if passed else "FAIL"))

    records = list(client.records)
    by_status = collections.Counter(r[2] for r in records)
    fivexx = [r for r in records if r[2] >= 500]
    survivor_apis = [n for n in survivors if n.startswith("api")]
    from_survivors = [r for r in fivexx if r[3] in survivor_apis]
    from_killed = [r for r in fivexx if r[3] == "api-1"]
    unattributed = [r for r in fivexx if r[3] not in survivor_apis and r[3] != "api-1"]
    no_answer = [r for r in records if r[2] == 0]
    client_errors = [r for r in records if 400 <= r[2] < 500]
    check("(a) 5xx from the surviving replica", f"{len(from_survivors)} ({', '.join(survivor_apis)})",
          not from_survivors)
    check("(a) 5xx from the killed replica", f"{len(from_killed)} (bound: {CONCURRENCY} in flight; "
          f"{in_flight_at_kill} at the kill)", len(from_killed) <= CONCURRENCY)
    check("(a) 5xx of no replica, no answer at all", f"{len(unattributed)} + {len(no_answer)}",
          not unattributed and not no_answer)
    check("    4xx answers", len(client_errors), not client_errors)

    products = sorted(set(load.products))
    present = int(psql(f"SELECT count(*) FROM products WHERE id = ANY({uuid_array(products)})", stack.db)[0][0])
    check("(b) products answered 201 in PostgreSQL", f"{present}/{len(products)}",
          products and present == len(products))

    job_rows = psql(
        f"SELECT j.id, j.status, j.attempts, (SELECT count(*) FROM outbox_events e "
        f"WHERE e.event_type = 'sync.completed' AND e.payload->>'job_id' = j.id::text) "
        f"FROM sync_jobs j WHERE j.id = ANY({uuid_array(jobs)})", stack.db)
    succeeded = [r for r in job_rows if r[1] == "succeeded"]
    once = [r for r in job_rows if r[3] == "1"]
    attempts = collections.Counter(int(r[2]) for r in job_rows)
    check("(c) sync jobs requested that succeeded", f"{len(succeeded)}/{len(jobs)}",
          jobs and len(succeeded) == len(jobs))
    check("(c) with exactly one sync.completed event", f"{len(once)}/{len(jobs)}",
          jobs and len(once) == len(jobs))

    delivery_rows = psql(f"SELECT id, event_type, status FROM webhook_deliveries "
                         f"WHERE subscription_id = ANY({uuid_array(subs)})", stack.db)
    received = stack.receiver.snapshot()
    reached = [r for r in delivery_rows if r[0] in received]
    duplicates = sum(received[r[0]] - 1 for r in reached if received[r[0]] > 1)
    by_type = collections.Counter(r[1] for r in delivery_rows)
    check("(d) webhook deliveries that reached the receiver",
          f"{len(reached)}/{len(delivery_rows)} ({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))}; "
          f"{duplicates} duplicate requests)",
          delivery_rows and len(reached) == len(delivery_rows))

    killed_instances = {f"127.0.0.1:{ports[n]}": n for n in killed}
    survivor_instances = {f"127.0.0.1:{ports[n]}": n for n in survivors}
    try:
        final_alerts = watch.poll()
    except (OSError, ValueError, KeyError):
        final_alerts = watch.last
    firing = {a["labels"].get("instance") for a in final_alerts if a["state"] == "firing"}
    fired = {i: watch.fired_at[i] - kill_time for i in killed_instances if i in watch.fired_at}
    check("(e) TargetDown firing for the killed targets",
          f"{len(fired)}/{len(killed_instances)} ("
          + ", ".join(f"{killed_instances[i]} {fired[i]:.0f}s" if i in fired else f"{killed_instances[i]} no"
                      for i in killed_instances) + " after the kill)",
          len(fired) == len(killed_instances))
    survivors_firing = sorted(survivor_instances[i] for i in firing if i in survivor_instances)
    check("(e) TargetDown firing for a survivor", ", ".join(survivors_firing) or "none", not survivors_firing)

    # ------------------------------------------------------------------ report
    load_records = [r for r in records if load_start <= r[0] <= load.stop_at + 15]
    served = collections.Counter(r[3] or "-" for r in records if r[2])
    print()
    print("requests by status: " + ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(by_status.items())))
    print("answers by replica: " + ", ".join(f"{s}: {n}" for s, n in sorted(served.items())))
    ops = collections.Counter(r[1] for r in load_records)
    print("requests by kind:   " + ", ".join(f"{k}: {n}" for k, n in sorted(ops.items())))
    print(f"throughput:         {len(load_records) / max(0.001, load_end - load_start):.1f} requests/s "
          f"over {load_end - load_start:.1f} s ({CONCURRENCY} client threads)")
    print("standby beat leads: " + (f"{takeover:.1f} s after the kill" if takeover is not None
                                    else "never (no `beat holds the schedule` from the standby)"))
    print(f"sync jobs:          {len(jobs)} requested, "
          + ", ".join(f"{n} with {a} attempt{'s' if a != 1 else ''}" for a, n in sorted(attempts.items()))
          + f"; running at the kill: {len(running_at_kill)}, now "
          + (", ".join(f"{r[1]} after {r[2]} attempts" for r in job_rows if r[0] in running_at_kill) or "-"))
    tokens = psql("SELECT fencing_token FROM beat_leadership", stack.db)
    taken = int(tokens[0][0]) if tokens else 0
    print(f"beat lead taken:    {taken} times in the run (the fencing token)")
    # Once at the start, once after the leader's kill: a lead that churns
    # (renewals starved by scheduled work) would take it again and again.
    check("(f) beat leads taken: at start, after the kill", f"{taken} (expected 2)", taken == 2)
    print(f"webhook test events sent: {len(set(load.test_deliveries))}; "
          f"pgbouncer: {'yes' if pooled else 'no (not installed)'}")
    if watch.error:
        print(f"note: an /api/v1/alerts poll failed: {watch.error}")
    print()
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'check':<{width}}  {'measured':<{vwidth}}  result")
    for name, value, result in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {result}")
    print()
    failed = [r for r in rows if r[2] != "pass"]
    if failed:
        if unattributed or no_answer or from_survivors:
            for r in (from_survivors + unattributed + no_answer)[:20]:
                print(f"     {r[0] - load_start:6.1f}s {r[1]} -> {r[2] or r[4]} via {r[3] or '-'}", file=sys.stderr)
        raise Fail(f"{len(failed)} check(s) failed: " + "; ".join(r[0].strip() for r in failed))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="an empty directory for configs, data and logs")
    parser.add_argument("--bin", default=None, help="the stock-tracker binary")
    args = parser.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/stock-tracker/target")
    binary = pathlib.Path(args.bin or os.environ.get("STOCK_TRACKER_BIN") or pathlib.Path(target) / "debug"
                          / "stock-tracker")

    stack = Stack(pathlib.Path(args.work).resolve(), binary)
    code = run_bounded("scale check", stack, lambda: run(stack, args), HARD_LIMIT_SECS)
    say("scale check passed" if code == 0 else "scale check failed")
    return code


def run_bounded(check, stack, work, hard_limit_secs, after_cleanup=None):
    """Runs `work()` on `stack` within `hard_limit_secs`. Whatever ends it (a
    failed check, the time limit, a signal, a bug) is printed as `FAIL
    {check}: …`, with the logs' tails unless it was interrupted, and the
    stack is torn down, then `after_cleanup` runs. Returns the exit status."""
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    signal.alarm(hard_limit_secs)
    code = 1
    try:
        work()
        code = 0
    except Fail as err:
        print(f"FAIL {check}: {err}", file=sys.stderr)
        stack.log_tails()
    except (KeyboardInterrupt, SystemExit) as err:
        code = err.code if isinstance(err, SystemExit) and isinstance(err.code, int) else 130
        reason = "took too long" if code == 128 + signal.SIGALRM else "interrupted"
        print(f"FAIL {check}: {reason} ({code}); stopping everything", file=sys.stderr)
        if code == 128 + signal.SIGALRM:
            stack.log_tails()
    except Exception:  # a bug here or an unexpected answer: still clean up
        traceback.print_exc()
        stack.log_tails()
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.cleanup()
        if after_cleanup:
            after_cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
