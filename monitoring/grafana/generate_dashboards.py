#!/usr/bin/env python3
"""Generates the Grafana dashboards in monitoring/grafana/dashboards/*.json.

Dashboards are written as code here (panels, queries, alert thresholds) and
rendered to the JSON Grafana provisions; edit this file, then run

    python3 monitoring/grafana/generate_dashboards.py          # write
    python3 monitoring/grafana/generate_dashboards.py --check  # fail if stale

scripts/monitoring-check.sh runs --check, parses every JSON file, checks panel
ids and the datasource uid, and sends every query to a real Prometheus.

Conventions:
  * every panel and every target uses the provisioned datasource uid
    "prometheus" (provisioning/datasources/prometheus.yml);
  * thresholds drawn on panels are the alert thresholds of
    monitoring/prometheus/rules/ (orange = warning, red = critical);
  * queries use fixed [5m] windows (not $__rate_interval), so every query is
    valid PromQL as written and can be checked against Prometheus directly.
Standard library only.
"""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
ORANGE, RED, GREEN = "orange", "red", "green"


# --------------------------------------------------------------------------
# Panel builders


def target(expr, legend="", ref="A", instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend}
    if instant:
        t["instant"] = True
        t["range"] = False
    if fmt:
        t["format"] = fmt
    return t


def steps(warn=None, crit=None, base=GREEN, below=False):
    """Threshold steps. below=True: lower values are worse (hit ratio, SLI)."""
    if below:
        out = [{"color": RED, "value": None}]
        if crit is not None:
            out.append({"color": ORANGE, "value": crit})
        if warn is not None:
            out.append({"color": GREEN, "value": warn})
        return out
    out = [{"color": base, "value": None}]
    if warn is not None:
        out.append({"color": ORANGE, "value": warn})
    if crit is not None:
        out.append({"color": RED, "value": crit})
    return out


def panel(kind, title, targets, unit="short", warn=None, crit=None, below=False,
          description="", w=12, h=8, decimals=None, min_=None, max_=None,
          mappings=None, stack=False, legend_calcs=None, text_mode="auto"):
    if isinstance(targets, dict):
        targets = [targets]
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    defaults = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": steps(warn, crit, below=below)},
        "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if mappings:
        defaults["mappings"] = mappings
    options = {}
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            # The alert thresholds as dashed lines.
            "thresholdsStyle": {"mode": "dashed" if (warn is not None or crit is not None) else "off"},
        }
        options = {
            "legend": {"displayMode": "table" if legend_calcs else "list", "placement": "bottom",
                       "showLegend": True, "calcs": legend_calcs or []},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif kind in ("stat", "gauge"):
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
            "textMode": text_mode,
            "colorMode": "value",
            "graphMode": "area" if kind == "stat" else "none",
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        }
    elif kind == "table":
        options = {"showHeader": True, "footer": {"show": False}}
    elif kind == "heatmap":
        options = {"calculate": False, "yAxis": {"unit": unit}, "color": {"mode": "scheme", "scheme": "Spectral"},
                   "cellGap": 1, "tooltip": {"show": True, "yHistogram": True}}
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "gridPos": {"w": w, "h": h},
    }
    if kind == "table":
        p["transformations"] = [{"id": "merge", "options": {}}]
    return p


def ts(title, targets, **kw):
    return panel("timeseries", title, targets, **kw)


def stat(title, targets, **kw):
    kw.setdefault("w", 6)
    kw.setdefault("h", 5)
    return panel("stat", title, targets, **kw)


def gauge(title, targets, **kw):
    kw.setdefault("w", 6)
    kw.setdefault("h", 6)
    return panel("gauge", title, targets, **kw)


def table(title, targets, **kw):
    kw.setdefault("w", 12)
    kw.setdefault("h", 8)
    return panel("table", title, targets, **kw)


def heatmap(title, expr, **kw):
    return panel("heatmap", title, target(expr, "{{le}}", fmt="heatmap"), **kw)


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


UP_MAPPING = [{"type": "value", "options": {"0": {"text": "DOWN", "color": RED}, "1": {"text": "UP", "color": GREEN}}}]
BREAKER_MAPPING = [{"type": "value", "options": {
    "0": {"text": "closed", "color": GREEN}, "1": {"text": "half-open", "color": ORANGE}, "2": {"text": "open", "color": RED}}}]


def layout(panels):
    """Assigns ids and grid positions left to right, top to bottom."""
    x = y = row_h = 0
    for pid, p in enumerate(panels, start=1):
        p["id"] = pid
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            y += row_h
            x = row_h = 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            y += h
            x = row_h = 0
    return panels


def dashboard(uid, title, description, tags, panels):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["stock-tracker"] + tags,
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": 38,
        "version": 1,
        "templating": {"list": []},
        "annotations": {"list": [{
            "name": "Critical alerts",
            "datasource": DS,
            "enable": True,
            "iconColor": RED,
            "expr": 'ALERTS{alertstate="firing", severity="critical"}',
            "step": "30s",
            "titleFormat": "{{alertname}}",
            "textFormat": "{{service}} {{instance}}",
            "useValueForTime": False,
        }]},
        "links": [{"title": "Stock Tracker", "type": "dashboards", "tags": ["stock-tracker"], "asDropdown": True}],
        "panels": layout(panels),
    }


