#!/usr/bin/env python3
"""End-to-end check of the monitoring stack (issue #11): the real app, the
real exporters, Prometheus and Alertmanager on loopback, an alert delivered
to a local receiver.

Called by scripts/monitoring-check.sh after `cargo build` (`make test` runs
it after `cargo test`). Steps:

 1. A fresh database (STOCK_TRACKER_E2E_DB, dropped first) migrated with the
    app's own `stock-tracker migrate`.
 2. Child processes on free loopback ports, logs in a temporary directory:
    `stock-tracker serve`, `stock-tracker worker` (their own Redis key prefix
    and RabbitMQ queues), prometheus-postgres-exporter,
    prometheus-redis-exporter, Alertmanager started through the shipped
    entrypoint.sh (ALERT_WEBHOOK_URL and SLACK_API_URL point at a local
    receiver; the secrets directory is a temporary one), Prometheus with a
    configuration derived from the shipped prometheus.yml (same jobs and rule
    files; targets rewritten to loopback, 2 s scrapes, 1 s evaluation, the
    rabbitmq job dropped: its plugin is not enabled here) and
    `--rules.alert.resend-delay=1s`.
 3. One override: the shipped APILatencyP50High rule is replaced by a copy
    with the same name, labels and annotations, a threshold of 1 ms and
    `for: 0s`, so API traffic fires it.
 4. Traffic: register, log in, a demo marketplace synced by the worker,
    three dozen product listings.
 5. The alert must reach the receiver through Alertmanager's `webhook`
    receiver (status firing, labels, annotations, a runbook that exists) and
    its `chat` receiver (the Slack message, through the secret file the
    entrypoint wrote).
 6. `promtool check metrics` on a scrape of each role (API, worker, beat)
    reports nothing.
 7. The running app's `/metrics/catalog` (API and worker, merged) is the
    catalogue of `monitoring_check.py static`; every scrape job is up.
 8. Notes (not failures): rule and panel metrics the running app never
    exposed during the run, other alerts firing.

Everything started is stopped, the database dropped, the queues and Redis
keys deleted, on success, failure or SIGINT/SIGTERM.

Environment: STOCK_TRACKER_BIN (default
${CARGO_TARGET_DIR:-~/.cache/stock-tracker/target}/debug/stock-tracker),
STOCK_TRACKER_E2E_DB (default stock_tracker_monitoring_e2e),
MONITORING_E2E_KEEP=1 keeps the temporary directory (logs, configs).
Needs python3 and PyYAML; psql; PostgreSQL, Redis and RabbitMQ on loopback.
"""

import http.server
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import monitoring_check as mc  # noqa: E402

ALERT = "APILatencyP50High"
TEST_THRESHOLD = "0.001"  # 1 ms: any request's p50 is above it (lowest bucket 5 ms)
PG = ("127.0.0.1", 5432)
# Ignored where PostgreSQL trusts loopback; scripts/services.sh gives a fresh
# cluster this password (the one of config/default.toml).
PG_PASSWORD = os.environ.get("PGPASSWORD") or "postgres"
REDIS = ("127.0.0.1", 6379)
AMQP = ("127.0.0.1", 5672)
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
# Jobs the shipped prometheus.yml must have (all of its jobs but rabbitmq are checked up).
REQUIRED_JOBS = {"api", "worker", "beat", "postgres", "redis", "alertmanager", "prometheus"}
ENTRYPOINT = mc.MON / "alertmanager" / "entrypoint.sh"
# Variables the entrypoint or Alertmanager would pick up from the caller's
# environment: never let a developer's real Slack/PagerDuty/SMTP settings in.
ALERTMANAGER_ENV = {"SLACK_API_URL", "PAGERDUTY_ROUTING_KEY", "SMTP_AUTH_PASSWORD", "SMTP_SMARTHOST",
                    "SMTP_FROM", "SMTP_AUTH_USERNAME", "SLACK_CHANNEL", "SLACK_CHANNEL_CRITICAL",
                    "SLACK_CHANNEL_INTEGRATIONS", "ALERT_EMAIL_DATA_TEAM", "ALERT_WEBHOOK_URL",
                    "ALERTMANAGER_CONFIG", "SECRETS_DIR", "RENDERED_CONFIG", "ALERTMANAGER_BIN",
                    "ALERTMANAGER_RENDER_ONLY"}

