#!/usr/bin/env python3
"""Load benchmark of the Stock Tracker API. Python 3.11 stdlib only.

    python3 bench/run.py --binary target/release/stock-tracker [--smoke]
        [--duration SECS] [--concurrency 1,16,64,256] [--results-dir DIR] [--no-docs]

The flow:
 1. A fresh database `stock_tracker_bench` on the local PostgreSQL, migrated by
    the binary; a private redis-server on a free loopback port, so its
    INFO counters hold the benchmark's traffic and nothing else.
 2. The API runs as its own process (`serve` with bench/config.toml, which raises
    every limit out of reach while keeping every layer on), JSON logs to
    `<results>/logs/`.
 3. Seeding: tenants and their users through the API, the tenants moved to the
    `internal` tier, every user signed in; products and stock history by SQL
    (bench/seed.sql); a deep page cursor per tenant found through the API.
 4. Each scenario runs under wrk (bench/wrk/requests.lua, reading one request
    file per scenario) at each concurrency level after a warm-up, while the
    server's CPU time, resident memory and /metrics counters, and Redis's CPU
    time and command counts, are read.
 5. Layer costs: the cached list with the full middleware stack, with none
    ("bare handlers") and with each layer off in turn, a server per config.
 6. JSON and Markdown results under the results dir, compared with the
    targets; the bench block and history table of docs/performance.md are
    updated (not with --smoke or --no-docs, nor after a run with errors). The
    Markdown is printed to stdout; progress goes to stderr.

`--smoke` (CI): 2 tenants, small data, 2 s per scenario, concurrency 1 and 16,
a temporary results dir; exits non-zero on any error. Any run exits non-zero
when a request failed or a scenario served nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
CONFIG_FILE = BENCH_DIR / "config.toml"
WRK_SCRIPT = BENCH_DIR / "wrk" / "requests.lua"
SEED_SQL = BENCH_DIR / "seed.sql"
DOCS = REPO / "docs" / "performance.md"

DATABASE = "stock_tracker_bench"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_PREFIX = "stock_tracker_bench:"
# At least 10 characters, not on the service's list of common passwords.
PASSWORD = "bench-Password-7f3k2q"

# What `server.disabled_layers` accepts. Sentry is mounted only with a DSN,
# which the benchmark never sets, so switching it off alone measures nothing.
LAYERS = ("request_context", "cors", "compression", "sentry", "metrics",
          "load_shedding", "rate_limit", "tenant_context", "panic_guard")
UNMOUNTED_LAYERS = ("sentry",)
# Argon2-bound: more concurrency only queues, so login runs at these levels only.
LOGIN_CONCURRENCY = (1, 16)
READ_SCENARIOS = ("liveness", "cached_list", "cached_list_deep", "uncached_read")

DOCS_BLOCK = ("<!-- bench:begin -->", "<!-- bench:end -->")
DOCS_HISTORY = ("<!-- bench-history:begin -->", "<!-- bench-history:end -->")
HISTORY_HEADER = (
    "| date | commit | cached list @64 req/s (p99 ms) | uncached read @64 req/s (p99 ms) "
    "| liveness @64 req/s | 16 logins peak RSS MiB | middleware cost | idle RSS MiB |\n"
    "|---|---|---|---|---|---|---|---|"
)


class BenchError(Exception):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- settings ---------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    smoke: bool
    duration: int            # seconds per measured run
    warmup: int              # seconds of load before each measured run
    concurrency: tuple[int, ...]
    tenants: int
    extra_roles: tuple[str, ...]  # users added to each tenant besides its owner
    products_per_tenant: int
    deep_pages: int          # pages of 100 followed to find the deep cursor
    layer_concurrency: int
    layer_duration: int

    @property
    def users_per_tenant(self) -> int:
        return 1 + len(self.extra_roles)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        return Plan(smoke=True, duration=2, warmup=1, concurrency=(1, 16), tenants=2,
                    extra_roles=(), products_per_tenant=500, deep_pages=3,
                    layer_concurrency=16, layer_duration=1)
    return Plan(smoke=False, duration=args.duration, warmup=3,
                concurrency=tuple(args.concurrency), tenants=20,
                extra_roles=("member", "member", "viewer", "viewer"),
                products_per_tenant=10_000, deep_pages=50,
                layer_concurrency=64, layer_duration=args.duration)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, type=Path,
                        help="the stock-tracker binary to benchmark (a release build)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny CI run: 2 tenants, 2 s per scenario, concurrency 1 and 16, "
                             "temporary results dir; ignores --duration and --concurrency")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--concurrency", default=(1, 16, 64, 256),
                        type=lambda s: tuple(int(c) for c in s.split(",")),
                        help="connection counts, comma-separated (default 1,16,64,256)")
    parser.add_argument("--results-dir", type=Path,
                        help="default bench/results (--smoke: a temporary directory)")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args()
    args.binary = args.binary.resolve()
    if not os.access(args.binary, os.X_OK):
        parser.error(f"{args.binary} is not an executable file")
    return args


# --- commands, PostgreSQL, Redis --------------------------------------------

def run_command(args: list[str], *, env: dict | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise BenchError(f"`{' '.join(args[:6])}` exited {result.returncode}: {output}")
    return result.stdout


def psql(sql: str | None = None, *, file: Path | None = None, database: str = DATABASE,
         variables: dict[str, object] | None = None) -> str:
    args = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", database,
            "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    for name, value in (variables or {}).items():
        args += ["-v", f"{name}={value}"]
    args += ["-f", str(file)] if file else ["-c", sql]
    return run_command(args)


def service_env() -> dict[str, str]:
    """The environment of `migrate` and `serve`: the bench database, Redis
    prefix and config file, and nothing inherited that could change them
    (a stray STOCK_TRACKER__* or SENTRY_* variable)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("STOCK_TRACKER", "SENTRY"))
           and name not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "STOCK_TRACKER_CONFIG": str(CONFIG_FILE),
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": PrivateRedis.url(),
        "STOCK_TRACKER__REDIS__KEY_PREFIX": REDIS_PREFIX,
    })
    return env