# --------------------------------------------------------------------------
# Shared expressions

API = 'job="api"'
SLI = 'job="api", endpoint!~"/api/v1/health.*|/metrics.*|/openapi.json|/docs.*"'
P = "job:stock_tracker_http_requests_duration_seconds:quantile_rate5m"


def api_latency_panel():
    return ts("API latency p50 / p95 / p99", [
        target(f'{P}{{quantile="0.5"}}', "p50"),
        target(f'{P}{{quantile="0.95"}}', "p95"),
        target(f'{P}{{quantile="0.99"}}', "p99"),
    ], unit="s", warn=0.3, crit=1, description="User traffic (probes, metrics, docs excluded). Alerts: p50 > 100 ms 15m; p95 > 300 ms 10m (warning), > 1 s 5m (critical).")


def error_ratio_panel(**kw):
    return ts("5xx ratio", target("job:stock_tracker_http_requests_errors:ratio_rate5m", "5xx ratio"),
              unit="percentunit", warn=0.01, crit=0.05, description="APIErrorRateHigh: > 1 % 5m warning, > 5 % 5m critical.", **kw)


def in_flight_panel():
    return ts("Requests in flight", target(f"stock_tracker_http_requests_in_flight{{{API}}}", "{{instance}}"),
              warn=375, crit=450, description="HighConcurrentConnections: > 375 5m warning, > 450 2m critical (performance cliff).")


def breaker_panel(w=12):
    return ts("Circuit breakers (0 closed, 1 half-open, 2 open)",
              target("max by (job, dependency) (stock_tracker_circuit_breaker_state)", "{{job}} {{dependency}}"),
              warn=1, crit=2, min_=0, max_=2, mappings=BREAKER_MAPPING, w=w,
              description="CircuitBreakerOpen: not closed for 1m (warning), 10m (critical).")


# --------------------------------------------------------------------------
# Dashboards


def overview():
    return dashboard("st-overview", "Stock Tracker / Overview",
                     "Health at a glance: targets, alerts, traffic, errors, latency, saturation.", ["overview"], [
        row("Service status"),
        stat("Targets", target("up", "{{job}}", instant=True), w=12, mappings=UP_MAPPING, warn=1, below=True,
             description="TargetDown: up == 0 for 1m."),
        stat("Firing alerts by severity", target(
            'sum by (severity) (ALERTS{alertstate="firing", severity!="info"})', "{{severity}}", instant=True), w=6, warn=1),
        stat("Active tenants (15 min)", target("max(stock_tracker_active_tenants)", "tenants"), w=6),
        row("Traffic and errors"),
        stat("Requests / s", target("sum(job:stock_tracker_http_requests:rate5m)", "req/s"), unit="reqps"),
        stat("5xx ratio", target("job:stock_tracker_http_requests_errors:ratio_rate5m", "5xx"), unit="percentunit",
             warn=0.01, crit=0.05, decimals=2),
        stat("p95 latency", target(f'{P}{{quantile="0.95"}}', "p95"), unit="s", warn=0.3, crit=1),
        gauge("Availability error budget left (30 d)", target(
            "1 - job:stock_tracker_slo_availability_errors:ratio_rate30d / (1 - job:stock_tracker_slo_availability:objective)",
            "budget left"), unit="percentunit", min_=0, max_=1, warn=0.5, crit=0.25, below=True, h=5),
        ts("Requests / s by status class", target(
            f'sum by (class) (label_replace(rate(stock_tracker_http_requests_total{{{SLI}}}[5m]), "class", "${{1}}xx", "status", "(.).."))',
            "{{class}}"), unit="reqps", stack=True),
        api_latency_panel(),
        row("Saturation"),
        in_flight_panel(),
        ts("Memory used / container limit", target("instance:stock_tracker_memory_usage:ratio", "{{job}} {{instance}}"),
           unit="percentunit", warn=0.85, crit=0.94, min_=0),
        ts("CPU used / cores allowed", target("instance:stock_tracker_cpu_usage:ratio_rate5m", "{{job}} {{instance}}"),
           unit="percentunit", warn=0.8, min_=0),
        ts("Queue depth (ready messages)", target("max by (queue) (stock_tracker_queue_depth)", "{{queue}}"), warn=1000),
        breaker_panel(),
        ts("Load shed / s", target("sum by (reason) (rate(stock_tracker_load_shed_total[5m]))", "{{reason}}"),
           unit="reqps", warn=0.0001, description="LoadSheddingActive: any shedding for 5m."),
    ])


