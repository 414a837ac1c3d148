#!/usr/bin/env python3
"""Checks of the monitoring stack that promtool and amtool do not make.

Called by scripts/monitoring-check.sh; each subcommand exits non-zero on the
first class of problems it finds and prints every problem of that class.

  static   [--catalog FILE]   rules: labels, annotations, runbook URLs and
                              files; runbooks: one per alert, required
                              sections; unit tests: a firing test per alert
                              and severity, a silent one per alert; metric
                              names: stock_tracker_* and process_* in the app's catalogue
                              (histogram suffixes allowed), exporter metrics in
                              monitoring/exporter-samples/, recording rules
                              defined; job="..." names scraped; dashboards:
                              JSON, unique panel ids, datasource uid.
  routes   --amtool BIN       every (severity, category) of the rules and a few
                              edge cases resolve to the expected receivers
                              (`amtool config routes test --verify.receivers`).
  prometheus   --url URL      every rule and dashboard query is accepted by a
                              running Prometheus (/api/v1/query status
                              "success"); every rule group evaluated without
                              error; prometheus_* names exist in its /metrics.
  alertmanager --url URL      inhibition rules behave (alerts posted to a
                              running Alertmanager, /api/v2/alerts read back);
                              alertmanager_* names exist in its /metrics.
  summary                     prints the alert table (name, severity, expr
                              threshold, for) and the non-catalogue metrics.
  docs [--write]              the alert table of docs/operations.md (between
                              its alerts markers) is the one the rules give;
                              --write rewrites it.
  sample --url URL --out FILE --what TEXT
                              saves a trimmed sample of a running exporter's
                              output into monitoring/exporter-samples/.

Needs python3 and PyYAML (Debian: python3-yaml); nothing else.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

MON = pathlib.Path(__file__).resolve().parents[1]
REPO = MON.parent
RULES = MON / "prometheus" / "rules"
TESTS = MON / "prometheus" / "tests"
RUNBOOKS = MON / "runbooks"
DASHBOARDS = MON / "grafana" / "dashboards"
DATASOURCES = MON / "grafana" / "provisioning" / "datasources"
SAMPLES = MON / "exporter-samples"
PROMETHEUS_YML = MON / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = MON / "alertmanager" / "alertmanager.yml"

RUNBOOK_BASE = "https://github.com/stock-tracker/stock-tracker/blob/main/monitoring/runbooks/"
DATASOURCE_UID = "prometheus"
SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {"api", "slo", "database", "cache", "rate_limiting", "backpressure", "resources",
              "resilience", "workers", "notifications", "outbound", "availability", "meta"}
RUNBOOK_SECTIONS = ["## What it means", "## First checks", "## Mitigation"]
# Alerts that cannot be silent (always firing).
ALWAYS_FIRING = {"Watchdog"}
# Names that are neither the app's nor an exporter's: Prometheus built-ins.
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
SELF_PREFIXES = ("prometheus_", "alertmanager_")
EXPORTER_SAMPLES = {"pg_": "postgres-exporter.prom", "redis_": "redis-exporter.prom", "rabbitmq_": "rabbitmq.prom"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Expected receivers per route (see the routing comment in alertmanager.yml).
CATEGORY_RECEIVER = {"database": "team-data", "cache": "team-data", "workers": "team-integrations",
                     "notifications": "team-integrations", "outbound": "team-integrations"}
SEVERITY_RECEIVER = {"critical": "pager", "warning": "chat", "info": "null"}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, msg):
        self.items.append(msg)

    def report(self, what):
        if self.items:
            print(f"FAIL {what}: {len(self.items)} problem(s)", file=sys.stderr)
            for item in self.items:
                print(f"  - {item}", file=sys.stderr)
            return False
        print(f"ok   {what}")
        return True


# --------------------------------------------------------------------------
# Loading


def load_rules():
    """[(file, group, rule)] for every rule file."""
    out = []
    for path in sorted(RULES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                out.append((path.name, group["name"], rule))
    return out


def alerts(rules):
    return [(f, g, r) for f, g, r in rules if "alert" in r]


def load_dashboards():
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        out[path.name] = json.loads(path.read_text())
    return out


def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def dashboard_queries(dashboards):
    """[(where, expr)] for every panel target and annotation."""
    out = []
    for name, dash in dashboards.items():
        for p in iter_panels(dash.get("panels", [])):
            for t in p.get("targets", []):
                out.append((f"{name} panel {p.get('id')} {p.get('title')!r} {t.get('refId')}", t.get("expr", "")))
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                out.append((f"{name} annotation {a.get('name')!r}", a["expr"]))
    return out


def rule_queries(rules):
    return [(f"{f} {r.get('alert') or r.get('record')}", r["expr"]) for f, _, r in rules]


def runbook_queries():
    """[(where, expr)] for every query in the runbooks' ```promql blocks: one
    query per unindented line, indented lines continue it."""
    out = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        for block in re.findall(r"```promql\n(.*?)```", path.read_text(), re.S):
            lines = block.splitlines()
            indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
            current = []
            for line in lines + [""]:
                text = line[indent:] if line.strip() else ""
                if current and (not text or not text[0].isspace()):
                    out.append((f"runbooks/{path.name}", " ".join(c.strip() for c in current)))
                    current = []
                if text:
                    current.append(text)
    return out


def all_queries(rules):
    return rule_queries(rules) + dashboard_queries(load_dashboards()) + runbook_queries()


def scrape_jobs():
    doc = yaml.safe_load(PROMETHEUS_YML.read_text())
    return {sc["job_name"] for sc in doc.get("scrape_configs", [])}


# --------------------------------------------------------------------------
# PromQL names (a small tokenizer: enough for metric names, not a parser)

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan", "atan2", "start", "end"}


def metric_names(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"`[^`]*`", "``", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)", s):
        name = m.group(1)
        if name in KEYWORDS or re.match(r"\s*\(", s[m.end():]):
            continue
        names.add(name)
    return names


def job_selectors(expr):
    return set(re.findall(r'\bjob\s*=\s*"([^"]*)"', expr))


# The app's families: its own, and the process collector's standard names.
APP_PREFIXES = ("stock_tracker_", "process_")


def parse_catalog(path):
    """{name: (kind or None, labels or None)} from the app's catalogue: the JSON
    of GET /metrics/catalog, the Rust sources defining it (a directory: every
    `MetricDef::counter|gauge|histogram("name", "help", &[labels], ...)` under
    it, where each module declares its families), or a text list
    ("name Type [labels] - help" lines)."""
    if path.is_dir():
        out = {}
        definition = re.compile(
            r'MetricDef::(counter|gauge|histogram)\(\s*"((?:stock_tracker|process)_\w+)",\s*"(?:[^"\\]|\\.)*",\s*&\[([^\]]*)\]')
        for source in sorted(path.rglob("*.rs")):
            for m in definition.finditer(source.read_text()):
                out[m.group(2)] = (m.group(1), set(re.findall(r'"(\w+)"', m.group(3))))
        return out
    text = path.read_text()
    out = {}
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, list):
        for item in doc:
            out[item["name"]] = (str(item.get("kind", "")).lower() or None, set(item.get("labels") or []))
        return out
    for m in re.finditer(r'name:\s*"((?:stock_tracker|process)_\w+)",\s*kind:\s*MetricKind::(\w+),(.*?)labels:\s*&\[([^\]]*)\]',
                         text, re.S):
        if "name:" in m.group(3):
            continue  # a definition without labels; handled below
        out[m.group(1)] = (m.group(2).lower(), set(re.findall(r'"(\w+)"', m.group(4))))
    for m in re.finditer(r'name:\s*"((?:stock_tracker|process)_\w+)",\s*kind:\s*MetricKind::(\w+)', text):
        out.setdefault(m.group(1), (m.group(2).lower(), None))
    for m in re.finditer(r"^((?:stock_tracker|process)_\w+)\s+(Counter|Gauge|Histogram)\b(?:\s*\[([^\]]*)\])?", text, re.M):
        labels = set(re.findall(r'"(\w+)"', m.group(3))) if m.group(3) is not None else None
        prev = out.get(m.group(1))
        if prev and prev[1] and labels is not None:
            labels |= prev[1]  # a family listed twice (labels added later)
        out[m.group(1)] = (m.group(2).lower(), labels)
    for m in re.finditer(r"\b((?:stock_tracker|process)_[a-z0-9_]+)", text):
        out.setdefault(m.group(1), (None, None))
    return out


def selectors(expr):
    """[(metric name, {label names})] of selectors written as name{...}."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return [(m.group(1), set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2))))
            for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", s)]