T0 = time.monotonic()


class Fail(Exception):
    pass


def ok(msg):
    print(f"ok   {msg} ({time.monotonic() - T0:.0f}s)", flush=True)


def note(msg):
    print(f"note {msg}", flush=True)


def pg_url(db, scheme="postgres", query=""):
    return f"{scheme}://postgres:{urllib.parse.quote(PG_PASSWORD, safe='')}@{PG[0]}:{PG[1]}/{db}{query}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/stock-tracker/target")
    return pathlib.Path(os.environ.get("STOCK_TRACKER_BIN") or pathlib.Path(target) / "debug" / "stock-tracker")


# --------------------------------------------------------------------------
# HTTP


def request(method, url, body=None, token=None, timeout=10):
    """(status, parsed JSON or text) without raising on HTTP errors."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


class Receiver:
    """A local HTTP server recording every POST (Alertmanager's webhook and
    Slack notifications)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.posts = []  # (path, parsed JSON body)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with outer.lock:
                    outer.posts.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, path_prefix):
        with self.lock:
            return [body for path, body in self.posts if path.startswith(path_prefix)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# Cleanup helpers for RabbitMQ and Redis (stdlib only: tiny protocol clients)


def amqp_delete_queues(queues, user="guest", password="guest", vhost="/"):
    """Deletes queues with AMQP 0-9-1's queue.delete (what the Rust tests do
    with lapin). Returns the problems met."""
    problems = []
    with socket.create_connection(AMQP, timeout=5) as sock:
        stream = sock.makefile("rb")

        def send(channel, cls, meth, args=b""):
            payload = struct.pack(">HH", cls, meth) + args
            sock.sendall(struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce")

        def shortstr(text):
            raw = text.encode()
            return struct.pack(">B", len(raw)) + raw

        def expect(cls, meth):
            while True:
                header = stream.read(7)
                if len(header) < 7:
                    raise OSError("RabbitMQ closed the connection")
                kind, _channel, size = struct.unpack(">BHI", header)
                payload = stream.read(size + 1)[:-1]
                if kind == 1:
                    break  # a method frame; heartbeats and others are skipped
            got = struct.unpack(">HH", payload[:4])
            args = payload[4:]
            if got in ((10, 50), (20, 40)):  # connection.close / channel.close
                code = struct.unpack(">H", args[:2])[0]
                raise OSError(f"RabbitMQ refused: {code} {args[3:3 + args[2]].decode(errors='replace')}")
            if got != (cls, meth):
                raise OSError(f"unexpected AMQP method {got}, wanted {(cls, meth)}")
            return args

        sock.sendall(b"AMQP\x00\x00\x09\x01")
        expect(10, 10)  # connection.start
        response = f"\0{user}\0{password}".encode()
        send(0, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN") + struct.pack(">I", len(response)) + response
             + shortstr("en_US"))
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", expect(10, 30)[:8])  # connection.tune
        send(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
        send(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")
        expect(10, 41)
        send(1, 20, 10, shortstr(""))
        expect(20, 11)
        for queue in queues:
            try:
                send(1, 50, 40, struct.pack(">H", 0) + shortstr(queue) + b"\x00")
                expect(50, 41)
            except OSError as err:
                problems.append(f"queue {queue}: {err}")
                return problems  # the channel is closed now
        send(1, 20, 40, struct.pack(">H", 200) + shortstr("done") + struct.pack(">HH", 0, 0))
        expect(20, 41)
        send(0, 10, 50, struct.pack(">H", 200) + shortstr("done") + struct.pack(">HH", 0, 0))
        expect(10, 51)
    return problems


def redis_delete_prefix(prefix):
    """Deletes every key starting with prefix (SCAN + DEL over RESP)."""
    with socket.create_connection(REDIS, timeout=5) as sock:
        stream = sock.makefile("rb")

        def command(*args):
            out = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                raw = arg.encode() if isinstance(arg, str) else arg
                out.append(f"${len(raw)}\r\n".encode() + raw + b"\r\n")
            sock.sendall(b"".join(out))
            return read()

        def read():
            line = stream.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise OSError(f"Redis: {rest.decode()}")
            if kind == b":":
                return int(rest)
            if kind == b"$":
                size = int(rest)
                return None if size < 0 else stream.read(size + 2)[:-2]
            if kind == b"*":
                size = int(rest)
                return None if size < 0 else [read() for _ in range(size)]
            raise OSError(f"Redis: unexpected reply {line!r}")

        cursor, deleted = "0", 0
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        while True:
            cursor, keys = command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            cursor = cursor.decode()
            if keys:
                deleted += command("DEL", *keys)
            if cursor == "0":
                return deleted


def psql(sql):
    res = subprocess.run(["psql", "-h", PG[0], "-p", str(PG[1]), "-U", "postgres", "-d", "postgres",
                          "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PGCONNECT_TIMEOUT": "5", "PGPASSWORD": PG_PASSWORD})
    if res.returncode != 0:
        raise Fail(f"psql: {sql}: {res.stderr.strip()}")
    return res.stdout


# --------------------------------------------------------------------------
# The stack


class Stack:
    def __init__(self, binary, db):
        self.binary = binary
        self.db = db
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="monitoring-e2e-"))
        self.run_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.key_prefix = f"monitoring-e2e:{self.run_id}:"
        self.queues = (f"monitoring-e2e-{self.run_id}-sync", f"monitoring-e2e-{self.run_id}-notifications")
        self.procs = {}  # name -> (Popen, log path)
        self.receiver = None
        self.db_created = False

    # processes ------------------------------------------------------------

    def start(self, name, argv, env):
        log = self.dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs[name] = (proc, log)
        return proc

    def check_alive(self, name):
        proc, log = self.procs[name]
        if proc.poll() is not None:
            raise Fail(f"{name} exited with code {proc.returncode} (log {log})")

    def wait_http(self, name, url, timeout, want=200):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.check_alive(name)
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:
                    if resp.status == want:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[:200]!r}"
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        raise Fail(f"{name} not ready at {url} after {timeout}s (last: {last})")

    def app_env(self, port_var, port):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("STOCK_TRACKER") and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update({
            "DATABASE_URL": pg_url(self.db),
            "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}",
            "STOCK_TRACKER__REDIS__KEY_PREFIX": self.key_prefix,
            "STOCK_TRACKER__BROKER__URL": BROKER_URL,
            "STOCK_TRACKER__BROKER__SYNC_QUEUE": self.queues[0],
            "STOCK_TRACKER__BROKER__NOTIFICATIONS_QUEUE": self.queues[1],
            "STOCK_TRACKER__SERVER__SHUTDOWN_TIMEOUT_SECS": "5",
            "STOCK_TRACKER__WORKER__SHUTDOWN_TIMEOUT_SECS": "5",
            "STOCK_TRACKER__WORKER__DEMO_PRODUCTS": "50",
        })
        if port_var:
            env[port_var] = str(port)
        return env

    def log_tails(self, lines=40):
        for name, (proc, log) in self.procs.items():
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            print(f"---- last {lines} lines of {name} ({state}, {log}):", file=sys.stderr)
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                text = []
            for line in text[-lines:]:
                print(f"     {line[:400]}", file=sys.stderr)

    def cleanup(self, keep):
        problems = []
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for name, (proc, _) in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append(f"{name} ignored SIGTERM for 10 s; killed")
        if self.receiver:
            self.receiver.close()
        if self.db_created:
            try:
                psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            except (Fail, OSError, subprocess.SubprocessError) as err:
                problems.append(f"dropping database {self.db}: {err}")
            try:
                problems += amqp_delete_queues(self.queues)
            except OSError as err:
                problems.append(f"deleting queues {self.queues}: {err}")
            try:
                redis_delete_prefix(self.key_prefix)
            except OSError as err:
                problems.append(f"deleting Redis keys {self.key_prefix}*: {err}")
        if keep:
            print(f"     kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        for problem in problems:
            print(f"warn cleanup: {problem}", file=sys.stderr)


# --------------------------------------------------------------------------
# Derived configuration


def derive_rules(out_dir):
    """Copies of the shipped rule files without the shipped ALERT rule, plus
    an override file with the test rule. Returns (paths, number of rules,
    the shipped rule)."""
    out_dir.mkdir(parents=True)
    originals, paths, total = [], [], 0
    for path in sorted(mc.RULES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups", []):
            kept = []
            for rule in group.get("rules", []):
                if rule.get("alert") == ALERT:
                    originals.append(rule)
                else:
                    kept.append(rule)
            group["rules"] = kept
            total += len(kept)
        target = out_dir / path.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000))
        paths.append(target)
    if len(originals) != 1:
        raise Fail(f"expected one shipped rule named {ALERT}, found {len(originals)}: update e2e.py")
    rule = dict(originals[0])
    expr, n = re.subn(r">\s*[0-9.]+\s*$", f"> {TEST_THRESHOLD}", rule["expr"].strip())
    if n != 1:
        raise Fail(f"cannot find the threshold of {ALERT} in {rule['expr']!r}: update e2e.py")
    rule["expr"] = expr
    rule["for"] = "0s"
    override = out_dir / "zz-e2e-override.yml"
    override.write_text(
        "# Test-only override written by monitoring/check/e2e.py: the shipped rule with\n"
        f"# threshold {TEST_THRESHOLD} and for: 0s (the original is left out of the copies).\n"
        + yaml.safe_dump({"groups": [{"name": "e2e-override", "rules": [rule]}]}, sort_keys=False, width=1000))
    paths.append(override)
    return paths, total + 1, originals[0]


def derive_prometheus(out_dir, ports):
    doc = yaml.safe_load(mc.PROMETHEUS_YML.read_text())
    doc["global"].update({"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"})
    rule_paths, rule_count, original = derive_rules(out_dir / "rules")
    doc["rule_files"] = [str(p) for p in rule_paths]
    doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]}
    jobs, kept = [], []
    for sc in doc["scrape_configs"]:
        job = sc["job_name"]
        if job == "rabbitmq":
            continue  # the rabbitmq_prometheus plugin is not enabled on test machines
        if job not in ports:
            raise Fail(f"prometheus.yml has a job {job!r} e2e.py does not know: give it a loopback target")
        sc["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job]}"]}]
        jobs.append(job)
        kept.append(sc)
    doc["scrape_configs"] = kept
    if REQUIRED_JOBS - set(jobs):
        raise Fail(f"prometheus.yml has no job {sorted(REQUIRED_JOBS - set(jobs))}")
    config = out_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config, jobs, rule_count, original