def api():
    return dashboard("st-api", "Stock Tracker / API",
                     "RED per route pattern, latency, in-flight, shedding, rate limits, breakers, cache, auth.", ["api"], [
        row("Rate, errors, duration"),
        ts("Requests / s by route (top 10)", target("topk(10, job_endpoint:stock_tracker_http_requests:rate5m)",
                                                    "{{method}} {{endpoint}}"), unit="reqps", legend_calcs=["mean", "max"]),
        ts("4xx and 5xx / s by status", target(
            f'sum by (status) (rate(stock_tracker_http_requests_total{{{API}, status=~"[45].."}}[5m]))', "{{status}}"),
            unit="reqps"),
        error_ratio_panel(),
        api_latency_panel(),
        heatmap("Latency distribution", f"sum by (le) (rate(stock_tracker_http_requests_duration_seconds_bucket{{{SLI}}}[5m]))",
                unit="s", w=12),
        table("Slowest routes (p95, 5 min)", target(
            "topk(10, job_endpoint:stock_tracker_http_requests_duration_seconds:quantile_rate5m)", "", instant=True, fmt="table"),
            unit="s", warn=0.3, crit=1),
        row("Backpressure and protection"),
        in_flight_panel(),
        ts("Load shed / s by reason", target("sum by (reason) (rate(stock_tracker_load_shed_total[5m]))", "{{reason}}"),
           unit="reqps"),
        ts("Rate-limited / s by scope", target(
            'sum by (scope) (rate(stock_tracker_rate_limit_decisions_total{outcome="limited"}[5m]))', "{{scope}}"),
            unit="reqps", warn=10, crit=100, stack=True),
        breaker_panel(),
        row("Cache"),
        ts("Cache hit ratio", target("job:stock_tracker_cache_hit:ratio_rate5m", "{{job}}"), unit="percentunit",
           warn=0.5, crit=0.4, below=True, min_=0, max_=1,
           description="CacheHitRateLow: < 50 % 15m warning, < 40 % 15m critical (target 50-70 %)."),
        ts("Cache reads / s by result", target("sum by (cache, result) (rate(stock_tracker_cache_requests_total[5m]))",
                                                "{{cache}} {{result}}"), unit="reqps"),
        ts("Cache lookup p95 by cache", target(
            "histogram_quantile(0.95, sum by (cache, le) (rate(stock_tracker_cache_lookup_duration_seconds_bucket[5m])))",
            "{{cache}}"), unit="s"),
        row("Authentication and dependencies"),
        ts("Auth events / s", target("sum by (event, outcome) (rate(stock_tracker_auth_events_total[5m]))",
                                     "{{event}} {{outcome}}"), unit="ops"),
        ts("Readiness checks: dependency up", target("min by (dependency) (stock_tracker_dependency_up)", "{{dependency}}"),
           min_=0, max_=1, mappings=UP_MAPPING, below=True, warn=1),
        ts("Readiness check p95 by dependency", target(
            "histogram_quantile(0.95, sum by (dependency, le) (rate(stock_tracker_dependency_check_duration_seconds_bucket[5m])))",
            "{{dependency}}"), unit="s"),
    ])


def backpressure():
    return dashboard("st-backpressure", "Stock Tracker / Backpressure",
                     "Runtime lag, in-flight requests, alive tasks, load shedding, PostgreSQL pool pressure.", ["backpressure"], [
        ts("Runtime lag (slowest worker per instance)", target(
            "max by (instance) (stock_tracker_runtime_lag_seconds)", "{{instance}}"), unit="s", warn=0.1, crit=0.5,
            description="HighEventLoopLag: > 100 ms 5m warning, > 500 ms 1m critical; the shedder refuses work above load_shedding.max_runtime_lag_ms."),
        ts("Runtime lag by HTTP worker thread", target("stock_tracker_runtime_lag_seconds", "{{instance}} worker {{worker}}"),
           unit="s", warn=0.1, crit=0.5),
        in_flight_panel(),
        ts("Alive async tasks", target("stock_tracker_runtime_alive_tasks", "{{instance}}"), warn=500,
           description="HighAsyncTaskCount: > 500 for 10m."),
        ts("Load shed / s by reason", target("sum by (reason) (rate(stock_tracker_load_shed_total[5m]))", "{{reason}}"),
           unit="reqps", stack=True),
        ts("PostgreSQL pool waiters", target("stock_tracker_db_pool_waiters", "{{job}} {{instance}}"), warn=10,
           description="DatabasePoolWaitersHigh: > 10 for 5m."),
        ts("PostgreSQL pool in use / max", target("instance:stock_tracker_db_pool_in_use:ratio", "{{job}} {{instance}}"),
           unit="percentunit", crit=0.9, min_=0, max_=1, description="DatabaseConnectionPoolExhausted: > 90 % for 5m."),
        ts("PostgreSQL pool connections by state", target("sum by (job, state) (stock_tracker_db_pool_connections)",
                                                          "{{job}} {{state}}")),
    ])


