#!/usr/bin/env python3
"""Check that every health check and probe of the deployment points at something real.

Run by scripts/deploy-check.sh (which renders the inputs); usable alone:

    scripts/deploy-probe-check.py --binary target/debug/stock-tracker \\
        --compose-config rendered-compose.yml --k8s dev=dev.yaml --k8s production=prod.yaml

Two parts:

1. Static: collects every probe from the resolved compose file (healthchecks),
   the Dockerfile (HEALTHCHECK), monitoring/prometheus/prometheus.yml (the api
   and worker scrape targets) and each rendered kustomize overlay (startup,
   liveness and readiness probes, Services, ServiceMonitors, Ingress, HPA,
   PDB, NetworkPolicy), and checks what needs no running program: the probe
   port is the port the role listens on (`server.port` for serve,
   `worker.port` for worker, `beat.port` for beat, from the same environment
   the container gets), a `healthcheck --role` names the container's own
   role, the role listens on all interfaces, named ports resolve, selectors
   match pods, ServiceMonitor jobs are the roles' names, `service_healthy`
   dependencies have a health check, images are pinned, only the API, Grafana
   and Prometheus are published, api and worker have all three probes and
   beat startup and liveness ones (it takes no traffic), beat is one replica
   with `Recreate`, and the app's containers keep their securityContext.

2. Live: for each source (compose, each overlay), starts the real binary as
   `serve`, `worker` and `beat` on free loopback ports with that source's
   settings (secrets of templates replaced by generated values; PostgreSQL,
   Redis and RabbitMQ replaced by the local ones, a fresh database migrated
   with the same settings), runs each compose/Dockerfile health check command
   as the container would, GETs each HTTP probe, scrape and ServiceMonitor
   path (200 expected: every dependency is up; beat may be leader or standby)
   and the Ingress paths, and checks that beat takes the schedule.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_IMAGE = "stock-tracker"
BINARY_IN_IMAGE = "/usr/local/bin/stock-tracker"
ROLES_WITH_HTTP = {"serve", "worker", "beat"}
# Each role's liveness path (what `stock-tracker healthcheck --role` probes).
LIVE_PATH = {"serve": "/api/v1/health/live", "worker": "/health/live", "beat": "/health/live"}
# `healthcheck --role` values -> the subcommand they name.
HEALTHCHECK_ROLES = {"api": "serve", "worker": "worker", "beat": "beat"}
# Kubernetes probes each role must have: beat takes no traffic, so no readiness.
REQUIRED_PROBES = {
    "serve": ("startupProbe", "livenessProbe", "readinessProbe"),
    "worker": ("startupProbe", "livenessProbe", "readinessProbe"),
    "beat": ("startupProbe", "livenessProbe"),
}
# The `job` label a role's series must carry (the ServiceMonitors' jobLabel):
# the rules select job="api" and job="worker".
JOB_OF_ROLE = {"serve": "api", "worker": "worker", "beat": "beat"}

# Workloads allowed to have no health check, and why (the reasons are the
# comments next to them in docker-compose.yml and k8s/base/).
NO_PROBE_OK = {
    "migrate": "one-shot job: its exit status is its health",
}
# Ports compose may publish: API, Grafana, Prometheus.
PUBLISHED_OK = {"api": {8000}, "grafana": {3000}, "prometheus": {9090}}

ENV_DEFAULTS = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}")
        print(f"  FAIL {where}: {problem}", flush=True)


FAIL = Failures()


def ok(message: str) -> None:
    print(f"  ok   {message}", flush=True)


@dataclass
class Probe:
    source: str  # "compose", "dockerfile", "k8s:production", ...
    where: str  # human-readable location
    role: str  # serve | worker
    port: int  # the port as configured in the source
    path: str
    kind: str  # liveness, readiness, startup, healthcheck, scrape, ingress
    command: list[str] | None = None  # a health check command to run as is
    expect_metrics: bool = False


@dataclass
class Source:
    """Settings of one deployment source, as the app containers get them."""

    name: str
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> environment
    probes: list[Probe] = field(default_factory=list)
    ingress_paths: list[tuple[str, str]] = field(default_factory=list)  # (pathType, path)


# --------------------------------------------------------------------------- helpers


# The configuration section holding each role's host and port.
SECTION_OF_ROLE = {"serve": "server", "worker": "worker", "beat": "beat"}


def role_port(env: dict[str, str], role: str) -> int:
    section = SECTION_OF_ROLE[role]
    return int(env.get(f"STOCK_TRACKER__{section.upper()}__PORT", ENV_DEFAULTS[section]["port"]))


def role_host(env: dict[str, str], role: str) -> str:
    section = SECTION_OF_ROLE[role]
    return env.get(f"STOCK_TRACKER__{section.upper()}__HOST", ENV_DEFAULTS[section]["host"])


def healthcheck_target(argv: list[str], env: dict[str, str]) -> tuple[str | None, int, str, str | None]:
    """What `stock-tracker healthcheck ARGS` probes: (role, port, path, URL host).

    The role is None when `--url` is given (any role's endpoint could be meant)."""
    if "--url" in argv:
        url = urllib.parse.urlsplit(argv[argv.index("--url") + 1])
        return None, url.port or 80, url.path, url.hostname
    named = argv[argv.index("--role") + 1] if "--role" in argv else "api"
    role = HEALTHCHECK_ROLES.get(named)
    if role is None:
        raise ValueError(f"`healthcheck --role {named}`: the binary knows {sorted(HEALTHCHECK_ROLES)}")
    return role, role_port(env, role), LIVE_PATH[role], "127.0.0.1"


def image_name(image: str) -> str:
    """`ghcr.io/x/stock-tracker:1.0` -> `stock-tracker`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return tag != "latest" and bool(re.search(r"\d", tag))


def dockerfile_facts(path: Path) -> tuple[dict[str, str], list[str] | None, list[str]]:
    """ENV of the final stage, its HEALTHCHECK command and default CMD."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    stages = re.split(r"(?im)^FROM\s", text)
    final = stages[-1]
    env: dict[str, str] = {}
    healthcheck = None
    cmd: list[str] = []
    for line in final.splitlines():
        line = line.strip()
        if line.upper().startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value
        elif line.upper().startswith("HEALTHCHECK "):
            match = re.search(r"CMD\s+(\[.*\])", line)
            healthcheck = json.loads(match.group(1)) if match else None
        elif line.upper().startswith("CMD "):
            cmd = json.loads(line[4:].strip())
    return env, healthcheck, cmd


# --------------------------------------------------------------------------- compose


def builds_app(svc: dict) -> bool:
    """Whether a compose service builds the app's image (from this checkout's
    root); other services may build their own (deploy/pgbouncer)."""
    build = svc.get("build")
    if build is None:
        return False
    context = build.get("context", ".") if isinstance(build, dict) else build
    return (ROOT / context).resolve() == ROOT


def collect_compose(compose_path: Path, dockerfile: Path, prometheus: Path) -> Source:
    print("compose (resolved docker-compose.yml), Dockerfile, prometheus.yml", flush=True)
    config = yaml.safe_load(compose_path.read_text(encoding="utf-8"))
    services: dict = config.get("services") or {}
    image_env, image_healthcheck, image_cmd = dockerfile_facts(dockerfile)
    source = Source("compose")

    def healthcheck_disabled(svc: dict) -> bool:
        hc = svc.get("healthcheck") or {}
        return bool(hc.get("disable")) or hc.get("test") in (["NONE"], "NONE")

    for name, svc in services.items():
        where = f"compose service {name}"
        image = svc.get("image", "")
        # The app's image is built from this checkout (`build:`), any tag will do.
        if not builds_app(svc) and not image_pinned(image):
            FAIL.add(where, f"image {image!r} is not pinned to a version tag or digest")
        for port in svc.get("ports") or []:
            target = int(port["target"]) if isinstance(port, dict) else int(str(port).rsplit(":", 1)[-1].split("/")[0])
            if target not in PUBLISHED_OK.get(name, set()):
                FAIL.add(where, f"publishes port {target}; only the API, Grafana and Prometheus may be published")
        for dep, spec in (svc.get("depends_on") or {}).items():
            condition = spec.get("condition") if isinstance(spec, dict) else None
            if condition == "service_healthy" and healthcheck_disabled(services.get(dep, {})):
                FAIL.add(where, f"waits for {dep} to be healthy, but {dep} has no health check")
        is_app = image_name(image) == APP_IMAGE or builds_app(svc)
        hc = svc.get("healthcheck") or {}
        if is_app:
            command = svc.get("command") or image_cmd
            role = command[0] if command else "serve"
            env = {**image_env, **{k: str(v) for k, v in (svc.get("environment") or {}).items()}}
            if role in ROLES_WITH_HTTP:
                source.env.setdefault(role, env)
        if healthcheck_disabled(svc):
            if name in NO_PROBE_OK:
                ok(f"{where}: no health check ({NO_PROBE_OK[name]})")
            else:
                FAIL.add(where, "has no health check")
            continue
        test = hc.get("test")
        if not is_app:
            if not test:
                FAIL.add(where, "has no health check (and the image defines none we rely on)")
            else:
                ok(f"{where}: health check {' '.join(test) if isinstance(test, list) else test}")
            continue
        if not test:
            # The image's HEALTHCHECK applies.
            test = ["CMD", *image_healthcheck] if image_healthcheck else None
        if not isinstance(test, list) or test[0] != "CMD":
            FAIL.add(where, f"health check {test!r}: use the exec form [\"CMD\", \"{BINARY_IN_IMAGE}\", \"healthcheck\", ...] (the image has no shell)")
            continue
        argv = test[1:]
        if argv[:2] != [BINARY_IN_IMAGE, "healthcheck"]:
            FAIL.add(where, f"health check {argv!r} does not run `{BINARY_IN_IMAGE} healthcheck`")
            continue
        if role not in ROLES_WITH_HTTP:
            FAIL.add(where, f"role {role!r} serves no HTTP endpoint, yet has an HTTP health check")
            continue
        try:
            probed_role, port, path, url_host = healthcheck_target(argv, env)
        except ValueError as err:
            FAIL.add(where, str(err))
            continue
        if url_host not in ("127.0.0.1", "localhost"):
            FAIL.add(where, f"health check URL host {url_host!r}: a container's health check runs inside it (127.0.0.1)")
        if probed_role is not None and probed_role != role:
            FAIL.add(where, f"health check probes `{probed_role}`'s endpoint (--role), but the container runs `{role}`")
            continue
        expected = role_port(env, role)
        if port != expected:
            FAIL.add(where, f"health check probes port {port}, but `{role}` listens on {expected}")
            continue
        host = role_host(env, role)
        if host not in ("0.0.0.0", "::"):
            FAIL.add(where, f"`{role}` listens on {host}: Prometheus and other containers cannot reach it")
        source.probes.append(Probe("compose", where, role, port, path, "healthcheck", command=argv))
        ok(f"{where}: `{role}` health check GET :{port}{path}")

    # The image's own HEALTHCHECK, with the image's defaults.
    if image_healthcheck and image_healthcheck[:2] == [BINARY_IN_IMAGE, "healthcheck"]:
        role = image_cmd[0] if image_cmd else "serve"
        env = source.env.get(role, image_env)
        try:
            probed_role, port, path, _ = healthcheck_target(image_healthcheck, env)
        except ValueError as err:
            FAIL.add("Dockerfile HEALTHCHECK", str(err))
        else:
            if probed_role is not None and probed_role != role:
                FAIL.add("Dockerfile HEALTHCHECK", f"probes `{probed_role}`'s endpoint, but the default CMD is `{role}`")
            elif port != role_port(env, role):
                FAIL.add("Dockerfile HEALTHCHECK", f"probes port {port}, but the default CMD `{role}` listens on {role_port(env, role)}")
            else:
                source.probes.append(Probe("dockerfile", "Dockerfile HEALTHCHECK", role, port, path, "healthcheck", command=image_healthcheck))
                ok(f"Dockerfile HEALTHCHECK: default CMD `{role}`, GET :{port}{path}")
    else:
        FAIL.add("Dockerfile", f"HEALTHCHECK must run `{BINARY_IN_IMAGE} healthcheck` (found {image_healthcheck!r})")

    # Prometheus scrapes compose services by name.
    prom = yaml.safe_load(prometheus.read_text(encoding="utf-8"))
    for job in prom.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, _, port_text = target.rpartition(":")
                if host == "localhost":
                    continue
                where = f"prometheus.yml job {job['job_name']} target {target}"
                svc = services.get(host)
                if svc is None:
                    FAIL.add(where, f"no compose service named {host!r}")
                    continue
                if image_name(svc.get("image", "")) != APP_IMAGE and not builds_app(svc):
                    ok(f"{where}: compose service exists")
                    continue
                command = svc.get("command") or image_cmd
                role = command[0] if command else "serve"
                env = {**image_env, **{k: str(v) for k, v in (svc.get("environment") or {}).items()}}
                if role not in ROLES_WITH_HTTP or int(port_text) != role_port(env, role):
                    FAIL.add(where, f"`{role}` does not listen on {port_text}")
                    continue
                path = job.get("metrics_path", "/metrics")
                source.probes.append(Probe("compose", where, role, int(port_text), path, "scrape", expect_metrics=True))
                ok(f"{where}: `{role}` GET :{port_text}{path}")
    return source


# --------------------------------------------------------------------------- kubernetes


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def collect_k8s(name: str, rendered: Path, secret_template: Path) -> Source:
    print(f"kubernetes overlay {name}", flush=True)
    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    source = Source(f"k8s:{name}")
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind.get("ConfigMap", [])}
    secrets_found = {}
    for d in by_kind.get("Secret", []):
        data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
        data.update(d.get("stringData") or {})
        secrets_found[d["metadata"]["name"]] = data
    # Secrets not in the build (production) come from the template, with its
    # placeholders replaced by valid generated values.
    template = {}
    for d in yaml.safe_load_all(secret_template.read_text(encoding="utf-8")):
        if d and d.get("kind") == "Secret":
            template[d["metadata"]["name"]] = {k: fill_placeholder(k, v) for k, v in (d.get("stringData") or {}).items()}

    def secret(ref: str) -> dict:
        if ref in secrets_found:
            return secrets_found[ref]
        if ref in template:
            return template[ref]
        FAIL.add(f"k8s:{name}", f"Secret {ref!r} is neither in the overlay nor in {secret_template.relative_to(ROOT)}")
        return {}

    workloads = []  # (kind, doc, pod spec, pod labels)
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        for doc in by_kind.get(kind, []):
            tmpl = doc["spec"]["template"]
            workloads.append((kind, doc, tmpl["spec"], tmpl["metadata"].get("labels") or {}))

    pod_ports: list[tuple[dict, dict[str, int], str | None]] = []  # (pod labels, port name -> number, role)
    for kind, doc, pod, labels in workloads:
        wname = doc["metadata"]["name"]
        for container in pod.get("containers", []):
            where = f"k8s:{name} {kind}/{wname} container {container['name']}"
            image = container.get("image", "")
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
            numbers = {p["containerPort"] for p in container.get("ports", [])}
            is_app = image_name(image) == APP_IMAGE
            if not image_pinned(image) and not (is_app and name == "dev"):
                FAIL.add(where, f"image {image!r} is not pinned to a version tag or digest")
            probes = {k: container.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe") if container.get(k)}
            if not is_app:
                pod_ports.append((labels, ports, None))
                if kind != "Job" and not probes:
                    FAIL.add(where, "has no probe")
                else:
                    ok(f"{where}: {', '.join(sorted(probes)) or 'job'}")
                continue
            role = (container.get("args") or container.get("command") or ["serve"])[0]
            env: dict[str, str] = {}
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    env.update(configmaps.get(ref["configMapRef"]["name"], {}))
                if "secretRef" in ref:
                    env.update(secret(ref["secretRef"]["name"]))
            for item in container.get("env", []):
                if "value" in item:
                    env[item["name"]] = item["value"]
                elif "secretKeyRef" in item.get("valueFrom", {}):
                    ref = item["valueFrom"]["secretKeyRef"]
                    env[item["name"]] = secret(ref["name"]).get(ref["key"], "")
            pod_ports.append((labels, ports, role))
            check_security(where, pod, container)
            if role in ROLES_WITH_HTTP:
                source.env.setdefault(role, env)
                expected = role_port(env, role)
                host = role_host(env, role)
                if host not in ("0.0.0.0", "::"):
                    FAIL.add(where, f"`{role}` listens on {host}: the kubelet probes the pod IP")
                if expected not in numbers:
                    FAIL.add(where, f"`{role}` listens on {expected}, which is not a containerPort")
                for needed in REQUIRED_PROBES[role]:
                    if needed not in probes:
                        FAIL.add(where, f"`{role}` has no {needed}")
                for kind_name, probe in probes.items():
                    http = probe.get("httpGet")
                    if not http:
                        FAIL.add(where, f"{kind_name} is not an HTTP probe on the role's endpoint")
                        continue
                    port = http["port"]
                    port = ports.get(port) if isinstance(port, str) else int(port)
                    if port is None:
                        FAIL.add(where, f"{kind_name} uses port {http['port']!r}, not a named containerPort")
                        continue
                    if port != expected:
                        FAIL.add(where, f"{kind_name} probes port {port}, but `{role}` listens on {expected}")
                        continue
                    kind_short = kind_name.removesuffix("Probe")
                    source.probes.append(Probe(source.name, f"{where} {kind_name}", role, port, http["path"], kind_short))
                    ok(f"{where}: {kind_name} GET :{port}{http['path']}")
            else:
                if probes:
                    FAIL.add(where, f"`{role}` serves no HTTP endpoint, yet has probes: {sorted(probes)}")
                elif role in NO_PROBE_OK:
                    ok(f"{where}: `{role}` without probes ({NO_PROBE_OK[role]})")
                else:
                    FAIL.add(where, f"`{role}` has no probe and no recorded reason")
            if role == "beat":
                if doc["spec"].get("replicas") != 1 or (doc["spec"].get("strategy") or {}).get("type") != "Recreate":
                    FAIL.add(where, "beat must run as one replica with strategy Recreate")
                else:
                    ok(f"{where}: one replica, Recreate")

    services = {d["metadata"]["name"]: d for d in by_kind.get("Service", [])}
    service_roles: dict[str, tuple[str | None, dict[str, int]]] = {}
    for sname, svc in services.items():
        where = f"k8s:{name} Service/{sname}"
        selector = svc["spec"].get("selector") or {}
        matched = [(ports, role) for labels, ports, role in pod_ports if labels_match(selector, labels)]
        if not matched:
            FAIL.add(where, "selects no pod")
            continue
        ports, role = matched[0]
        resolved = {}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = ports.get(target) if isinstance(target, str) else int(target)
            if number is None:
                FAIL.add(where, f"targetPort {target!r} is not a port of the selected pods")
                continue
            resolved[port.get("name", str(port["port"]))] = (port["port"], number)
        service_roles[sname] = (role, resolved)
        ok(f"{where}: ports resolve ({', '.join(f'{k}->{v[1]}' for k, v in resolved.items())})")

    for monitor in by_kind.get("ServiceMonitor", []):
        mname = monitor["metadata"]["name"]
        where = f"k8s:{name} ServiceMonitor/{mname}"
        selector = (monitor["spec"].get("selector") or {}).get("matchLabels") or {}
        targets = [s for s in services.values() if labels_match(selector, s["metadata"].get("labels") or {})]
        if not targets:
            FAIL.add(where, "selects no Service")
            continue
        job_label = monitor["spec"].get("jobLabel")
        for svc in targets:
            sname = svc["metadata"]["name"]
            job = (svc["metadata"].get("labels") or {}).get(job_label) if job_label else sname
            role, resolved = service_roles.get(sname, (None, {}))
            if role in JOB_OF_ROLE and job != JOB_OF_ROLE[role]:
                FAIL.add(where, f"series of `{role}` from Service/{sname} get job={job!r}, not {JOB_OF_ROLE[role]!r} (the rules select job=\"api\"/\"worker\")")
            for endpoint in monitor["spec"].get("endpoints", []):
                port_name = endpoint.get("port")
                if port_name not in resolved:
                    FAIL.add(where, f"endpoint port {port_name!r} is not a port of Service/{sname}")
                    continue
                path = endpoint.get("path", "/metrics")
                if role not in ROLES_WITH_HTTP:
                    FAIL.add(where, f"Service/{sname} selects `{role}`, which serves no metrics")
                    continue
                source.probes.append(Probe(source.name, where, role, resolved[port_name][1], path, "scrape", expect_metrics=True))
                ok(f"{where}: job={job} `{role}` GET :{resolved[port_name][1]}{path}")

    for ingress in by_kind.get("Ingress", []):
        where = f"k8s:{name} Ingress/{ingress['metadata']['name']}"
        for rule in ingress["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                backend = path["backend"]["service"]
                sname = backend["name"]
                port = backend["port"].get("name") or backend["port"].get("number")
                if sname not in service_roles:
                    FAIL.add(where, f"backend Service {sname!r} does not exist")
                    continue
                role, resolved = service_roles[sname]
                if port not in resolved and port not in {v[0] for v in resolved.values()}:
                    FAIL.add(where, f"backend port {port!r} is not a port of Service/{sname}")
                    continue
                if role != "serve":
                    FAIL.add(where, f"path {path['path']} goes to `{role}`, not the API")
                    continue
                source.ingress_paths.append((path["pathType"], path["path"]))
        ok(f"{where}: backends resolve")

    deployments = {d["metadata"]["name"] for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            FAIL.add(f"k8s:{name} HPA/{hpa['metadata']['name']}", f"targets missing Deployment {target!r}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selector = pdb["spec"]["selector"].get("matchLabels") or {}
        if not any(labels_match(selector, labels) for labels, _, _ in pod_ports):
            FAIL.add(f"k8s:{name} PDB/{pdb['metadata']['name']}", "selects no pod")
    for policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"].get("matchLabels") or {}
        selected = [ports for labels, ports, _ in pod_ports if labels_match(selector, labels)]
        if not selected:
            FAIL.add(f"k8s:{name} NetworkPolicy/{policy['metadata']['name']}", "selects no pod")
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if isinstance(port.get("port"), str) and not all(port["port"] in ports for ports in selected):
                    FAIL.add(f"k8s:{name} NetworkPolicy/{policy['metadata']['name']}", f"port {port['port']!r} is not a named port of every selected pod")
    return source


def check_security(where: str, pod: dict, container: dict) -> None:
    psc = pod.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    problems = []
    if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problems.append("runAsNonRoot")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation: false")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities.drop [ALL]")
    seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problems.append("seccompProfile RuntimeDefault")
    if not container.get("resources", {}).get("limits") or not container.get("resources", {}).get("requests"):
        problems.append("resource requests and limits")
    if problems:
        FAIL.add(where, "missing " + ", ".join(problems))


def fill_placeholder(key: str, value: str) -> str:
    """A valid value for a template placeholder, so production validation passes."""
    if "REPLACE_ME" not in value:
        return value
    if key.endswith("FERNET_KEYS"):
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if key.endswith("JWT_SECRET"):
        return secrets.token_urlsafe(48)
    return value.replace("REPLACE_ME", secrets.token_hex(12))


# --------------------------------------------------------------------------- live


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: D102
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read(1_000_000).decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read(100_000).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, "", str(err)


class Local:
    """The local PostgreSQL, Redis and RabbitMQ the live part runs against."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.database = args.database
        self.admin_url = args.postgres_admin_url
        self.database_url = f"{args.postgres_admin_url.rsplit('/', 1)[0]}/{self.database}"
        self.processes: list[subprocess.Popen] = []
        self.pgbouncer_port: int | None = None
        # Quorum queues of this run's own, deleted at the end: a queue keeps
        # its type, so a name reused across runs (or releases) would pin it.
        suffix = secrets.token_hex(4)
        self.queues = (f"stock_tracker_deploy_check_{suffix}_sync", f"stock_tracker_deploy_check_{suffix}_notifications")

    def psql(self, sql: str) -> None:
        subprocess.run(["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True, text=True)

    def fresh_database(self) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def drop_database(self) -> None:
        try:
            self.psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except subprocess.CalledProcessError as err:
            print(f"  note: could not drop {self.database}: {err.stderr.strip()}", flush=True)

    def delete_queues(self) -> None:
        if shutil.which("rabbitmqctl") is None:
            return
        for queue in self.queues:
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], capture_output=True, timeout=60)

    def pooled_url(self) -> str:
        """The database through a local PgBouncer in transaction mode
        (scripts/pgbouncer.sh), started on first use."""
        if self.pgbouncer_port is None:
            out = subprocess.run(
                [str(ROOT / "scripts" / "pgbouncer.sh"), "start", str(self.workdir / "pgbouncer"), "4", self.admin_url],
                check=True, capture_output=True, text=True,
            )
            self.pgbouncer_port = int(out.stdout.strip())
        url = urllib.parse.urlsplit(self.database_url)
        netloc = f"{url.netloc.rsplit('@', 1)[0]}@127.0.0.1:{self.pgbouncer_port}"
        return urllib.parse.urlunsplit(url._replace(netloc=netloc, query="sslmode=disable"))

    def env_for(self, settings: dict[str, str], ports: dict[str, int]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "TMPDIR")}
        env.update(settings)
        if settings.get("STOCK_TRACKER__DATABASE__POOLER") == "transaction":
            # As the source runs it: through a transaction pooler, with what
            # needs a session going to PostgreSQL itself.
            env["STOCK_TRACKER__DATABASE__DIRECT_URL"] = self.database_url
            database_url = self.pooled_url()
        else:
            database_url = self.database_url
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": self.args.redis_url,
                "STOCK_TRACKER__BROKER__URL": self.args.broker_url,
                "STOCK_TRACKER__SERVER__HOST": "127.0.0.1",
                "STOCK_TRACKER__WORKER__HOST": "127.0.0.1",
                "STOCK_TRACKER__BEAT__HOST": "127.0.0.1",
                "STOCK_TRACKER__SERVER__PORT": str(ports["serve"]),
                "STOCK_TRACKER__WORKER__PORT": str(ports["worker"]),
                "STOCK_TRACKER__BEAT__PORT": str(ports["beat"]),
                # Keep out of the way of anything else using these servers.
                "STOCK_TRACKER__REDIS__KEY_PREFIX": "stock_tracker_deploy_check:",
                "STOCK_TRACKER__BROKER__SYNC_QUEUE": self.queues[0],
                "STOCK_TRACKER__BROKER__NOTIFICATIONS_QUEUE": self.queues[1],
                "STOCK_TRACKER__TRACING__OTLP_ENDPOINT": "",
                "STOCK_TRACKER__SENTRY__DSN": "",
            }
        )
        return env

    def start(self, label: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{label}.log"
        handle = log.open("wb")
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process, log

    def stop(self, process: subprocess.Popen, grace: float = 15.0) -> int | None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return None
        return process.returncode

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.pgbouncer_port is not None:
            subprocess.run([str(ROOT / "scripts" / "pgbouncer.sh"), "stop", str(self.workdir / "pgbouncer")], check=False)
            self.pgbouncer_port = None


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join("      " + line for line in log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_http(url: str, process: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        status, _, _ = http_get(url, timeout=2)
        if status == 200:
            return True
        time.sleep(0.3)
    return False


def run_live(source: Source, local: Local, binary: Path) -> None:
    print(f"live: {source.name}", flush=True)
    missing = ROLES_WITH_HTTP - source.env.keys()
    for role in sorted(missing):
        if any(p.role == role for p in source.probes):
            FAIL.add(source.name, f"probes `{role}` but no `{role}` container was found")
    ports = {role: free_port() for role in sorted(ROLES_WITH_HTTP)}
    settings = source.env.get("serve") or source.env.get("worker") or {}
    label = source.name.replace(":", "-")

    # Migrate with this source's settings (it validates the whole configuration).
    migrate_env = local.env_for(settings, ports)
    result = subprocess.run([str(binary), "migrate"], env=migrate_env, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        FAIL.add(source.name, f"`stock-tracker migrate` with these settings failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return
    ok(f"{source.name}: `migrate` accepts the settings")
    if settings.get("STOCK_TRACKER__DATABASE__POOLER") == "transaction":
        ok(f"{source.name}: api, worker and beat run behind a local PgBouncer in transaction mode, "
           f"as the source runs them (port {local.pgbouncer_port}; migrate goes direct)")

    started: dict[str, tuple[subprocess.Popen, Path, dict[str, str]]] = {}
    for role in sorted(source.env):
        env = local.env_for(source.env[role], ports)
        process, log = local.start(f"{label}-{role}", [str(binary), role], env)
        started[role] = (process, log, env)
    try:
        for role, (process, log, _) in started.items():
            if not wait_http(f"http://127.0.0.1:{ports[role]}{LIVE_PATH[role]}", process, 90):
                FAIL.add(source.name, f"`{role}` did not come up (exit code {process.poll()}); log:\n{tail(log)}")
        # The worker is ready once it consumes; give it a moment to connect.
        for probe in source.probes:
            role_proc = started.get(probe.role)
            if role_proc is None or role_proc[0].poll() is not None:
                FAIL.add(probe.where, f"`{probe.role}` is not running")
                continue
            local_port = ports[probe.role]
            if probe.command:
                argv = [str(binary) if a == BINARY_IN_IMAGE else a for a in probe.command]
                argv = [a.replace(f"127.0.0.1:{probe.port}", f"127.0.0.1:{local_port}").replace(f"localhost:{probe.port}", f"127.0.0.1:{local_port}") for a in argv]
                outcome = None
                for _ in range(20):
                    outcome = subprocess.run(argv, env=role_proc[2], capture_output=True, text=True, timeout=30)
                    if outcome.returncode == 0:
                        break
                    time.sleep(0.5)
                if outcome.returncode == 0:
                    ok(f"{probe.where}: `{' '.join(probe.command[-4:])}` exits 0")
                else:
                    FAIL.add(probe.where, f"health check command exits {outcome.returncode}: {outcome.stderr.strip()}")
                continue
            url = f"http://127.0.0.1:{local_port}{probe.path}"
            status, ctype, body = 0, "", ""
            for _ in range(20):
                status, ctype, body = http_get(url)
                if status == 200:
                    break
                time.sleep(0.5)
            if status != 200:
                FAIL.add(probe.where, f"GET {probe.path} on `{probe.role}` answered {status or 'nothing'}: {body[:300]}")
                continue
            if probe.expect_metrics and ("text/plain" not in ctype or "stock_tracker_" not in body):
                FAIL.add(probe.where, f"GET {probe.path} is not the Prometheus exposition of stock_tracker_* metrics")
                continue
            detail = ""
            if probe.role == "beat" and probe.path == LIVE_PATH["beat"]:
                # Leader or standby are both healthy.
                detail = f" ({beat_role(body) or 'no role in the body'})"
            ok(f"{probe.where}: GET {probe.path} on `{probe.role}` -> 200{detail}")
        if source.ingress_paths and "serve" in started:
            check_ingress_paths(source, ports["serve"])
        if "beat" in started:
            check_beat_leads(source, started["beat"][0], started["beat"][1], ports["beat"])
    finally:
        for role, (process, log, _) in started.items():
            code = local.stop(process)
            if code is None:
                print(f"  note: `{role}` did not stop within 15 s of SIGTERM (killed)", flush=True)


def beat_role(body: str) -> str | None:
    try:
        return json.loads(body).get("role")
    except (ValueError, AttributeError):
        return None


def check_beat_leads(source: Source, process: subprocess.Popen, log: Path, port: int) -> None:
    """Beat takes the schedule: the lead is a row of the database, the check's own."""
    deadline = time.monotonic() + 60
    role = None
    while time.monotonic() < deadline and process.poll() is None:
        status, _, body = http_get(f"http://127.0.0.1:{port}{LIVE_PATH['beat']}", timeout=2)
        role = beat_role(body) if status == 200 else None
        if role == "leader":
            ok(f"{source.name}: `beat` takes the schedule (/health/live role leader)")
            return
        time.sleep(0.3)
    FAIL.add(source.name, f"`beat` did not take the schedule (last role {role!r}, exit code {process.poll()}); log:\n{tail(log)}")


def check_ingress_paths(source: Source, port: int) -> None:
    status, _, body = http_get(f"http://127.0.0.1:{port}/openapi.json")
    documented = list(json.loads(body).get("paths", {})) if status == 200 else []
    for path_type, path in source.ingress_paths:
        where = f"{source.name} Ingress path {path} ({path_type})"
        if path_type == "Exact":
            status, _, _ = http_get(f"http://127.0.0.1:{port}{path}")
            if status == 200:
                ok(f"{where}: GET -> 200")
            else:
                FAIL.add(where, f"GET answered {status}")
        elif any(p == path or p.startswith(path.rstrip("/") + "/") for p in documented):
            ok(f"{where}: documented routes live under it")
        else:
            status, _, _ = http_get(f"http://127.0.0.1:{port}{path}")
            if 200 <= status < 400:
                ok(f"{where}: GET -> {status}")
            else:
                FAIL.add(where, f"no documented route under it and GET answered {status}")


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, type=Path)
    parser.add_argument("--compose-config", required=True, type=Path, help="output of `docker-compose config`")
    parser.add_argument("--k8s", action="append", default=[], metavar="NAME=FILE", help="a rendered overlay")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    parser.add_argument("--prometheus", type=Path, default=ROOT / "monitoring" / "prometheus" / "prometheus.yml")
    parser.add_argument("--secret-template", type=Path, default=ROOT / "k8s" / "secret.example.yaml")
    parser.add_argument("--postgres-admin-url", default=os.environ.get("DEPLOY_CHECK_POSTGRES_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--database", default="stock_tracker_deploy_check")
    parser.add_argument("--redis-url", default=os.environ.get("DEPLOY_CHECK_REDIS_URL", "redis://127.0.0.1:6379"))
    parser.add_argument("--broker-url", default=os.environ.get("DEPLOY_CHECK_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
    parser.add_argument("--static-only", action="store_true", help="skip starting the binary")
    args = parser.parse_args()

    sources = [collect_compose(args.compose_config, args.dockerfile, args.prometheus)]
    for spec in args.k8s:
        name, _, path = spec.partition("=")
        sources.append(collect_k8s(name, Path(path), args.secret_template))
    for source in sources:
        for role in sorted(ROLES_WITH_HTTP - source.env.keys()):
            FAIL.add(source.name, f"runs no `{role}` container")

    if not args.static_only:
        if not args.binary.is_file():
            FAIL.add("binary", f"{args.binary} does not exist: run `cargo build` first")
        elif shutil.which("psql") is None:
            FAIL.add("live", "psql is needed to create the check's database (apt-get install postgresql-client)")
        else:
            workdir = Path(tempfile.mkdtemp(prefix="deploy-probe-check-"))
            local = Local(args, workdir)
            try:
                local.fresh_database()
                for source in sources:
                    run_live(source, local, args.binary)
            finally:
                local.stop_all()
                local.drop_database()
                local.delete_queues()
                shutil.rmtree(workdir, ignore_errors=True)

    total = sum(len(s.probes) for s in sources)
    if FAIL.items:
        print(f"\nprobe check: {len(FAIL.items)} problem(s):", file=sys.stderr)
        for item in FAIL.items:
            print(f"  - {item}", file=sys.stderr)
        return 1
    print(f"\nprobe check: {total} probes, health checks and scrape paths across {len(sources)} sources point at real endpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