# --------------------------------------------------------------------------
# Checks


def check_delivery(stack, prom_url, am_url, webhook_path, timeout):
    """Waits until the webhook receiver got ALERT firing; checks its content
    and the Slack message of the chat receiver."""
    deadline = time.monotonic() + timeout
    found = slack = None
    while time.monotonic() < deadline and not (found and slack):
        for body in stack.receiver.received("/alerts"):
            for alert in (body.get("alerts") or []) if isinstance(body, dict) else []:
                if alert.get("labels", {}).get("alertname") == ALERT and alert.get("status") == "firing":
                    found = found or (body, alert)
        for body in stack.receiver.received("/slack"):
            text = json.dumps(body)
            if ALERT in text or "median latency" in text:
                slack = slack or body
        for name in stack.procs:
            stack.check_alive(name)
        time.sleep(0.5)
    if not found:
        _, rules = mc.http_json(f"{prom_url}/api/v1/rules?type=alert")
        state = [r for g in (rules or {}).get("data", {}).get("groups", []) for r in g["rules"] if r["name"] == ALERT]
        _, am_alerts = mc.http_json(f"{am_url}/api/v2/alerts?filter=" + urllib.parse.quote(f'alertname="{ALERT}"'))
        raise Fail(f"{ALERT} did not reach the webhook receiver within {timeout}s.\n"
                   f"     Prometheus rule state: {json.dumps(state)[:1500]}\n"
                   f"     Alertmanager alerts: {json.dumps(am_alerts)[:1500]}\n"
                   f"     receiver got: {json.dumps(stack.receiver.posts)[:1500]}")
    body, alert = found
    labels, ann = alert.get("labels", {}), alert.get("annotations", {})
    problems = []
    if body.get("receiver") != "webhook":
        problems.append(f"payload receiver {body.get('receiver')!r}, expected 'webhook'")
    with stack.receiver.lock:
        paths = {path for path, _ in stack.receiver.posts if path.startswith("/alerts")}
    if paths != {webhook_path}:
        problems.append(f"webhook posts went to {sorted(paths)}, expected {webhook_path} (ALERT_WEBHOOK_URL)")
    expected = {"alertname": ALERT, "severity": "warning", "category": "api", "service": "api", "job": "api"}
    for key, value in expected.items():
        if labels.get(key) != value:
            problems.append(f"label {key}={labels.get(key)!r}, expected {value!r}")
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            problems.append(f"annotation {key} missing")
    if "{{" in ann.get("description", "") or "$value" in ann.get("description", ""):
        problems.append(f"description not templated: {ann.get('description')!r}")
    runbook = ann.get("runbook_url", "")
    if runbook != f"{mc.RUNBOOK_BASE}{ALERT}.md":
        problems.append(f"runbook_url {runbook!r} is not {mc.RUNBOOK_BASE}{ALERT}.md")
    elif not (mc.RUNBOOKS / f"{ALERT}.md").is_file():
        problems.append(f"monitoring/runbooks/{ALERT}.md does not exist")
    if not slack:
        problems.append("no Slack message from the chat receiver (secret file written by entrypoint.sh)")
    else:
        text = json.dumps(slack)
        if slack.get("channel") != "#stock-tracker-alerts":
            problems.append(f"Slack channel {slack.get('channel')!r}, expected '#stock-tracker-alerts'")
        if runbook not in text:
            problems.append("the Slack message does not carry the runbook URL")
    if problems:
        raise Fail(f"{ALERT} delivered with problems:\n" + "\n".join(f"     - {p}" for p in problems)
                   + f"\n     payload: {json.dumps(body)[:2000]}")
    ok(f"{ALERT} (threshold {TEST_THRESHOLD}, for 0s) reached the webhook receiver through Alertmanager: "
       f"firing, severity={labels['severity']} category={labels['category']} service={labels['service']}, "
       f"runbook monitoring/runbooks/{ALERT}.md; and the chat receiver's Slack message")
    print(f"     description: {ann['description']}")