def rate_limiting():
    blocks = 'stock_tracker_rate_limit_decisions_total{outcome="limited"}'
    return dashboard("st-rate-limiting", "Stock Tracker / Rate limiting",
                     "Limiter decisions by scope, tier and outcome; the in-process fallback; script latency.", ["rate-limiting"], [
        stat("Blocked / s", target("sum(job:stock_tracker_rate_limit_blocks:rate5m)", "blocked"), unit="reqps",
             warn=10, crit=100, description="HighRateLimitBlockRate > 10/s 5m; PossibleDDoSAttack > 100/s 2m."),
        stat("Blocked share", target(
            f"sum(rate({blocks}[5m])) / sum(rate(stock_tracker_rate_limit_decisions_total[5m]))", "blocked"),
            unit="percentunit", decimals=2),
        stat("Fallback limiter active", target("max(stock_tracker_rate_limit_fallback_active)", "fallback"),
             warn=1, mappings=[{"type": "value", "options": {"0": {"text": "Redis", "color": GREEN},
                                                             "1": {"text": "in-process", "color": ORANGE}}}]),
        stat("Fallback switches (24 h)", target("sum(increase(stock_tracker_rate_limit_fallback_switches_total[1d]))", "switches")),
        ts("Decisions / s by outcome", target(
            "sum by (outcome) (rate(stock_tracker_rate_limit_decisions_total[5m]))", "{{outcome}}"), unit="reqps", stack=True),
        ts("Blocked / s by scope", target(f"sum by (scope) (rate({blocks}[5m]))", "{{scope}}"), unit="reqps",
           warn=10, crit=100, stack=True),
        ts("Blocked / s by tier", target(f"sum by (tier) (rate({blocks}[5m]))", "{{tier}}"), unit="reqps", stack=True),
        ts("Allowed / s by tier", target(
            'sum by (tier) (rate(stock_tracker_rate_limit_decisions_total{outcome=~"allowed|fallback"}[5m]))', "{{tier}}"),
            unit="reqps", stack=True),
        ts("Fallback active by instance", target("stock_tracker_rate_limit_fallback_active", "{{instance}}"),
           warn=1, min_=0, max_=1, description="RateLimiterFallbackActive: 1 for 5m."),
        ts("Limiter script latency", [
            target("histogram_quantile(0.5, sum by (le) (rate(stock_tracker_rate_limit_script_duration_seconds_bucket[5m])))", "p50"),
            target("histogram_quantile(0.95, sum by (le) (rate(stock_tracker_rate_limit_script_duration_seconds_bucket[5m])))", "p95"),
            target("histogram_quantile(0.99, sum by (le) (rate(stock_tracker_rate_limit_script_duration_seconds_bucket[5m])))", "p99"),
        ], unit="s"),
    ])


def memory():
    return dashboard("st-memory", "Stock Tracker / Memory and CPU",
                     "RSS against the container limit, growth rate, jemalloc, CPU, file descriptors.", ["memory"], [
        ts("Resident memory", [
            target("process_resident_memory_bytes", "{{job}} {{instance}} RSS"),
            target("stock_tracker_memory_limit_bytes", "{{job}} {{instance}} limit"),
        ], unit="bytes"),
        ts("Memory used / container limit", target("instance:stock_tracker_memory_usage:ratio", "{{job}} {{instance}}"),
           unit="percentunit", warn=0.85, crit=0.94, min_=0, max_=1,
           description="MemoryUsageHigh: > 85 % 5m warning, > 94 % 2m critical."),
        ts("RSS growth rate", target("stock_tracker_memory_growth_bytes_per_second", "{{job}} {{instance}}"),
           unit="Bps", crit=1e6, description="MemoryLeakSuspected: > 1 MB/s for 10m."),
        ts("jemalloc", [
            target("stock_tracker_jemalloc_allocated_bytes", "{{job}} {{instance}} allocated"),
            target("stock_tracker_jemalloc_active_bytes", "{{job}} {{instance}} active"),
            target("stock_tracker_jemalloc_resident_bytes", "{{job}} {{instance}} resident"),
            target("stock_tracker_jemalloc_retained_bytes", "{{job}} {{instance}} retained"),
        ], unit="bytes"),
        ts("CPU used / cores allowed", target("instance:stock_tracker_cpu_usage:ratio_rate5m", "{{job}} {{instance}}"),
           unit="percentunit", warn=0.8, min_=0, description="CPUUsageHigh: > 80 % for 10m."),
        ts("CPU cores used", [
            target("rate(process_cpu_seconds_total[5m])", "{{job}} {{instance}} used"),
            target("stock_tracker_cpu_limit_cores", "{{job}} {{instance}} allowed"),
        ]),
        ts("Virtual memory", target("process_virtual_memory_bytes", "{{job}} {{instance}}"), unit="bytes"),
        ts("Open file descriptors / max", target(
            "process_open_fds / process_max_fds", "{{job}} {{instance}}"), unit="percentunit"),
        ts("OS threads", target("process_threads", "{{job}} {{instance}}")),
        stat("Uptime", target("time() - process_start_time_seconds", "{{job}} {{instance}}"), unit="s", w=12),
    ])