def sample_names(filename):
    names = set()
    for line in (SAMPLES / filename).read_text().splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
            if m:
                names.add(m.group(1))
    return names


def catalog_entry(name, catalog):
    """(base name, kind, labels) for a series name, or None when unknown."""
    if name in catalog:
        return (name,) + catalog[name]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and base in catalog and catalog[base][0] in ("histogram", None):
            return (base,) + catalog[base]
    return None


# --------------------------------------------------------------------------
# static


def check_static(args):
    ok = True
    rules = load_rules()
    alert_rules = alerts(rules)
    alert_names = {r["alert"] for _, _, r in alert_rules}

    p = Problems()
    seen = {}
    for f, g, r in alert_rules:
        name = r["alert"]
        where = f"{f}: {name}"
        labels = r.get("labels", {}) or {}
        ann = r.get("annotations", {}) or {}
        if labels.get("severity") not in SEVERITIES:
            p.add(f"{where}: severity {labels.get('severity')!r} not in {sorted(SEVERITIES)}")
        if labels.get("category") not in CATEGORIES:
            p.add(f"{where}: category {labels.get('category')!r} not in {sorted(CATEGORIES)}")
        if not labels.get("service"):
            p.add(f"{where}: no service label")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                p.add(f"{where}: no {key} annotation")
        if "$value" not in ann.get("description", ""):
            p.add(f"{where}: description does not show {{{{ $value }}}}")
        if ann.get("runbook_url") != f"{RUNBOOK_BASE}{name}.md":
            p.add(f"{where}: runbook_url {ann.get('runbook_url')!r} is not {RUNBOOK_BASE}{name}.md")
        if not (RUNBOOKS / f"{name}.md").is_file():
            p.add(f"{where}: runbook monitoring/runbooks/{name}.md missing")
        key = (name, labels.get("severity"), json.dumps({k: v for k, v in labels.items()}, sort_keys=True))
        if key in seen:
            p.add(f"{where}: duplicate of a rule in {seen[key]} (same name and labels)")
        seen[key] = f
    ok &= p.report(f"alert rules ({len(alert_rules)} rules, {len(alert_names)} alerts): labels, annotations, runbook URLs")

    p = Problems()
    for path in sorted(RUNBOOKS.glob("*.md")):
        if path.name == "README.md":
            continue
        if path.stem not in alert_names:
            p.add(f"runbooks/{path.name} belongs to no alert")
        text = path.read_text()
        if not text.startswith(f"# {path.stem}\n"):
            p.add(f"runbooks/{path.name}: first line must be '# {path.stem}'")
        for section in RUNBOOK_SECTIONS:
            if f"\n{section}" not in text:
                p.add(f"runbooks/{path.name}: no '{section}' section")
        if "```promql" not in text:
            p.add(f"runbooks/{path.name}: no PromQL query block")
    ok &= p.report("runbooks: one per alert, each with meaning, first checks (PromQL), mitigation")

    p = Problems()
    firing, silent, tested_files = set(), set(), set()
    for path in sorted(TESTS.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for rf in doc.get("rule_files", []):
            tested_files.add(pathlib.Path(rf).name)
        for test in doc.get("tests", []):
            for t in test.get("alert_rule_test", []) or []:
                exp = t.get("exp_alerts") or []
                if not exp:
                    silent.add(t["alertname"])
                for e in exp:
                    firing.add((t["alertname"], (e.get("exp_labels") or {}).get("severity")))
    for f, _, r in alert_rules:
        sev = (r.get("labels") or {}).get("severity")
        if (r["alert"], sev) not in firing:
            p.add(f"{f}: {r['alert']} ({sev}) has no unit test where it fires")
    for name in sorted(alert_names - silent - ALWAYS_FIRING):
        p.add(f"{name} has no unit test where it stays silent (exp_alerts: [])")
    for path in sorted(RULES.glob("*.yml")):
        if path.name not in tested_files:
            p.add(f"rules/{path.name} is loaded by no unit test file")
    ok &= p.report("unit tests: every alert and severity fires in a test, every alert stays silent in one")

    dashboards = load_dashboards()
    queries = all_queries(rules)
    recorded = {r["record"] for _, _, r in rules if "record" in r}
    catalog = parse_catalog(pathlib.Path(args.catalog))
    samples = {prefix: sample_names(fn) for prefix, fn in EXPORTER_SAMPLES.items()}
    jobs = scrape_jobs()
    p = Problems()
    used = {}
    for where, expr in queries:
        for name in metric_names(expr):
            used.setdefault(name, where)
            if name.startswith(APP_PREFIXES):
                if not catalog_entry(name, catalog):
                    p.add(f"{where}: {name} is not in the catalogue {args.catalog}")
            elif ":" in name:
                if name not in recorded:
                    p.add(f"{where}: {name} looks like a recording rule but none records it")
            elif any(name.startswith(prefix) for prefix in EXPORTER_SAMPLES):
                prefix = next(pr for pr in EXPORTER_SAMPLES if name.startswith(pr))
                if name not in samples[prefix]:
                    p.add(f"{where}: {name} does not appear in exporter-samples/{EXPORTER_SAMPLES[prefix]}")
            elif name in BUILTIN_SERIES or name.startswith(SELF_PREFIXES):
                pass  # prometheus_*/alertmanager_*: checked against the live processes
            else:
                p.add(f"{where}: {name} is neither the app's, an exporter's nor a recording rule")
        for name, labels in selectors(expr):
            entry = catalog_entry(name, catalog) if name.startswith(APP_PREFIXES) else None
            if entry and entry[2] is not None:
                allowed = entry[2] | {"job", "instance"} | ({"le"} if name.endswith("_bucket") else set())
                for label in sorted(labels - allowed):
                    p.add(f"{where}: {name} has no label {label!r} (catalogue: {sorted(entry[2])})")
        for job in job_selectors(expr):
            if job not in jobs:
                p.add(f"{where}: job={job!r} is not a scrape job of prometheus.yml ({sorted(jobs)})")
    ok &= p.report(f"metric names ({len(used)} names in {len(queries)} queries) against the catalogue "
                   f"({len(catalog)} names from {args.catalog}) and exporter samples")
    if args.verbose:
        others = sorted(n for n in used if not n.startswith(APP_PREFIXES) and ":" not in n)
        print("     names outside the app's catalogue: " + ", ".join(others))

    p = Problems()
    for name, dash in dashboards.items():
        ids = [pn.get("id") for pn in iter_panels(dash.get("panels", []))]
        dup = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
        if dup:
            p.add(f"{name}: duplicate or missing panel ids {dup}")
        if not dash.get("uid"):
            p.add(f"{name}: no dashboard uid")
        for pn in iter_panels(dash.get("panels", [])):
            if pn.get("type") == "row":
                continue
            where = f"{name} panel {pn.get('id')} {pn.get('title')!r}"
            if (pn.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                p.add(f"{where}: datasource {pn.get('datasource')!r} is not uid {DATASOURCE_UID!r}")
            if not pn.get("targets"):
                p.add(f"{where}: no targets")
            for t in pn.get("targets", []):
                if (t.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                    p.add(f"{where} {t.get('refId')}: target datasource is not uid {DATASOURCE_UID!r}")
                if not t.get("expr", "").strip():
                    p.add(f"{where} {t.get('refId')}: empty expr")
        for a in dash.get("annotations", {}).get("list", []):
            if (a.get("datasource") or {}).get("uid") not in (DATASOURCE_UID, "-- Grafana --"):
                p.add(f"{name} annotation {a.get('name')!r}: datasource is not uid {DATASOURCE_UID!r}")
    uids = [d.get("uid") for d in dashboards.values()]
    if len(uids) != len(set(uids)):
        p.add(f"dashboard uids are not unique: {uids}")
    provisioned = set()
    for path in DATASOURCES.glob("*.yml"):
        for ds in (yaml.safe_load(path.read_text()) or {}).get("datasources", []):
            provisioned.add(ds.get("uid"))
    if DATASOURCE_UID not in provisioned:
        p.add(f"no provisioned datasource has uid {DATASOURCE_UID!r} ({sorted(map(str, provisioned))})")
    ok &= p.report(f"dashboards ({len(dashboards)}): JSON, unique panel ids, datasource uid {DATASOURCE_UID!r}")
    return 0 if ok else 1


# --------------------------------------------------------------------------
# routes


def expected_receivers(severity, category):
    out = []
    if severity in ("critical", "warning"):
        out.append("webhook")
        if category in CATEGORY_RECEIVER:
            out.append(CATEGORY_RECEIVER[category])
    out.append(SEVERITY_RECEIVER.get(severity, "chat"))
    return out


def check_routes(args):
    cases = set()
    for _, _, r in alerts(load_rules()):
        labels = r.get("labels") or {}
        cases.add((r["alert"], labels.get("severity"), labels.get("category")))
    # Edge cases: every category route with both severities, info in a
    # routed category, an alert without severity (falls back to chat).
    for cat in CATEGORY_RECEIVER:
        for sev in ("critical", "warning", "info"):
            cases.add(("RouteTest", sev, cat))
    cases.add(("RouteTest", None, "api"))
    p = Problems()
    for name, sev, cat in sorted(cases, key=lambda c: tuple(map(str, c))):
        expected = ",".join(expected_receivers(sev, cat))
        labels = [f"alertname={name}", "service=test"]
        if sev:
            labels.append(f"severity={sev}")
        if cat:
            labels.append(f"category={cat}")
        cmd = [args.amtool, "config", "routes", "test", f"--config.file={args.config}",
               f"--verify.receivers={expected}", *labels]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            p.add(f"{' '.join(labels)}: expected {expected}, amtool says {res.stdout.strip() or res.stderr.strip()}")
    return 0 if p.report(f"alertmanager routes ({len(cases)} label sets, amtool config routes test --verify.receivers)") else 1


# --------------------------------------------------------------------------
# Live checks


def http_json(url, data=None, timeout=10):
    body = None
    headers = {}
    if data is not None:
        if isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"null")
        except ValueError:
            return err.code, None


def http_text(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def exposition_names(text):
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M)}


def wait_ready(url, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    print(f"FAIL {what} at {url} not ready after {timeout}s", file=sys.stderr)
    return False


def check_prometheus(args):
    url = args.url.rstrip("/")
    if not wait_ready(url, "Prometheus", 30):
        return 1
    ok = True
    rules = load_rules()
    queries = all_queries(rules)
    p = Problems()
    for where, expr in queries:
        status, body = http_json(f"{url}/api/v1/query", {"query": expr})
        if status != 200 or not body or body.get("status") != "success":
            p.add(f"{where}: HTTP {status} {(body or {}).get('errorType')}: {(body or {}).get('error')}\n      {expr.strip()}")
    ok &= p.report(f"Prometheus accepts every query ({len(queries)}: rules, dashboard panels, runbooks)")

    # Every group evaluated at least once (30 s interval, staggered), no errors.
    p = Problems()
    deadline = time.time() + args.eval_timeout
    pending = None
    while time.time() < deadline:
        _, body = http_json(f"{url}/api/v1/rules")
        groups = body["data"]["groups"]
        pending = [g["name"] for g in groups if g.get("lastEvaluation", "").startswith("0001-")]
        if not pending:
            break
        time.sleep(1)
    loaded = sum(len(g["rules"]) for g in groups)
    if pending:
        p.add(f"groups not evaluated after {args.eval_timeout}s: {pending}")
    if loaded != len(rules):
        p.add(f"Prometheus loaded {loaded} rules, the files hold {len(rules)}")
    for g in groups:
        for r in g["rules"]:
            if r.get("health") == "err":
                p.add(f"{g['name']} {r['name']}: {r.get('lastError')}")
    ok &= p.report(f"Prometheus loaded and evaluated all {len(groups)} rule groups ({loaded} rules) without error")

    p = Problems()
    own = exposition_names(http_text(f"{url}/metrics"))
    for where, expr in queries:
        for name in metric_names(expr):
            if name.startswith("prometheus_") and name not in own:
                p.add(f"{where}: {name} is not exported by this Prometheus")
    ok &= p.report("prometheus_* names exist in Prometheus's own /metrics")
    return 0 if ok else 1


def check_alertmanager(args):
    url = args.url.rstrip("/")
    if not wait_ready(url, "Alertmanager", 30):
        return 1
    ok = True
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run = str(int(time.time()))

    def alert(name, severity, service, **extra):
        labels = {"alertname": name, "severity": severity, "service": service, "category": "test", "check_run": run}
        labels.update(extra)
        return {"labels": labels, "startsAt": now, "annotations": {"summary": "monitoring-check"}}

    # (alert, expected inhibited?)
    cases = [
        (alert("APIErrorRateHigh", "critical", "api"), False),
        (alert("APIErrorRateHigh", "warning", "api"), True),          # critical of the same name+service
        (alert("APIErrorRateHigh", "warning", "edge"), False),        # other service
        (alert("APILatencyP95High", "warning", "api"), False),        # other name, no down alert for api
        (alert("PossibleDDoSAttack", "critical", "gateway"), False),
        (alert("HighRateLimitBlockRate", "warning", "gateway"), True),  # seed-named pair
        (alert("CriticalExternalAPILatency", "critical", "wildberries"), False),
        (alert("SlowExternalAPI", "warning", "wildberries"), True),
        (alert("SlowExternalAPI", "warning", "telegram"), False),
        (alert("TargetDown", "critical", "worker"), False),
        (alert("QueueDepthHigh", "warning", "worker"), True),          # target down silences its service
        (alert("NoWorkerConsuming", "critical", "worker"), True),
        (alert("PostgresDown", "critical", "postgres"), False),
        (alert("TargetDown", "critical", "postgres"), False),          # down alerts never silence each other
        (alert("RedisDown", "critical", "redis"), False),
        (alert("CacheMemoryHigh", "warning", "redis"), True),
    ]
    status, _ = http_json(f"{url}/api/v2/alerts", [c for c, _ in cases])
    p = Problems()
    if status != 200:
        p.add(f"POST /api/v2/alerts answered {status}")
    got = {}

    def key_of(a):
        return (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["service"])

    def settled():
        return len(got) == len(cases) and all(
            key_of(a) in got and bool(got[key_of(a)].get("inhibitedBy")) == inhibited
            for a, inhibited in cases)

    # Alertmanager marks an alert inhibited once its inhibitor has seen the
    # source alert, which may be a moment after the alert stops being
    # "unprocessed": poll until every expectation holds, or the deadline.
    deadline = time.time() + 15
    while time.time() < deadline:
        _, body = http_json(f"{url}/api/v2/alerts?filter=" + urllib.parse.quote(f'check_run="{run}"'))
        got = {key_of(a): a["status"] for a in body or []}
        if settled():
            break
        time.sleep(0.3)
    for a, inhibited in cases:
        key = key_of(a)
        st = got.get(key)
        if st is None:
            p.add(f"{key}: not found in Alertmanager")
        elif bool(st.get("inhibitedBy")) != inhibited:
            p.add(f"{key}: expected {'inhibited' if inhibited else 'active'}, got {st}")
    ok &= p.report(f"alertmanager inhibition ({len(cases)} alerts posted to a running Alertmanager)")

    p = Problems()
    own = exposition_names(http_text(f"{url}/metrics"))
    for where, expr in all_queries(load_rules()):
        for name in metric_names(expr):
            if name.startswith("alertmanager_") and name not in own:
                p.add(f"{where}: {name} is not exported by this Alertmanager")
    ok &= p.report("alertmanager_* names exist in Alertmanager's /metrics")
    return 0 if ok else 1


# --------------------------------------------------------------------------
# summary


def threshold_of(expr):
    found = {f"{op} {num}" for op, num in re.findall(r"(>|<|==)\s*([0-9][0-9.e+]*)(?![\w*])", expr)}
    return found.pop() if len(found) == 1 else "see the rule"


def alert_table(rules):
    lines = ["| alert | severity | category | condition | for |", "|---|---|---|---|---|"]
    for f, _, r in alerts(rules):
        labels = r.get("labels") or {}
        extra = ""
        if labels.get("burn_rate"):
            extra = f" (burn {labels['burn_rate']}x, {labels['long_window']}/{labels['short_window']})"
        lines.append(f"| {r['alert']} | {labels.get('severity')} | {labels.get('category')} | "
                     f"`{threshold_of(r['expr'])}`{extra} | {r.get('for', '0s')} |")
    return "\n".join(lines) + "\n"


def docs(args):
    """The alert table of docs/operations.md (between its alerts markers) is the one the rules give."""
    path = REPO / "docs" / "operations.md"
    text = path.read_text()
    begin, end = "<!-- alerts:begin -->\n", "<!-- alerts:end -->"
    if begin not in text or end not in text:
        print(f"FAIL {path} has no {begin.strip()} / {end} markers", file=sys.stderr)
        return 1
    start, stop = text.index(begin) + len(begin), text.index(end)
    table = alert_table(load_rules())
    if text[start:stop] == table:
        print("ok   docs/operations.md's alert table matches the rules")
        return 0
    if args.write:
        path.write_text(text[:start] + table + text[stop:])
        print("ok   docs/operations.md's alert table rewritten from the rules")
        return 0
    print("FAIL docs/operations.md's alert table differs from the rules; rewrite it with "
          "`python3 monitoring/check/monitoring_check.py docs --write`", file=sys.stderr)
    return 1


def summary(args):
    rules = load_rules()
    print(alert_table(rules), end="")
    used = set()
    for _, expr in all_queries(rules):
        used |= metric_names(expr)
    print("\nNames outside the app's catalogue (exporters, Prometheus, Alertmanager):")
    print(", ".join(sorted(n for n in used if not n.startswith(APP_PREFIXES) and ":" not in n)))
    return 0


def sample(args):
    try:
        text = http_text(args.url)
    except (urllib.error.URLError, OSError) as err:
        print(f"FAIL cannot read {args.url}: {err}", file=sys.stderr)
        return 1
    seen = {}
    out = [f"# Sample of real exporter output, taken {time.strftime('%Y-%m-%d')} from {args.what}.",
           "# Trimmed to at most 3 samples per series name. monitoring/check/monitoring_check.py",
           "# verifies that every exporter metric a rule or dashboard uses appears here.",
           "# Refresh: scripts/monitoring-check.sh --refresh-samples (needs the exporters and servers)."]
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if m:
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
            if seen[m.group(1)] <= 3:
                out.append(line)
    if not seen:
        print(f"FAIL {args.url} returned no samples", file=sys.stderr)
        return 1
    (SAMPLES / args.out).write_text("\n".join(out) + "\n")
    print(f"ok   {len(seen)} series names from {args.url} -> exporter-samples/{args.out}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("static")
    s.add_argument("--catalog", default=str(REPO / "src"),
                   help="the app's metric catalogue: JSON from GET /metrics/catalog, the Rust sources (a directory), or a text list")
    s.add_argument("--verbose", action="store_true")
    r = sub.add_parser("routes")
    r.add_argument("--amtool", default="amtool")
    r.add_argument("--config", default=str(ALERTMANAGER_YML))
    pr = sub.add_parser("prometheus")
    pr.add_argument("--url", required=True)
    pr.add_argument("--eval-timeout", type=float, default=45)
    am = sub.add_parser("alertmanager")
    am.add_argument("--url", required=True)
    sub.add_parser("summary")
    rd = sub.add_parser("docs")
    rd.add_argument("--write", action="store_true", help="rewrite the table instead of checking it")
    sa = sub.add_parser("sample")
    sa.add_argument("--url", required=True)
    sa.add_argument("--out", required=True, choices=sorted(EXPORTER_SAMPLES.values()))
    sa.add_argument("--what", required=True)
    args = ap.parse_args()
    return {"static": check_static, "routes": check_routes, "prometheus": check_prometheus,
            "alertmanager": check_alertmanager, "summary": summary, "docs": docs, "sample": sample}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