def lint_expositions(urls):
    """`promtool check metrics` on a scrape of each role: naming (units,
    `_total`), help texts, types. Any finding fails the check."""
    for role, url in urls.items():
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read()
        res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
        findings = (res.stdout + res.stderr).decode().strip()
        if res.returncode != 0 or findings:
            raise Fail(f"promtool check metrics on the {role}'s /metrics:\n{findings}")
        families = sum(1 for line in text.decode().splitlines() if line.startswith("# TYPE "))
        ok(f"promtool check metrics: the {role}'s scrape ({families} families) reports nothing")


def merged_catalog(urls, out):
    merged, problems = {}, []
    for url in urls:
        status, body = request("GET", url)
        if status != 200 or not isinstance(body, list):
            raise Fail(f"GET {url}: HTTP {status}: {str(body)[:300]}")
        for item in body:
            name = item["name"]
            if name in merged:
                prev = merged[name]
                if str(prev.get("kind")).lower() != str(item.get("kind")).lower():
                    problems.append(f"{name}: kind {prev.get('kind')} in one catalogue, {item.get('kind')} in {url}")
                prev["labels"] = sorted(set(prev.get("labels") or []) | set(item.get("labels") or []))
            else:
                merged[name] = dict(item)
    if problems:
        raise Fail("the API's and the worker's catalogues disagree:\n" + "\n".join(f"     - {p}" for p in problems))
    out.write_text(json.dumps(list(merged.values()), indent=1))
    return merged