def dependencies():
    return dashboard("st-dependencies", "Stock Tracker / Dependencies",
                     "PostgreSQL (app side and postgres_exporter), Redis, RabbitMQ, circuit breakers.", ["dependencies"], [
        row("PostgreSQL"),
        stat("PostgreSQL", target("pg_up", "{{instance}}", instant=True), mappings=UP_MAPPING, below=True, warn=1,
             description="PostgresDown: pg_up == 0 for 1m."),
        stat("Connections / max_connections", target(
            "sum by (instance) (pg_stat_database_numbackends) / max by (instance) (pg_settings_max_connections)", "{{instance}}"),
            unit="percentunit", warn=0.8, crit=0.9),
        stat("Buffer cache hit ratio", target(
            "sum(rate(pg_stat_database_blks_hit[5m])) / (sum(rate(pg_stat_database_blks_hit[5m])) + sum(rate(pg_stat_database_blks_read[5m])))",
            "hit ratio"), unit="percentunit", decimals=2),
        stat("Deadlocks (1 h)", target("sum(increase(pg_stat_database_deadlocks[1h]))", "deadlocks"), warn=1),
        ts("Statement latency p50 / p95 / p99", [
            target('job:stock_tracker_db_query_duration_seconds:quantile_rate5m{quantile="0.5"}', "{{job}} p50"),
            target('job:stock_tracker_db_query_duration_seconds:quantile_rate5m{quantile="0.95"}', "{{job}} p95"),
            target('job:stock_tracker_db_query_duration_seconds:quantile_rate5m{quantile="0.99"}', "{{job}} p99"),
        ], unit="s", warn=0.1, crit=0.2, description="DatabaseQueryLatencyHigh: p95 > 100 ms 10m warning, > 200 ms 5m critical (target < 50 ms)."),
        ts("Statement p95 by kind (top 10)", target(
            "topk(10, histogram_quantile(0.95, sum by (kind, le) (rate(stock_tracker_db_query_duration_seconds_bucket[5m]))))",
            "{{kind}}"), unit="s", warn=0.1, crit=0.2),
        ts("Slow statements / s", target("sum by (job, kind) (rate(stock_tracker_db_slow_queries_total[5m]))", "{{job}} {{kind}}"),
           unit="ops", warn=0.1, stack=True, description="HighSlowQueryRate: > 0.1/s for 5m (database.slow_query_threshold_ms)."),
        ts("Failed statements / s", target("sum by (job, kind) (rate(stock_tracker_db_query_errors_total[5m]))", "{{job}} {{kind}}"),
           unit="ops", stack=True),
        ts("Pool in use / max", target("instance:stock_tracker_db_pool_in_use:ratio", "{{job}} {{instance}}"),
           unit="percentunit", crit=0.9, min_=0, max_=1),
        ts("Pool waiters", target("stock_tracker_db_pool_waiters", "{{job}} {{instance}}"), warn=10),
        ts("Transactions / s", [
            target("sum by (datname) (rate(pg_stat_database_xact_commit[5m]))", "{{datname}} commit"),
            target("sum by (datname) (rate(pg_stat_database_xact_rollback[5m]))", "{{datname}} rollback"),
        ], unit="ops"),
        ts("Server sessions by state", target("sum by (state) (pg_stat_activity_count)", "{{state}}")),
        row("Redis"),
        stat("Redis", target("redis_up", "{{instance}}", instant=True), mappings=UP_MAPPING, below=True, warn=1,
             description="RedisDown: redis_up == 0 for 1m."),
        stat("Memory / maxmemory", target("instance:redis_memory_used:ratio", "{{instance}}"), unit="percentunit",
             warn=0.9, description="CacheMemoryHigh: > 90 % for 5m (no value when maxmemory is unset)."),
        stat("Connected clients", target("sum(redis_connected_clients)", "clients")),
        stat("Evicted keys (1 h)", target("sum(increase(redis_evicted_keys_total[1h]))", "evicted"), warn=1),
        ts("Redis memory", [
            target("redis_memory_used_bytes", "{{instance}} used"),
            target("redis_memory_max_bytes > 0", "{{instance}} maxmemory"),
        ], unit="bytes"),
        ts("Redis commands / s", target("sum by (instance) (rate(redis_commands_processed_total[5m]))", "{{instance}}"), unit="ops"),
        ts("Redis keyspace hit ratio", target(
            "sum(rate(redis_keyspace_hits_total[5m])) / (sum(rate(redis_keyspace_hits_total[5m])) + sum(rate(redis_keyspace_misses_total[5m])))",
            "hit ratio"), unit="percentunit", min_=0, max_=1),
        ts("Keys by database", target("sum by (db) (redis_db_keys)", "{{db}}")),
        row("RabbitMQ"),
        stat("Messages ready", target("sum(rabbitmq_queue_messages_ready)", "ready"), warn=1000),
        stat("Messages unacked", target("sum(rabbitmq_queue_messages_unacked)", "unacked")),
        stat("Consumers", target("sum(rabbitmq_queue_consumers)", "consumers"), below=True, warn=1),
        stat("Memory / high watermark", target(
            "sum(rabbitmq_process_resident_memory_bytes) / sum(rabbitmq_resident_memory_limit_bytes)", "memory"),
            unit="percentunit", warn=0.8, crit=0.95),
        ts("Messages / s", [
            target("sum(rate(rabbitmq_global_messages_received_total[5m]))", "published"),
            target("sum(rate(rabbitmq_global_messages_delivered_total[5m]))", "delivered"),
            target("sum(rate(rabbitmq_global_messages_acknowledged_total[5m]))", "acknowledged"),
            target("sum(rate(rabbitmq_global_messages_redelivered_total[5m]))", "redelivered"),
        ], unit="ops"),
        ts("Connections and channels", [
            target("sum(rabbitmq_connections)", "connections"),
            target("sum(rabbitmq_channels)", "channels"),
        ]),
        ts("Queue depth seen by the worker", target("max by (queue) (stock_tracker_queue_depth)", "{{queue}}"), warn=1000),
        ts("Consumers per queue seen by the worker", target("max by (queue) (stock_tracker_queue_consumers)", "{{queue}}"),
           below=True, warn=1, min_=0),
        row("Resilience"),
        breaker_panel(),
        ts("Breaker transitions / 5 min", target(
            "sum by (job, dependency, to) (increase(stock_tracker_circuit_breaker_transitions_total[5m]))",
            "{{job}} {{dependency}} -> {{to}}")),
    ])