def recreate_database(binary: Path) -> None:
    psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", database="postgres")
    psql(f"CREATE DATABASE {DATABASE}", database="postgres")
    run_command([str(binary), "migrate"], env=service_env())


class PrivateRedis:
    """The benchmark's own redis-server, on a free loopback port, without
    persistence: its `INFO cpu` and `INFO commandstats` count the benchmark's
    commands only, and nothing is left in the machine's shared Redis."""

    port: int | None = None
    process: subprocess.Popen | None = None

    @classmethod
    def url(cls) -> str:
        return f"redis://127.0.0.1:{cls.port}"

    @classmethod
    def start(cls) -> None:
        cls.port = free_port()
        cls.process = subprocess.Popen(
            ["redis-server", "--port", str(cls.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(BenchError):
                if redis_cli("PING").strip() == "PONG":
                    return
            time.sleep(0.05)
        raise BenchError("the private redis-server did not answer within 10 s")

    @classmethod
    def stop(cls) -> None:
        if cls.process and cls.process.poll() is None:
            cls.process.terminate()
            cls.process.wait(timeout=10)


def redis_cli(*args: str) -> str:
    return run_command(["redis-cli", "-p", str(PrivateRedis.port), *args])


def redis_counters() -> dict[str, float]:
    """Redis's CPU seconds (user + system: the event loop, the network and
    the commands) and calls and microseconds per command so far."""
    counters: dict[str, float] = {}
    for line in redis_cli("INFO", "all").splitlines():
        if line.startswith(("used_cpu_user:", "used_cpu_sys:")):
            counters["cpu_s"] = counters.get("cpu_s", 0.0) + float(line.split(":")[1])
        elif line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            values = dict(field.split("=") for field in fields.split(","))
            counters[f"calls:{name}"] = float(values["calls"])
            counters[f"usec:{name}"] = float(values["usec"])
    return counters


def redis_round_trips(server: "Server", scenario: "Scenario") -> float | None:
    """Commands the service sends Redis per request (a round trip each): one
    second of the scenario on one connection under MONITOR, which marks the
    commands a script runs inside its EVALSHA with `lua]`; those are not
    round trips. MONITOR slows Redis, so this run's speed is not reported."""
    if scenario.cold_cache:
        drop_cache()
    with tempfile.TemporaryFile() as out:
        monitor = subprocess.Popen(["redis-cli", "-p", str(PrivateRedis.port), "MONITOR"],
                                   stdout=out, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        before = metric_sum(server.metrics(), "stock_tracker_http_requests_total")
        run_wrk(server.url, scenario.requests, 1, 1)
        served = metric_sum(server.metrics(), "stock_tracker_http_requests_total") - before
        time.sleep(0.2)
        monitor.terminate()
        monitor.wait(timeout=10)
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    # The scrapes of /metrics are requests too, and send Redis nothing but the
    # active-tenant PFCOUNT: both are left out, with the once-a-minute note of
    # a tenant's activity. Leases of the global budget are counted.
    sent = [line for line in lines if '"' in line and "lua]" not in line
            and "active_tenants" not in line]
    return len(sent) / (served - 1) if served > 1 else None


def drop_cache() -> None:
    """Deletes every cached response (the benchmark's Redis is its own)."""
    redis_cli("EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('UNLINK', k) end",
              "0", f"{REDIS_PREFIX}cache:*")


# --- the server under test --------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The service's own listeners only: an http_proxy in the environment must not apply.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, *, token: str | None = None, body: object = None,
         timeout: float = 30) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with HTTP.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError as err:
        raise BenchError(f"{method} {url} failed: {err}") from err


MetricSamples = list[tuple[str, dict[str, str], float]]
METRIC_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
METRIC_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> MetricSamples:
    samples = []
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            name, labels, value = match.groups()
            samples.append((name, dict(METRIC_LABEL.findall(labels or "")), float(value)))
    return samples


def metric_sum(samples: MetricSamples, name: str, **labels: str) -> float:
    return sum(value for sample_name, sample_labels, value in samples
               if sample_name == name
               and all(sample_labels.get(k) == v for k, v in labels.items()))


class Server:
    """`stock-tracker serve` in its own process, on a free port."""

    def __init__(self, binary: Path, log_path: Path, disabled_layers: tuple[str, ...] = (),
                 database_url: str = DATABASE_URL):
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = service_env()
        env["DATABASE_URL"] = database_url
        env["STOCK_TRACKER__SERVER__PORT"] = str(self.port)
        if disabled_layers:
            env["STOCK_TRACKER__SERVER__DISABLED_LAYERS"] = ",".join(disabled_layers)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen([str(binary), "serve"], env=env, cwd=REPO,
                                            stdout=log_file, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_until_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the server exited with status {self.process.returncode} while starting")
            with contextlib.suppress(BenchError):  # not listening yet
                if http("GET", f"{self.url}/api/v1/health/ready", timeout=2)[0] == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"the server was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM, then wait for the graceful shutdown (SIGKILL if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                log(f"the server (pid {self.pid}) ignored SIGTERM for 45 s; killing it")
                self.process.kill()
                self.process.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError(f"no VmRSS for pid {self.pid}")

    def metrics(self) -> MetricSamples:
        status, body = http("GET", f"{self.url}/metrics")
        if status != 200:
            raise BenchError(f"GET /metrics answered {status}")
        return parse_metrics(body.decode())

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@contextlib.contextmanager
def running_server(binary: Path, log_path: Path, disabled_layers: tuple[str, ...] = (),
                   database_url: str = DATABASE_URL):
    """A ready server, always stopped afterwards; on failure its log's tail is printed."""
    server = Server(binary, log_path, disabled_layers, database_url)
    try:
        server.wait_until_ready()
        yield server
    except BaseException:
        log(f"server log {log_path}, last lines:\n{server.log_tail()}")
        raise
    finally:
        server.stop()


class PeakRss:
    """Samples a process's resident memory every 50 ms in a thread."""

    def __init__(self, server: Server):
        self.server = server
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, BenchError):
                self.peak_mib = max(self.peak_mib, self.server.rss_mib())
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


# --- seeding ----------------------------------------------------------------

@dataclass
class BenchUser:
    email: str
    role: str
    token: str = ""


@dataclass
class Tenant:
    id: str
    users: list[BenchUser]
    product_ids: list[str] = field(default_factory=list)
    deep_cursor: str = ""

    @property
    def owner(self) -> BenchUser:
        return self.users[0]

    @property
    def writers(self) -> list[BenchUser]:
        """Users allowed to change products (member and above)."""
        return [u for u in self.users if u.role in ("owner", "admin", "member")]


def api(server: Server, method: str, path: str, *, token: str | None = None,
        body: object = None, expect: int = 200) -> dict:
    status, payload = http(method, server.url + path, token=token, body=body)
    if status != expect:
        raise BenchError(f"{method} {path} answered {status} (expected {expect}): {payload[:300]!r}")
    return json.loads(payload)


def register_tenant(server: Server, number: int) -> Tenant:
    email = f"owner@seller{number:02d}.bench.example.com"
    created = api(server, "POST", "/api/v1/auth/register", expect=201, body={
        "email": email, "password": PASSWORD,
        "tenant_name": f"Bench Seller {number:02d}", "full_name": f"Owner {number:02d}"})
    return Tenant(id=created["tenant"]["id"], users=[BenchUser(email, "owner")])


def sign_in(server: Server, user: BenchUser) -> None:
    user.token = api(server, "POST", "/api/v1/auth/login",
                     body={"email": user.email, "password": PASSWORD})["access_token"]


def add_user(server: Server, tenant: Tenant, number: int, role: str) -> BenchUser:
    domain = tenant.owner.email.split("@")[1]
    user = BenchUser(f"{role}{number}@{domain}", role)
    api(server, "POST", "/api/v1/users", token=tenant.owner.token, expect=201,
        body={"email": user.email, "password": PASSWORD, "role": role,
              "full_name": f"{role.title()} {number}"})
    return user


def find_deep_cursor(server: Server, tenant: Tenant, pages: int) -> str:
    """Follows `next_cursor` through `pages` pages of 100, as a client would."""
    cursor = None
    for page in range(pages):
        query = "limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        cursor = api(server, "GET", f"/api/v1/products?{query}",
                     token=tenant.owner.token)["next_cursor"]
        if cursor is None:
            raise BenchError(f"tenant {tenant.id} has {page + 1} pages of 100 products; "
                             f"the deep cursor needs more than {pages}")
    return cursor


def seed(server: Server, plan: Plan) -> list[Tenant]:
    # Argon2 makes registration and sign-in slow; a few at a time keep both cores busy.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        tenants = list(pool.map(lambda n: register_tenant(server, n), range(1, plan.tenants + 1)))
        # Before anyone signs in: access tokens carry the tier.
        psql("UPDATE tenants SET tier = 'internal'")
        list(pool.map(lambda t: sign_in(server, t.owner), tenants))
        additions = [(t, n, role) for t in tenants for n, role in enumerate(plan.extra_roles, 1)]
        added = list(pool.map(lambda a: add_user(server, *a), additions))
        for (tenant, _, _), user in zip(additions, added):
            tenant.users.append(user)
        list(pool.map(lambda u: sign_in(server, u), added))
        log(f"{len(tenants)} tenants, {sum(len(t.users) for t in tenants)} users signed in; "
            f"inserting {plan.products_per_tenant:,} products per tenant")
        psql(file=SEED_SQL, variables={"products_per_tenant": plan.products_per_tenant})
        by_id = {t.id: t for t in tenants}
        for line in psql("SELECT tenant_id, id FROM products ORDER BY tenant_id, id").splitlines():
            tenant_id, product_id = line.split("|")
            by_id[tenant_id].product_ids.append(product_id)
        cursors = pool.map(lambda t: find_deep_cursor(server, t, plan.deep_pages), tenants)
        for tenant, cursor in zip(tenants, cursors):
            tenant.deep_cursor = cursor
    return tenants


# --- request files ----------------------------------------------------------

def request_line(method: str, path: str, token: str = "", body: object = None) -> str:
    return f"{method}\t{path}\t{token}\t{'' if body is None else json.dumps(body)}\n"


def list_path(cursor: str | None = None) -> str:
    return "/api/v1/products?limit=50" + (f"&cursor={cursor}" if cursor else "")


def interleaved_products(tenants: list[Tenant]) -> list[tuple[Tenant, str, BenchUser]]:
    """Every product once, tenants taking turns, each with a user of its tenant."""
    return [(t, t.product_ids[i], t.users[i % len(t.users)])
            for i in range(max(len(t.product_ids) for t in tenants))
            for t in tenants if i < len(t.product_ids)]


def mixed_requests(tenants: list[Tenant], count: int) -> list[str]:
    """90 % list reads (first or deep page), 9 % reads of distinct products, 1 %
    PATCHes of distinct products, across every tenant and user, shuffled with a
    fixed seed. Products are taken from the end of the catalogue, so they are
    not those the uncached scenario starts with (a small catalogue repeats)."""
    rng = random.Random(13)
    users = [(t, u) for t in tenants for u in t.users]
    products = itertools.cycle(reversed(interleaved_products(tenants)))
    lines = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.90:
            tenant, user = rng.choice(users)
            lines.append(request_line("GET", list_path(rng.choice([None, tenant.deep_cursor])), user.token))
        elif draw < 0.99:
            _, product_id, user = next(products)
            lines.append(request_line("GET", f"/api/v1/products/{product_id}", user.token))
        else:
            tenant, product_id, _ = next(products)
            writer = rng.choice(tenant.writers)
            lines.append(request_line("PATCH", f"/api/v1/products/{product_id}", writer.token,
                                      {"stock": rng.randint(0, 500)}))
    return lines


@dataclass(frozen=True)
class Scenario:
    name: str
    requests: Path
    concurrency: tuple[int, ...]
    # Drop the cache before the measured run, so product reads miss.
    cold_cache: bool = False


def write_scenarios(tenants: list[Tenant], plan: Plan, directory: Path) -> list[Scenario]:
    """The request file of each scenario, in the order they run."""
    users = [(t, u) for t in tenants for u in t.users]
    products = interleaved_products(tenants)
    plans = [
        ("liveness", plan.concurrency, False, [request_line("GET", "/api/v1/health/live")]),
        ("cached_list", plan.concurrency, False, [request_line("GET", list_path(), u.token) for _, u in users]),
        ("cached_list_deep", plan.concurrency, False,
         [request_line("GET", list_path(t.deep_cursor), u.token) for t, u in users]),
        ("uncached_read", plan.concurrency, True,
         [request_line("GET", f"/api/v1/products/{p}", u.token) for _, p, u in products]),
        # The product reads of the mix are meant to miss as well.
        ("mixed", plan.concurrency, True, mixed_requests(tenants, count=min(100_000, 10 * len(products)))),
        ("login", LOGIN_CONCURRENCY, False,
         [request_line("POST", "/api/v1/auth/login", "", {"email": u.email, "password": PASSWORD})
          for _, u in users]),
    ]
    scenarios = []
    for name, concurrency, cold_cache, lines in plans:
        path = directory / f"{name}.tsv"
        path.write_text("".join(lines))
        scenarios.append(Scenario(name, path, concurrency, cold_cache))
    return scenarios


# --- measuring --------------------------------------------------------------

def run_wrk(url: str, requests: Path, connections: int, seconds: int) -> dict:
    threads = min(connections, 2)
    env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_THREADS": str(threads)}
    output = run_command(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                          "--timeout", "5s", "-s", str(WRK_SCRIPT), url], env=env)
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise BenchError(f"wrk printed no BENCH_JSON line:\n{output}")


def measure(server: Server, scenario: Scenario, connections: int, plan: Plan) -> dict:
    run_wrk(server.url, scenario.requests, connections, plan.warmup)
    if scenario.cold_cache:
        drop_cache()
    before = server.metrics()
    redis_before = redis_counters()
    cpu_before = server.cpu_seconds()
    with PeakRss(server) as rss:
        result = run_wrk(server.url, scenario.requests, connections, plan.duration)
    cpu = server.cpu_seconds() - cpu_before
    redis_after = redis_counters()
    after = server.metrics()

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    # Counted by the server over the same interval as its CPU time (wrk's own
    # count starts only once all its threads are set up).
    served = delta("stock_tracker_http_requests_total")

    def redis_delta(prefix: str) -> float:
        return sum(value - redis_before.get(key, 0.0)
                   for key, value in redis_after.items() if key.startswith(prefix))

    round_trips = redis_round_trips(server, scenario) if connections == 1 else None
    return {
        "scenario": scenario.name,
        "concurrency": connections,
        **result,
        "server_requests": int(served),
        "cpu_s_per_1k": cpu / served * 1000 if served else None,
        "peak_rss_mib": rss.peak_mib,
        "sql_per_request": delta("stock_tracker_db_query_duration_seconds_count") / served if served else None,
        "cache_hits": int(delta("stock_tracker_cache_requests_total", result="hit")),
        "cache_misses": int(delta("stock_tracker_cache_requests_total", result="miss")),
        "cache_bypasses": int(delta("stock_tracker_cache_requests_total", result="bypass")),
        "redis_cpu_us_per_request": redis_delta("cpu_s") * 1e6 / served if served else None,
        "redis_script_us_per_request": redis_delta("usec:evalsha") / served if served else None,
        "redis_round_trips_per_request": round_trips,
    }


def run_scenarios(server: Server, scenarios: list[Scenario], plan: Plan) -> list[dict]:
    rows = []
    for scenario in scenarios:
        for connections in scenario.concurrency:
            row = measure(server, scenario, connections, plan)
            log(f"{scenario.name:17} c={connections:<4} {row['rps']:>9,.0f} req/s  "
                f"p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}  "
                f"hit/miss {row['cache_hits']}/{row['cache_misses']}")
            rows.append(row)
    return rows


def layer_configs() -> list[tuple[str, tuple[str, ...]]]:
    """Full stack first and last (their mean is the reference, which evens out
    drift over the sequence), bare handlers, and each mounted layer off alone."""
    return ([("full stack", ()), ("bare handlers", LAYERS)]
            + [(f"without {layer}", (layer,)) for layer in LAYERS if layer not in UNMOUNTED_LAYERS]
            + [("full stack (again)", ())])


class PgRoundTrips:
    """A loopback proxy in front of PostgreSQL that counts round trips: the
    client messages the server answers with ReadyForQuery, a simple Query
    ('Q') or the Sync ('S') ending an extended-protocol batch."""

    SSL_REQUEST = 80877103

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def database_url(self) -> str:
        # In clear, so the messages can be read.
        return DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}") + "?sslmode=disable"

    def take(self) -> int:
        with self._lock:
            count, self.count = self.count, 0
        return count

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            server = socket.create_connection(("127.0.0.1", 5432))
            threading.Thread(target=self._copy, args=(server, client), daemon=True).start()
            threading.Thread(target=self._count, args=(client, server), daemon=True).start()

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _count(self, client: socket.socket, server: socket.socket) -> None:
        stream = client.makefile("rb")
        started = False
        with contextlib.suppress(OSError, ValueError):
            while True:
                kind = stream.read(1) if started else b""
                header = stream.read(4)
                if len(header) < 4 or (started and not kind):
                    break
                body = stream.read(int.from_bytes(header, "big") - 4)
                if not started:
                    started = int.from_bytes(body[:4], "big") != self.SSL_REQUEST
                elif kind in (b"Q", b"S"):
                    with self._lock:
                        self.count += 1
                server.sendall(kind + header + body)
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)