def check_targets(prom_url, jobs, timeout=30):
    deadline = time.monotonic() + timeout
    bad = {}
    while time.monotonic() < deadline:
        _, body = mc.http_json(f"{prom_url}/api/v1/targets?state=active")
        health = {}
        for t in (body or {}).get("data", {}).get("activeTargets", []):
            health[t["labels"]["job"]] = (t["health"], t.get("lastError", ""))
        bad = {j: health.get(j, ("missing", "")) for j in jobs if health.get(j, ("missing",))[0] != "up"}
        bad.update({j: ("not expected", "") for j in set(health) - set(jobs)})
        if not bad:
            ok(f"Prometheus scrapes every job and all are up: {', '.join(sorted(jobs))}")
            return
        time.sleep(0.5)
    raise Fail(f"scrape jobs not up after {timeout}s: {bad}")


def exposed_names(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return mc.exposition_names(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return set()


def notes(prom_url, api_url, worker_url, catalog):
    """What a reviewer should know: rule/panel metrics the running app never
    exposed, alerts firing or pending besides the test alert."""
    live = exposed_names(f"{api_url}/metrics") | exposed_names(f"{worker_url}/metrics")
    live_base = set(live)
    for name in live:
        for suffix in mc.HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                live_base.add(name[: -len(suffix)])
    used = set()
    for _, expr in mc.all_queries(mc.load_rules()):
        used |= {n for n in mc.metric_names(expr) if n.startswith("stock_tracker_")}
    missing = sorted({(mc.catalog_entry(n, catalog) or (n,))[0] for n in used} - live_base)
    if missing:
        note(f"{len(missing)} stock_tracker_* names used by rules, panels or runbooks were not exposed by the "
             f"running API or worker during this run (families without observations yet?): {', '.join(missing)}")
    _, body = mc.http_json(f"{prom_url}/api/v1/alerts")
    others = sorted({(a["labels"]["alertname"], a["state"],
                      ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k != "alertname"))
                     for a in (body or {}).get("data", {}).get("alerts", [])
                     if a["labels"]["alertname"] not in (ALERT, "Watchdog")})
    if others:
        note("other alerts pending or firing on this test stack: "
             + "; ".join(f"{n} {st} {{{labels}}}" for n, st, labels in others))


def traffic(api):
    """Register, log in, a demo marketplace synced by the worker, product
    listings; every authenticated call 0.5 s after the previous one, under the
    free tier's per-user share (3 requests per second)."""
    email = f"e2e-{secrets.token_hex(4)}@monitoring.example"
    password = "e2e-" + secrets.token_urlsafe(16)
    status, body = request("POST", f"{api}/api/v1/auth/register",
                           {"email": email, "password": password, "tenant_name": "Monitoring e2e"}, timeout=60)
    if status != 201:
        raise Fail(f"POST /api/v1/auth/register: HTTP {status}: {str(body)[:500]}")
    status, body = request("POST", f"{api}/api/v1/auth/login", {"email": email, "password": password}, timeout=60)
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise Fail(f"POST /api/v1/auth/login: HTTP {status}: {str(body)[:500]}")
    token = body["access_token"]
    last = [0.0]

    def paced(method, path, body=None):
        time.sleep(max(0.0, last[0] + 0.5 - time.monotonic()))
        last[0] = time.monotonic()
        return request(method, f"{api}{path}", body, token)

    status, body = paced("POST", "/api/v1/marketplaces", {"kind": "demo", "name": "Demo shop"})
    if status != 201:
        raise Fail(f"POST /api/v1/marketplaces: HTTP {status}: {str(body)[:500]}")
    status, body = paced("POST", "/api/v1/sync", {"connection_id": body["id"]})
    if status != 202 or not isinstance(body, dict) or "job_id" not in body:
        raise Fail(f"POST /api/v1/sync: HTTP {status}: {str(body)[:500]}")
    job = body["job_id"]
    statuses = {}
    for _ in range(30):
        status, _ = paced("GET", "/api/v1/products")
        statuses[status] = statuses.get(status, 0) + 1
    if set(statuses) - {200}:
        raise Fail(f"GET /api/v1/products (every 0.5 s) answered {statuses}")
    return token, job, statuses


def wait_job(api, token, job, timeout=60):
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        status, body = request("GET", f"{api}/api/v1/sync/jobs/{job}", token=token)
        if status == 200 and body.get("status") == "succeeded":
            return body
        if status == 200 and body.get("status") == "failed":
            break
        time.sleep(0.5)
    raise Fail(f"the worker did not complete the demo sync job {job}: {str(body)[:500]}")


# --------------------------------------------------------------------------


def run(stack):
    if not os.access(stack.binary, os.X_OK):
        raise Fail(f"{stack.binary} not found: run `cargo build` first "
                   "(or set STOCK_TRACKER_BIN / CARGO_TARGET_DIR)")
    for tool in ("psql", "prometheus", "prometheus-alertmanager", "prometheus-postgres-exporter",
                 "prometheus-redis-exporter"):
        if not shutil.which(tool):
            raise Fail(f"{tool} not found on PATH")

    # 1. database
    psql(f'DROP DATABASE IF EXISTS "{stack.db}" WITH (FORCE)')
    stack.db_created = True  # from here on, cleanup drops it (and the queues, keys)
    res = subprocess.run([str(stack.binary), "migrate"], env=stack.app_env(None, None),
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise Fail(f"stock-tracker migrate failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    ok(f"database {stack.db} created and migrated by `stock-tracker migrate`")

    # 2. processes
    ports = {job: free_port() for job in ("api", "worker", "beat", "postgres", "redis", "alertmanager", "prometheus")}
    stack.receiver = Receiver()
    token = secrets.token_hex(8)
    hook = f"http://127.0.0.1:{stack.receiver.port}"
    binary = str(stack.binary)
    stack.start("api", [binary, "serve"], stack.app_env("STOCK_TRACKER__SERVER__PORT", ports["api"]))
    stack.start("worker", [binary, "worker"], stack.app_env("STOCK_TRACKER__WORKER__PORT", ports["worker"]))
    stack.start("beat", [binary, "beat"], stack.app_env("STOCK_TRACKER__BEAT__PORT", ports["beat"]))
    stack.start("postgres-exporter",
                ["prometheus-postgres-exporter", f"--web.listen-address=127.0.0.1:{ports['postgres']}"],
                {**os.environ, "DATA_SOURCE_NAME": pg_url("postgres", "postgresql", "?sslmode=disable")})
    stack.start("redis-exporter",
                ["prometheus-redis-exporter", f"--redis.addr=redis://{REDIS[0]}:{REDIS[1]}",
                 f"--web.listen-address=127.0.0.1:{ports['redis']}"],
                {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")})

    # Alertmanager through the shipped entrypoint. The template's secrets
    # directory is pointed at a temporary one, so no real secret on this
    # machine can turn test alerts into real pages.
    secrets_dir = stack.dir / "alertmanager-secrets"
    shipped = mc.ALERTMANAGER_YML.read_text()
    if "/etc/alertmanager/secrets/" not in shipped:
        raise Fail("alertmanager.yml no longer reads /etc/alertmanager/secrets/: update e2e.py")
    template = stack.dir / "alertmanager-template.yml"
    template.write_text(shipped.replace("/etc/alertmanager/secrets/", f"{secrets_dir}/"))
    am_env = {k: v for k, v in os.environ.items() if k not in ALERTMANAGER_ENV}
    am_env.update({
        "ALERTMANAGER_CONFIG": str(template),
        "SECRETS_DIR": str(secrets_dir),
        "RENDERED_CONFIG": str(stack.dir / "alertmanager" / "alertmanager.yml"),
        "ALERTMANAGER_BIN": shutil.which("prometheus-alertmanager"),
        "ALERT_WEBHOOK_URL": f"{hook}/alerts?token={token}",
        "SLACK_API_URL": f"{hook}/slack",
        "SMTP_SMARTHOST": "127.0.0.1:9",  # nothing listens: email fails locally, never leaves the host
    })
    stack.start("alertmanager",
                ["sh", str(ENTRYPOINT), f"--storage.path={stack.dir / 'alertmanager-data'}",
                 f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address="],
                am_env)

    api = f"http://127.0.0.1:{ports['api']}"
    worker = f"http://127.0.0.1:{ports['worker']}"
    prom = f"http://127.0.0.1:{ports['prometheus']}"
    am = f"http://127.0.0.1:{ports['alertmanager']}"
    stack.wait_http("postgres-exporter", f"http://127.0.0.1:{ports['postgres']}/metrics", 30)
    stack.wait_http("redis-exporter", f"http://127.0.0.1:{ports['redis']}/metrics", 30)
    stack.wait_http("alertmanager", f"{am}/-/ready", 30)
    stack.wait_http("api", f"{api}/api/v1/health/ready", 90)
    stack.wait_http("worker", f"{worker}/health/ready", 90)
    stack.wait_http("beat", f"http://127.0.0.1:{ports['beat']}/health/live", 90)
    # Prometheus last: its first scrapes find every target up (no TargetDown
    # pending from the start-up, so any alert left in the notes is news).
    config, jobs, rule_count, original = derive_prometheus(stack.dir / "prometheus", ports)
    stack.start("prometheus",
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={stack.dir / 'prometheus-data'}",
                 f"--web.listen-address=127.0.0.1:{ports['prometheus']}", "--rules.alert.resend-delay=1s"],
                dict(os.environ))
    stack.wait_http("prometheus", f"{prom}/-/ready", 30)
    ok("API, worker, postgres and redis exporters, Alertmanager (via entrypoint.sh), Prometheus ready on loopback")

    rendered = (stack.dir / "alertmanager" / "alertmanager.yml").read_text()
    if f"{hook}/alerts?token={token}" not in rendered or not (secrets_dir / "slack_api_url").is_file():
        raise Fail("entrypoint.sh did not render ALERT_WEBHOOK_URL or write the Slack secret file")
    _, rules = mc.http_json(f"{prom}/api/v1/rules")
    loaded = {r["name"]: r for g in rules["data"]["groups"] for r in g["rules"]}
    count = sum(len(g["rules"]) for g in rules["data"]["groups"])
    if count != rule_count or ALERT not in loaded:
        raise Fail(f"Prometheus loaded {count} rules, expected {rule_count} with the override of {ALERT}")
    ok(f"Prometheus loaded the shipped rules ({rule_count - 1}) and the override: {ALERT} "
       f"{original['expr'].split('>')[-1].strip()} for {original.get('for', '0s')} -> {TEST_THRESHOLD} for 0s")

    # 3. traffic, alert delivery
    user_token, job, statuses = traffic(api)
    ok(f"traffic: register, login, demo marketplace, sync queued, GET /api/v1/products x{sum(statuses.values())}")
    check_delivery(stack, prom, am, f"/alerts?token={token}", 120)

    done = wait_job(api, user_token, job)
    ok(f"the worker ran the demo sync: {done.get('products_seen')} products seen, status {done['status']}")

    # 4. each role's exposition passes Prometheus's own linter, after traffic
    lint_expositions({"api": f"{api}/metrics", "worker": f"{worker}/metrics",
                      "beat": f"http://127.0.0.1:{ports['beat']}/metrics"})

    # 5. the running app's catalogue, scrape targets
    catalog_file = stack.dir / "catalog.json"
    merged_catalog([f"{api}/metrics/catalog", f"{worker}/metrics/catalog"], catalog_file)
    res = subprocess.run([sys.executable, str(mc.MON / "check" / "monitoring_check.py"), "static",
                          "--catalog", str(catalog_file)], text=True)
    if res.returncode != 0:
        raise Fail("static checks against the running app's /metrics/catalog failed (above)")
    ok("static checks pass against the running API's and worker's /metrics/catalog (merged)")
    check_targets(prom, jobs)
    notes(prom, api, worker, mc.parse_catalog(catalog_file))


def main():
    db = os.environ.get("STOCK_TRACKER_E2E_DB", "stock_tracker_monitoring_e2e")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", db):
        print(f"FAIL STOCK_TRACKER_E2E_DB={db!r}: lower-case letters, digits and _ only", file=sys.stderr)
        return 2
    keep = os.environ.get("MONITORING_E2E_KEEP") == "1"

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    stack = Stack(default_binary(), db)
    code = 1
    try:
        run(stack)
        code = 0
    except Fail as err:
        print(f"FAIL end to end: {err}", file=sys.stderr)
        stack.log_tails()
        if not keep:
            print("     (MONITORING_E2E_KEEP=1 keeps the logs and the derived configurations)", file=sys.stderr)
    except (KeyboardInterrupt, SystemExit) as err:
        code = err.code if isinstance(err, SystemExit) and isinstance(err.code, int) else 130
        print(f"FAIL end to end: interrupted ({code}); stopping everything", file=sys.stderr)
    except Exception:  # a bug here or an unexpected answer: still clean up
        traceback.print_exc()
        stack.log_tails()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.cleanup(keep)
    if code == 0:
        ok("end-to-end monitoring check passed")
    return code


if __name__ == "__main__":
    sys.exit(main())