def workers():
    ext = "stock_tracker_external_api"
    return dashboard("st-workers", "Stock Tracker / Workers",
                     "Tasks, queues, marketplace sync, webhook and Telegram notifications, outbound calls.", ["workers"], [
        row("Tasks"),
        ts("Task runs / s by status", target("sum by (task, status) (rate(stock_tracker_worker_tasks_total[5m]))",
                                             "{{task}} {{status}}"), unit="ops"),
        ts("Task failure ratio (15 min)", target("job_task:stock_tracker_worker_task_failures:ratio_rate15m", "{{task}}"),
           unit="percentunit", warn=0.05, min_=0, description="WorkerTaskFailureRateHigh: > 5 % for 10m."),
        ts("Task run time p95 (30 min)", target("job_task:stock_tracker_worker_task_duration_seconds:quantile_rate30m", "{{task}}"),
           unit="s", warn=300, description="LongRunningBackgroundJob: p95 > 300 s (top bucket: read the next panel)."),
        ts("Share of runs over 300 s", target("job_task:stock_tracker_worker_task_duration_over_300s:ratio_rate30m", "{{task}}"),
           unit="percentunit", warn=0.05, min_=0),
        ts("Tasks in progress", target("sum by (task) (stock_tracker_worker_tasks_in_progress)", "{{task}}"), stack=True),
        ts("Retries scheduled / s", target("sum by (task) (rate(stock_tracker_worker_task_retries_total[5m]))", "{{task}}"),
           unit="ops"),
        row("Queues"),
        ts("Ready messages by queue", target("max by (queue) (stock_tracker_queue_depth)", "{{queue}}"), warn=1000,
           description="QueueDepthHigh: > 1,000 for 10m."),
        ts("Consumers by queue", target("max by (queue) (stock_tracker_queue_consumers)", "{{queue}}"), below=True,
           warn=1, min_=0, description="NoWorkerConsuming: 0 for 5m."),
        stat("Prefetch per worker", target("stock_tracker_worker_prefetch_messages", "{{instance}} {{queue}}"), w=12,
             description="Tasks of each queue one worker runs at once: broker.sync_prefetch, broker.notifications_prefetch."),
        ts("Publishes / min by queue and outcome", target(
            "sum by (queue, outcome) (rate(stock_tracker_broker_publishes_total[5m])) * 60", "{{queue}} {{outcome}}"),
            stack=True, min_=0,
            description="Task messages handed to the broker by the API, workers and beat, by publisher-confirm outcome. "
                        "Anything but confirmed waits for beat's sweeper."),
        ts("Unconfirmed publishes (10 min)", target(
            "job_queue:stock_tracker_broker_publishes_unconfirmed:ratio_rate10m", "{{job}} {{queue}}"),
            unit="percentunit", warn=0.05, min_=0,
            description="BrokerPublishesFailing: > 5 % for 10m, or any nacked or returned for 10m."),
        ts("Rejected messages / 15 min by queue", target(
            "sum by (queue) (increase(stock_tracker_worker_messages_rejected_total[15m]))", "{{queue}}"),
            warn=1, min_=0, description="WorkerRejectingMessages: any in 15 minutes (not protocol 2, unknown task, bad arguments)."),
        row("Marketplace sync"),
        ts("Sync jobs / h by outcome", target(
            "sum by (marketplace, outcome) (increase(stock_tracker_sync_jobs_total[1h]))", "{{marketplace}} {{outcome}}"),
            description="SyncJobsFailing: failures keep coming for 15m."),
        ts("Products synced / s by outcome", target(
            "sum by (marketplace, outcome) (rate(stock_tracker_sync_products_total[5m]))", "{{marketplace}} {{outcome}}"),
            unit="ops", stack=True),
        ts("Sync leases expired / h by outcome", target(
            "sum by (outcome) (increase(stock_tracker_sync_leases_expired_total[1h]))", "{{outcome}}"),
            stack=True, min_=0,
            description="Running jobs whose worker stopped renewing the lease, reaped by beat: requeued, or failed once retries "
                        "were used up. SyncLeasesExpiring: > 3 in 30 minutes, in both halves."),
        ts("Sync runs stopped by a lost lease / h", target(
            'sum by (instance) (increase(stock_tracker_worker_tasks_total{task="sync_tenant_products", status="lease_lost"}[1h]))',
            "{{instance}}"), min_=0,
            description="The worker came back to find its job taken over by another: it was alive but did not renew in time."),
        row("Notifications"),
        ts("Webhook attempts / s by outcome", target(
            "sum by (outcome) (rate(stock_tracker_webhook_deliveries_total[5m]))", "{{outcome}}"), unit="ops", stack=True),
        ts("Webhook failure ratio (15 min)", target("job:stock_tracker_webhook_delivery_failures:ratio_rate15m", "failed attempts"),
           unit="percentunit", warn=0.2, min_=0, description="WebhookDeliveryFailureRateHigh: > 20 % for 15m."),
        ts("Webhook request p95", target(
            "histogram_quantile(0.95, sum by (le) (rate(stock_tracker_webhook_delivery_duration_seconds_bucket[5m])))", "p95"),
            unit="s"),
        ts("Telegram attempts / s by outcome", target(
            "sum by (outcome) (rate(stock_tracker_telegram_deliveries_total[5m]))", "{{outcome}}"), unit="ops", stack=True),
        stat("Webhook subscriptions disabled (7 d)", target(
            "sum(increase(stock_tracker_webhook_subscriptions_disabled_total[7d]))", "disabled"), w=12, warn=1),
        ts("Account emails / s by kind and outcome", target(
            "sum by (kind, outcome) (rate(stock_tracker_emails_total[5m]))", "{{kind}} {{outcome}}"),
            unit="ops", stack=True,
            description="Password-reset and verification emails: sent, retried (the SMTP server refused or was unreachable) or failed for good."),
        ts("Account email failure ratio (15 min)", target(
            'sum by (kind) (rate(stock_tracker_emails_total{outcome!="sent"}[15m])) / sum by (kind) (rate(stock_tracker_emails_total[15m]))',
            "{{kind}}"), unit="percentunit", warn=0.2, min_=0,
            description="EmailDeliveryFailing: > 20 % for 10m."),
        row("Outbound calls"),
        ts("Outbound calls / s by service and status", target(
            f"sum by (service, status) (rate({ext}_requests_total[5m]))", "{{service}} {{status}}"), unit="ops"),
        ts("Outbound p95 by service", target(
            'service:stock_tracker_external_api_duration_seconds:quantile_rate5m{quantile="0.95"}', "{{service}}"),
            unit="s", warn=3, crit=10, description="SlowExternalAPI: p95 > 3 s 10m; CriticalExternalAPILatency: p95 > 10 s 10m."),
        ts("Failed outbound calls / s", target("service:stock_tracker_external_api_errors:rate5m", "{{service}}"),
           unit="ops", warn=0.1, description="HighExternalAPIErrorRate: > 0.1/s for 5m (non-2xx/3xx, timeouts, errors)."),
        ts("Outbound p95 by operation", target(
            f"histogram_quantile(0.95, sum by (service, operation, le) (rate({ext}_duration_seconds_bucket[5m])))",
            "{{service}} {{operation}}"), unit="s", warn=3, crit=10),
    ])