def pg_round_trips(binary: Path, scenario: Scenario, logs_dir: Path) -> float | None:
    """PostgreSQL round trips per request of `scenario`: one second of it on
    one connection, through a counting proxy, on a server of its own (the
    proxy slows it, so this run's speed is not reported). The cache is
    dropped first, so every read misses."""
    proxy = PgRoundTrips()
    with running_server(binary, logs_dir / "pg-round-trips.log", (), proxy.database_url()) as server:
        drop_cache()
        proxy.take()
        before = metric_sum(server.metrics(), "stock_tracker_http_requests_total")
        run_wrk(server.url, scenario.requests, 1, 1)
        served = metric_sum(server.metrics(), "stock_tracker_http_requests_total") - before
        time.sleep(0.5)  # connections go back to the pool after the responses
        sent = proxy.take()
    # Less the scrape of /metrics between the two counts, which queries nothing.
    return sent / (served - 1) if served > 1 else None


def measure_layers(binary: Path, scenario: Scenario, plan: Plan, logs_dir: Path) -> dict:
    runs = []
    for label, disabled in layer_configs():
        log_path = logs_dir / f"layers-{re.sub(r'[^a-z_]+', '-', label).strip('-')}.log"
        with running_server(binary, log_path, disabled) as server:
            run_wrk(server.url, scenario.requests, plan.layer_concurrency, plan.warmup)
            result = run_wrk(server.url, scenario.requests, plan.layer_concurrency, plan.layer_duration)
        log(f"layers: {label:26} {result['rps']:>9,.0f} req/s  p99 {result['p99_ms']:.2f} ms  "
            f"errors {result['errors']}")
        runs.append({"config": label, "scenario": f"{scenario.name} ({label})",
                     "concurrency": plan.layer_concurrency, "disabled_layers": list(disabled), **result})
    full_runs = [r for r in runs if not r["disabled_layers"]]
    full_rps = statistics.mean(r["rps"] for r in full_runs)
    full_p99 = statistics.mean(r["p99_ms"] for r in full_runs)
    bare = next(r for r in runs if r["config"] == "bare handlers")
    for run in runs:
        run["rps_vs_full_pct"] = (run["rps"] / full_rps - 1) * 100
        run["p99_diff_ms"] = run["p99_ms"] - full_p99
    return {
        "scenario": scenario.name,
        "concurrency": plan.layer_concurrency,
        "duration_s": plan.layer_duration,
        "full_rps": full_rps,
        "full_p99_ms": full_p99,
        "bare_rps": bare["rps"],
        "bare_p99_ms": bare["p99_ms"],
        "throughput_ratio": full_rps / bare["rps"],
        "middleware_cost_pct": (1 - full_rps / bare["rps"]) * 100,
        "p99_diff_ms": full_p99 - bare["p99_ms"],
        "not_measured": {layer: "not mounted without a Sentry DSN (none is set here)"
                         for layer in UNMOUNTED_LAYERS},
        "runs": runs,
    }


