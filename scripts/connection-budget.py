#!/usr/bin/env python3
"""Check that a rendered Kubernetes overlay stays within PostgreSQL's connection budget.

Run by scripts/deploy-check.sh on each rendered overlay; usable alone:

    scripts/connection-budget.py dev=dev.yaml production=prod.yaml

The worst case is counted, not the usual one: every Deployment of the app at
its autoscaler's maximum (an HPA's or a KEDA ScaledObject's; else its
replicas) plus its rolling update's surge,
each pod with a full pool (`STOCK_TRACKER__DATABASE__MAX_CONNECTIONS` as the
container gets it, else config/default.toml's; beat's lead is a row, so beat
has no connection beyond its pool), the migrate Job's one connection, and what
the ConfigMap `stock-tracker-database-budget` states about the database:

    postgres_max_connections        PostgreSQL's max_connections
    superuser_reserved_connections  its superuser_reserved_connections
    other_connections               other clients: exporters, an operator's psql
    pooler_max_client_connections   with database.pooler = "transaction": the
    pooler_server_connections       pooler's max_client_conn, and the server
                                    connections it opens at most (default_pool_size
                                    x databases and users, plus reserve_pool_size)

Without a pooler, the app's connections + other + reserved must fit in
max_connections. Behind a pooler, the pools must fit in the pooler's client
limit, and the pooler's server connections + the direct one (migrations) +
other + reserved in max_connections.
"""

from __future__ import annotations

import math
import sys
import tomllib
from pathlib import Path

import yaml

from manifests import configmaps, container_env

ROOT = Path(__file__).resolve().parent.parent
APP_IMAGE = "stock-tracker"
BUDGET_CONFIGMAP = "stock-tracker-database-budget"
POOL_SIZE = "STOCK_TRACKER__DATABASE__MAX_CONNECTIONS"
POOLER = "STOCK_TRACKER__DATABASE__POOLER"


def default_pool_size() -> int:
    config = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))
    return int(config["database"]["max_connections"])


def is_app(container: dict) -> bool:
    image = container.get("image", "")
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0] == APP_IMAGE


def surge(deployment: dict, pods: int) -> int:
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(pods * int(value[:-1]) / 100)
    return int(value)


def check(name: str, rendered: Path) -> list[str]:
    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    by_name = configmaps(docs)
    budget_data = next(
        (data for cm, data in by_name.items() if cm.endswith(BUDGET_CONFIGMAP)), None
    )
    if budget_data is None:
        return [f"{name}: no ConfigMap {BUDGET_CONFIGMAP} stating the database's connection limits"]
    budget = {key: int(value) for key, value in budget_data.items() if str(value).strip()}
    # An autoscaler's maximum: an HPA's maxReplicas, a KEDA ScaledObject's
    # maxReplicaCount (KEDA's own default: 100).
    max_pods = {
        d["spec"]["scaleTargetRef"]["name"]: int(d["spec"]["maxReplicas"])
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
    }
    max_pods.update({
        d["spec"]["scaleTargetRef"]["name"]: int(d["spec"].get("maxReplicaCount", 100))
        for d in docs
        if d["kind"] == "ScaledObject"
    })

    lines, pooled, direct, pooler = [], 0, 0, None
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        containers = [c for c in doc["spec"]["template"]["spec"]["containers"] if is_app(c)]
        for container in containers:
            env = container_env(container, by_name)
            role = (container.get("args") or ["serve"])[0]
            workload = doc["metadata"]["name"]
            if role == "migrate":
                # One connection as the owner, straight to PostgreSQL.
                direct += 1
                lines.append(f"  {workload}: 1 (migrations)")
                continue
            pooler = pooler or env.get(POOLER, "none")
            pool = int(env.get(POOL_SIZE, default_pool_size()))
            pods = max_pods.get(workload, int(doc["spec"].get("replicas", 1)))
            extra = surge(doc, pods)
            pooled += (pods + extra) * pool
            lines.append(
                f"  {workload}: ({pods} pods + {extra} surge) x ({pool} pool)"
                f" = {(pods + extra) * pool}"
            )

    maximum = budget["postgres_max_connections"]
    reserved = budget.get("superuser_reserved_connections", 3)
    other = budget.get("other_connections", 0)
    problems = []
    if pooler == "transaction":
        clients = budget.get("pooler_max_client_connections")
        servers = budget.get("pooler_server_connections")
        if clients is None or servers is None:
            return [f"{name}: database.pooler is \"transaction\": {BUDGET_CONFIGMAP} must state "
                    "pooler_max_client_connections and pooler_server_connections"]
        total = servers + direct + other + reserved
        lines.append(f"  through the pooler: {pooled} client connections (its limit: {clients})")
        lines.append(f"  PostgreSQL: {servers} from the pooler + {direct} direct + {other} other"
                     f" + {reserved} reserved = {total} (max_connections: {maximum})")
        if pooled > clients:
            problems.append(f"{name}: the pools need {pooled} pooler clients, over its {clients}")
    else:
        total = pooled + direct + other + reserved
        lines.append(f"  PostgreSQL: {pooled + direct} app + {other} other + {reserved} reserved"
                     f" = {total} (max_connections: {maximum})")
    if total > maximum:
        problems.append(f"{name}: {total} PostgreSQL connections at the worst case, over max_connections {maximum}")
    print(f"{name}: " + ("over budget" if problems else "within budget"))
    print("\n".join(lines))
    return problems


def main() -> int:
    if len(sys.argv) < 2 or any("=" not in arg for arg in sys.argv[1:]):
        print(__doc__.split("\n\n", 2)[1], file=sys.stderr)
        return 2
    problems = []
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        problems += check(name, Path(path))
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