def tenants():
    return dashboard("st-tenants", "Stock Tracker / Tenants and business",
                     "Active tenants, sign-ups, sync volume, notifications, traffic by plan.", ["business"], [
        stat("Active tenants (15 min)", target("max(stock_tracker_active_tenants)", "tenants")),
        stat("Registrations (24 h)", target(
            'sum(increase(stock_tracker_auth_events_total{event="register", outcome="success"}[1d]))', "registrations")),
        stat("Products synced (24 h)", target("sum(increase(stock_tracker_sync_products_total[1d]))", "products")),
        stat("Running versions", target("count by (version) (stock_tracker_build_info)", "{{version}}", instant=True),
             w=6, text_mode="name", description="One entry per version running (several during a rollout)."),
        ts("Active tenants", target("max(stock_tracker_active_tenants)", "tenants")),
        ts("Logins / h by outcome", target(
            'sum by (outcome) (increase(stock_tracker_auth_events_total{event="login"}[1h]))', "{{outcome}}")),
        ts("Products synced / h by marketplace and outcome", target(
            "sum by (marketplace, outcome) (increase(stock_tracker_sync_products_total[1h]))", "{{marketplace}} {{outcome}}")),
        ts("Sync jobs / h by marketplace and outcome", target(
            "sum by (marketplace, outcome) (increase(stock_tracker_sync_jobs_total[1h]))", "{{marketplace}} {{outcome}}")),
        ts("Webhook deliveries / h by event", target(
            'sum by (event) (increase(stock_tracker_webhook_deliveries_total{outcome="delivered"}[1h]))', "{{event}}")),
        ts("Telegram messages / h by event", target(
            'sum by (event) (increase(stock_tracker_telegram_deliveries_total{outcome="delivered"}[1h]))', "{{event}}")),
        ts("Requests / s by plan tier", target(
            "sum by (tier) (rate(stock_tracker_rate_limit_decisions_total[5m]))", "{{tier}}"), unit="reqps", stack=True),
        ts("Requests / s by credential kind", target(
            'sum by (event) (rate(stock_tracker_auth_events_total{event=~"bearer|api_key", outcome="success"}[5m]))',
            "{{event}}"), unit="reqps", stack=True),
    ])