# --- results ----------------------------------------------------------------

def describe_machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kib = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
    return {
        "cores": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else "unknown",
        "kernel": os.uname().release,
        "memory_gib": round(mem_kib / 1024 ** 2, 1),
        # `wrk -v` prints its version, then its usage, and exits 1.
        "load_generator": subprocess.run(["wrk", "-v"], capture_output=True, text=True)
                                    .stdout.split(" [")[0].strip(),
    }


def describe_commit() -> str:
    commit = run_command(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip()
    # Only tracked files count: untracked ones (results, logs) are not built.
    changed = run_command(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return commit + ("-dirty" if changed.strip() else "")


def find_row(rows: list[dict], scenario: str, concurrency: int) -> dict | None:
    return next((r for r in rows if r["scenario"] == scenario and r["concurrency"] == concurrency), None)


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    shortfall = (target - value) / target if higher_is_better else (value - target) / target
    return "met" if shortfall <= 0 else f"missed by {shortfall * 100:.0f} %"


def evaluate_targets(rows: list[dict], layers: dict, idle_rss_mib: float) -> list[dict]:
    def at(scenario: str, concurrency: int, key: str) -> float | None:
        row = find_row(rows, scenario, concurrency)
        return row[key] if row else None

    read_rss = [r["peak_rss_mib"] for r in rows if r["scenario"] in READ_SCENARIOS]
    targets = [
        ("cached list, 64 connections: req/s", at("cached_list", 64, "rps"), 25_000, True),
        ("cached list, 64 connections: p99 ms", at("cached_list", 64, "p99_ms"), 5, False),
        ("full stack, % of bare handlers' throughput", layers["throughput_ratio"] * 100, 60, True),
        ("uncached read, 64 connections: req/s", at("uncached_read", 64, "rps"), 9_000, True),
        ("uncached read, 64 connections: p99 ms", at("uncached_read", 64, "p99_ms"), 12, False),
        ("uncached read: PostgreSQL round trips per request",
         at("uncached_read", 1, "pg_round_trips_per_request"), 2, False),
        ("cached list: Redis round trips per request",
         at("cached_list", 1, "redis_round_trips_per_request"), 2, False),
        ("cached list, 64 connections: Redis CPU µs per request",
         at("cached_list", 64, "redis_cpu_us_per_request"), 15, False),
        ("liveness, 64 connections: req/s", at("liveness", 64, "rps"), 60_000, True),
        ("16 concurrent logins: peak RSS MiB", at("login", 16, "peak_rss_mib"), 400, False),
        ("idle RSS MiB", idle_rss_mib, 32, False),
        ("RSS under the read scenarios, MiB", max(read_rss) if read_rss else None, 64, False),
    ]
    return [{"target": name, "goal": ("≥ " if higher else "≤ ") + f"{goal:,}", "measured": value,
             "result": verdict(value, goal, higher)}
            for name, value, goal, higher in targets]


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown_rows(rows: list[dict]) -> list[str]:
    lines = ["| scenario | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors "
             "| CPU s / 1k req | peak RSS MiB | SQL / req | cache hit / miss "
             "| Redis µs / req | script µs / req | Redis round trips / req | PG round trips / req |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['concurrency']} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} "
                     f"| {fmt(r['p90_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['max_ms'], 2)} | {r['errors']} "
                     f"| {fmt(r['cpu_s_per_1k'], 3)} | {fmt(r['peak_rss_mib'])} | {fmt(r['sql_per_request'], 2)} "
                     f"| {r['cache_hits']:,} / {r['cache_misses']:,} "
                     f"| {fmt(r.get('redis_cpu_us_per_request'))} | {fmt(r.get('redis_script_us_per_request'))} "
                     f"| {fmt(r.get('redis_round_trips_per_request'), 2)} "
                     f"| {fmt(r.get('pg_round_trips_per_request'), 2)} |")
    return lines


def render_markdown(report: dict) -> str:
    m, s, layers = report["machine"], report["settings"], report["layer_costs"]
    rows = report["rows"]
    lines = [
        f"Measured {report['date']} at commit `{report['commit']}` on {m['cores']} cores "
        f"({m['cpu_model']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}; "
        f"load from {m['load_generator']} on the same machine.",
        "",
        f"{s['tenants']} tenants on the `internal` tier, {s['users']} users, "
        f"{s['products_per_tenant']:,} products per tenant with 3 stock records each "
        f"(deep page: after {s['deep_cursor_offset']:,}); {s['duration_s']} s per run after "
        f"{s['warmup_s']} s of warm-up, at {', '.join(map(str, s['concurrency']))} connections "
        f"(login at {', '.join(map(str, s['login_concurrency']))}); limits raised out of reach by "
        f"`bench/config.toml`, every layer on. Idle RSS after seeding: {fmt(report['idle_rss_mib'])} MiB.",
        "",
        "**Throughput and latency**",
        "",
        *markdown_rows([r for r in rows if r["scenario"] != "login"]),
        "",
    ]
    for r in rows:
        if r["scenario"] == "uncached_read":
            looked_up = r["cache_hits"] + r["cache_misses"]
            lines.append(f"- uncached_read at {r['concurrency']} connections (cache dropped before "
                         f"the run): {r['cache_misses']:,} cache misses, {r['cache_hits']:,} hits, "
                         f"{fmt(looked_up and 100 * r['cache_misses'] / looked_up, 0)} % misses.")
    lines += [
        "",
        "**Login** (argon2id at OWASP parameters, hashes capped at one per core)",
        "",
        *markdown_rows([r for r in rows if r["scenario"] == "login"]),
        "",
        f"**Cost of the middleware layers** ({layers['scenario']}, {layers['concurrency']} connections, "
        f"{layers['duration_s']} s each, a fresh server per configuration): full stack "
        f"{fmt(layers['full_rps'], 0)} req/s (mean of the first and last run), p99 "
        f"{fmt(layers['full_p99_ms'], 2)} ms; bare handlers {fmt(layers['bare_rps'], 0)} req/s, p99 "
        f"{fmt(layers['bare_p99_ms'], 2)} ms. Throughput ratio full/bare "
        f"**{layers['throughput_ratio']:.2f}**, middleware cost **{layers['middleware_cost_pct']:.1f} %**, "
        f"p99 difference {layers['p99_diff_ms']:+.2f} ms.",
        "",
        "| configuration | req/s | vs full stack | p99 ms | p99 vs full | errors |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for run in layers["runs"]:
        lines.append(f"| {run['config']} | {fmt(run['rps'], 0)} | {run['rps_vs_full_pct']:+.1f} % "
                     f"| {fmt(run['p99_ms'], 2)} | {run['p99_diff_ms']:+.2f} ms | {run['errors']} |")
    lines.append("")
    for layer, reason in layers["not_measured"].items():
        lines.append(f"`{layer}`: {reason}.")
    lines += ["", "**Targets**", "",
              "| target | goal | measured | result |", "|---|--:|--:|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['goal']} | {fmt(t['measured'])} | {t['result']} |")
    return "\n".join(lines) + "\n"


def history_row(report: dict) -> str:
    rows, layers = report["rows"], report["layer_costs"]

    def rps_p99(scenario: str) -> str:
        row = find_row(rows, scenario, 64)
        return f"{row['rps']:,.0f} ({row['p99_ms']:.2f})" if row else "—"

    liveness = find_row(rows, "liveness", 64)
    login = find_row(rows, "login", 16)
    return (f"| {report['date']} | `{report['commit']}` | {rps_p99('cached_list')} "
            f"| {rps_p99('uncached_read')} | {fmt(liveness and liveness['rps'], 0)} "
            f"| {fmt(login and login['peak_rss_mib'])} | {layers['middleware_cost_pct']:.1f} % "
            f"| {fmt(report['idle_rss_mib'])} |")


def replace_between(text: str, markers: tuple[str, str], replace) -> str | None:
    """`text` with what lies between the markers passed through `replace`;
    None when the markers are missing."""
    begin, end = markers
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        log(f"warning: docs/performance.md has no `{begin}` ... `{end}` markers; that part is not updated")
        return None
    start += len(begin)
    return text[:start] + "\n" + replace(text[start:stop]).strip("\n") + "\n" + text[stop:]


def prepend_history(block: str, row: str) -> str:
    """Adds `row` on top of the history table, keeping the earlier rows."""
    lines = block.strip("\n").splitlines()
    table_start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if table_start is None:
        return "\n".join(lines + [HISTORY_HEADER, row])
    # Below the header row and its separator.
    lines.insert(table_start + 2, row)
    return "\n".join(lines)


def update_docs(markdown: str, row: str) -> None:
    text = DOCS.read_text()
    for markers, replace in ((DOCS_BLOCK, lambda _old: markdown),
                             (DOCS_HISTORY, lambda old: prepend_history(old, row))):
        text = replace_between(text, markers, replace) or text
    DOCS.write_text(text)


def failures(report: dict) -> list[str]:
    runs = report["rows"] + report["layer_costs"]["runs"]
    return [f"{r['scenario']} at {r['concurrency']} connections: {r['errors']} errors, "
            f"{r['requests']} requests"
            for r in runs if r["errors"] or not r["requests"]]


# --- main -------------------------------------------------------------------

def benchmark(args: argparse.Namespace, plan: Plan, results_dir: Path, work_dir: Path) -> dict:
    started = datetime.datetime.now()
    machine, commit = describe_machine(), describe_commit()
    # A full run logs ~1 GB of access lines: only the latest run's are kept.
    logs_dir = results_dir / "logs"
    shutil.rmtree(logs_dir, ignore_errors=True)
    PrivateRedis.start()
    log(f"fresh database {DATABASE}; private redis-server on port {PrivateRedis.port}")
    recreate_database(args.binary)
    with running_server(args.binary, logs_dir / "scenarios.log") as server:
        log(f"server pid {server.pid} on {server.url}, log {server.log_path}; seeding")
        tenants = seed(server, plan)
        scenarios = write_scenarios(tenants, plan, work_dir)
        time.sleep(1)  # let the seeding's last requests and allocations settle
        idle_rss_mib = server.rss_mib()
        log(f"seeded in {(datetime.datetime.now() - started).seconds} s; idle RSS {idle_rss_mib:.1f} MiB")
        rows = run_scenarios(server, scenarios, plan)
    uncached = next(s for s in scenarios if s.name == "uncached_read")
    pg_trips = pg_round_trips(args.binary, uncached, logs_dir)
    log(f"uncached_read: {fmt(pg_trips, 2)} PostgreSQL round trips per request")
    for row in rows:
        row["pg_round_trips_per_request"] = (
            pg_trips if (row["scenario"], row["concurrency"]) == ("uncached_read", 1) else None)
    cached_list = next(s for s in scenarios if s.name == "cached_list")
    layers = measure_layers(args.binary, cached_list, plan, logs_dir)
    report = {
        "date": started.date().isoformat(),
        "commit": commit,
        "binary": str(args.binary),
        "machine": machine,
        "settings": {
            "smoke": plan.smoke, "duration_s": plan.duration, "warmup_s": plan.warmup,
            "concurrency": list(plan.concurrency), "login_concurrency": list(LOGIN_CONCURRENCY),
            "tenants": plan.tenants, "users": plan.tenants * plan.users_per_tenant,
            "products_per_tenant": plan.products_per_tenant,
            "products": plan.tenants * plan.products_per_tenant,
            "deep_cursor_offset": plan.deep_pages * 100,
        },
        "server_logs": str(logs_dir),
        "idle_rss_mib": idle_rss_mib,
        "rows": rows,
        "layer_costs": layers,
    }
    report["targets"] = evaluate_targets(rows, layers, idle_rss_mib)
    return report


def main() -> int:
    args = parse_args()
    plan = make_plan(args)
    results_dir = (args.results_dir or (Path(tempfile.mkdtemp(prefix="stock-tracker-bench-"))
                                        if plan.smoke else BENCH_DIR / "results")).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="stock-tracker-bench-requests-") as work_dir:
            report = benchmark(args, plan, results_dir, Path(work_dir))
    except BenchError as err:
        log(f"FAILED: {err}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        PrivateRedis.stop()
    markdown = render_markdown(report)
    name = f"{report['date']}-{report['commit']}"
    (results_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(
        f"# Stock Tracker benchmark, {report['date']}, `{report['commit']}`\n\n{markdown}")
    log(f"results: {results_dir / name}.json and .md")
    print(markdown)
    problems = failures(report)
    # A run with errors measured something else than the service working: it
    # stays in its files, not in docs/performance.md.
    if not (plan.smoke or args.no_docs or problems):
        update_docs(markdown, history_row(report))
    for problem in problems:
        log(f"FAILED: {problem}")
    if problems:
        log(f"server logs: {report['server_logs']}")
    elif plan.smoke and not args.results_dir:
        shutil.rmtree(results_dir, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