def slo():
    av = "job:stock_tracker_slo_availability_errors"
    la = "job:stock_tracker_slo_latency_errors"
    burn = {"1h": 14.4, "6h": 6, "1d": 3, "3d": 1}
    return dashboard("st-slo", "Stock Tracker / SLOs",
                     "API availability (99.9 % non-5xx) and latency (99 % under 300 ms) over 30 days: SLI, error budget, burn rates.",
                     ["slo"], [
        row("Availability: 99.9 % of requests without a 5xx (30 d)"),
        stat("Availability (30 d)", target(f"1 - {av}:ratio_rate30d", "availability"), unit="percentunit", decimals=3,
             below=True, warn=0.999, crit=0.995),
        gauge("Error budget left (30 d)", target(
            f"1 - {av}:ratio_rate30d / (1 - job:stock_tracker_slo_availability:objective)", "budget left"),
            unit="percentunit", min_=0, max_=1, below=True, warn=0.5, crit=0.25, h=5),
        stat("Burn rate (1 h)", target(f"{av}:ratio_rate1h / 0.001", "1h"), warn=6, crit=14.4, decimals=2),
        stat("Burn rate (3 d)", target(f"{av}:ratio_rate3d / 0.001", "3d"), warn=1, crit=3, decimals=2),
        ts("Availability burn rate by window", [target(f"{av}:ratio_rate{w} / 0.001", f"{w} (alert at {r}x)")
                                                for w, r in burn.items()],
           warn=1, crit=14.4, description="APIAvailabilityErrorBudgetBurn: 14.4x (1h and 5m) and 6x (6h and 30m) page; 3x (1d and 2h) and 1x (3d and 6h) warn."),
        ts("Error ratio by window", [target(f"{av}:ratio_rate{w}", w) for w in ["5m", "30m", "1h", "6h", "1d", "3d"]],
           unit="percentunit", warn=0.001),
        row("Latency: 99 % of non-5xx requests in 300 ms or less (30 d)"),
        stat("Requests within 300 ms (30 d)", target(f"1 - {la}:ratio_rate30d", "within 300 ms"), unit="percentunit",
             decimals=3, below=True, warn=0.99, crit=0.95),
        gauge("Error budget left (30 d)", target(
            f"1 - {la}:ratio_rate30d / (1 - job:stock_tracker_slo_latency:objective)", "budget left"),
            unit="percentunit", min_=0, max_=1, below=True, warn=0.5, crit=0.25, h=5),
        stat("Burn rate (1 h)", target(f"{la}:ratio_rate1h / 0.01", "1h"), warn=6, crit=14.4, decimals=2),
        stat("Burn rate (3 d)", target(f"{la}:ratio_rate3d / 0.01", "3d"), warn=1, crit=3, decimals=2),
        ts("Latency burn rate by window", [target(f"{la}:ratio_rate{w} / 0.01", f"{w} (alert at {r}x)")
                                           for w, r in burn.items()],
           warn=1, crit=14.4, description="APILatencyErrorBudgetBurn: same windows and factors."),
        ts("Slow-request ratio by window", [target(f"{la}:ratio_rate{w}", w) for w in ["5m", "30m", "1h", "6h", "1d", "3d"]],
           unit="percentunit", warn=0.01),
        row("Alerts"),
        table("Firing SLO alerts", target(
            'ALERTS{alertname=~"API(Availability|Latency)ErrorBudgetBurn", alertstate="firing"}', "", instant=True, fmt="table"),
            w=24),
    ])


DASHBOARDS = {
    "overview.json": overview,
    "api.json": api,
    "backpressure.json": backpressure,
    "rate-limiting.json": rate_limiting,
    "memory.json": memory,
    "dependencies.json": dependencies,
    "workers.json": workers,
    "tenants.json": tenants,
    "slo.json": slo,
}


def render():
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main():
    rendered = render()
    if "--check" in sys.argv[1:]:
        stale = [name for name, text in rendered.items()
                 if not (OUT / name).exists() or (OUT / name).read_text() != text]
        extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in rendered)
        for name in stale:
            print(f"stale dashboard: {OUT / name} (run python3 monitoring/grafana/generate_dashboards.py)", file=sys.stderr)
        for name in extra:
            print(f"dashboard not produced by the generator: {OUT / name}", file=sys.stderr)
        return 1 if stale or extra else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
