#!/usr/bin/env python3
"""Check the KEDA objects of rendered Kubernetes overlays, offline.

Run by scripts/deploy-check.sh on each rendered overlay; usable alone:

    scripts/keda-check.py --tsc node_modules/.bin/tsc production-keda=prod-keda.yaml
    scripts/keda-check.py --tsc node_modules/.bin/tsc --self-test prod-keda.yaml

kubernetes-validate has no schema for custom resources, so two checks stand in:

1. Schema, strictly: each ScaledObject and TriggerAuthentication becomes a
   typed TypeScript literal checked by `tsc` against the KEDA API types of
   @kubernetes-models/keda (generated from KEDA's CRDs): a misspelt or
   unknown field, a wrong type, a missing required field or a value outside
   an enum fails, as `kubectl apply --validate=strict` would.
2. Meaning, against the rest of the rendering: the target is a Deployment of
   the rendering, in the ScaledObject's namespace (where KEDA looks for it),
   that no HorizontalPodAutoscaler also scales; every queue the
   worker consumes (broker.sync_queue and broker.notifications_queue, as its
   container gets them) has a rabbitmq trigger and no trigger names another
   queue; each trigger's authentication is a TriggerAuthentication of the
   rendering whose `host` comes from the Secret key the worker reads its
   broker URL from; at least one replica always runs (deliveries must not
   wait for a pod to start); the fallback lies within the bounds.

`--self-test FILE` breaks FILE's objects in each of those ways and fails
unless every break is caught: the check itself is tested.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

import yaml

from manifests import configmaps, container_env, report, report_self_test, with_breaks

ROOT = Path(__file__).resolve().parent.parent
KEDA_KINDS = {
    "ScaledObject": ("IScaledObject", "ScaledObject"),
    "TriggerAuthentication": ("ITriggerAuthentication", "TriggerAuthentication"),
}
BROKER_URL = "STOCK_TRACKER__BROKER__URL"
QUEUE_SETTINGS = {
    "sync_queue": "STOCK_TRACKER__BROKER__SYNC_QUEUE",
    "notifications_queue": "STOCK_TRACKER__BROKER__NOTIFICATIONS_QUEUE",
}


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def schema_problems(tsc: str, renderings: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Type-checks every KEDA object of each rendering in one `tsc` run."""
    found: dict[str, list[str]] = {name: [] for name in renderings}
    with tempfile.TemporaryDirectory(prefix="keda-check.") as work:
        files = {}
        for index, (name, docs) in enumerate(renderings.items()):
            imports, lines = [], []
            for number, doc in enumerate(d for d in docs if d.get("kind") in KEDA_KINDS):
                interface, module = KEDA_KINDS[doc["kind"]]
                imports.append(f'import type {{ {interface} as Type{number} }} from '
                               f'"@kubernetes-models/keda/keda.sh/v1alpha1/{module}";')
                lines.append(f"// {doc['kind']}/{doc['metadata']['name']}")
                lines.append(f"export const object{number}: Type{number} = {json.dumps(doc, indent=1)};")
            if lines:
                path = Path(work) / f"rendering{index}.ts"
                path.write_text("\n".join(imports + lines) + "\n", encoding="utf-8")
                files[path.name] = (name, path)
        if not files:
            return found
        # Types resolve from the package next to tsc (…/node_modules/.bin/tsc).
        modules = Path(tsc).absolute().parent.parent
        (Path(work) / "node_modules").symlink_to(modules)
        (Path(work) / "tsconfig.json").write_text(json.dumps({
            "compilerOptions": {"strict": True, "noEmit": True, "module": "nodenext",
                                "moduleResolution": "nodenext", "skipLibCheck": True},
            "files": sorted(files),
        }), encoding="utf-8")
        result = subprocess.run([tsc, "-p", work, "--pretty", "false"], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0 and not re.search(r"^\S+\.ts\(\d+,\d+\): error", result.stdout, re.M):
            raise RuntimeError(f"tsc did not run: {result.stdout}{result.stderr}")
        for line in result.stdout.splitlines():
            match = re.match(r"(\S+\.ts)\((\d+),\d+\): error TS\d+: (.*)", line)
            if not match:
                continue
            name, path = files[Path(match.group(1)).name]
            source = path.read_text(encoding="utf-8").splitlines()
            # The nearest "// Kind/name" comment above the error names the object.
            where = next((l[3:] for l in reversed(source[: int(match.group(2))]) if l.startswith("// ")), "?")
            found[name].append(f"{where}: {match.group(3)}")
    return found


def worker_queues(container: dict, docs: list[dict]) -> set[str]:
    defaults = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))["broker"]
    env = container_env(container, configmaps(docs))
    return {env.get(variable, defaults[key]) for key, variable in QUEUE_SETTINGS.items()}


def broker_secrets(container: dict) -> set[str]:
    """Secrets the container may read its broker URL from (envFrom or env)."""
    names = {ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref}
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if item["name"] == BROKER_URL and ref:
            names.add(ref["name"])
    return names


def meaning_problems(docs: list[dict]) -> list[str]:
    problems = []
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    auths = by_kind.get("TriggerAuthentication", {})
    hpa_targets = {
        (h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
        for h in by_kind.get("HorizontalPodAutoscaler", {}).values()
    }
    for name, scaled in by_kind.get("ScaledObject", {}).items():
        spec = scaled.get("spec") or {}
        where = f"ScaledObject/{name}"
        target = spec.get("scaleTargetRef") or {}
        kind = target.get("kind", "Deployment")
        deployment = by_kind.get(kind, {}).get(target.get("name"))
        if kind != "Deployment" or deployment is None:
            problems.append(f"{where}: scales {kind}/{target.get('name')}, not a Deployment of this rendering")
            continue
        namespace = scaled["metadata"].get("namespace")
        if namespace != deployment["metadata"].get("namespace"):
            problems.append(f"{where}: in namespace {namespace or '(none)'}, but Deployment/{target['name']} is in "
                            f"{deployment['metadata'].get('namespace') or '(none)'}: KEDA looks in its own")
        if (kind, target["name"]) in hpa_targets:
            problems.append(f"{where}: a HorizontalPodAutoscaler also scales {kind}/{target['name']} "
                            "(KEDA refuses a second autoscaler: delete the HPA)")
        containers = deployment["spec"]["template"]["spec"]["containers"]
        worker = next((c for c in containers if (c.get("args") or [""])[0] == "worker"), None)
        if worker is None:
            problems.append(f"{where}: Deployment/{target['name']} runs no `worker` container")
            continue
        lowest, highest = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        fallback = (spec.get("fallback") or {}).get("replicas")
        if not all(isinstance(v, int) for v in (lowest, highest, fallback or 0)):
            problems.append(f"{where}: replica counts must be integers")
        elif not 1 <= lowest <= highest:
            problems.append(f"{where}: minReplicaCount {lowest} must be at least 1 (notifications "
                            f"must not wait for a pod to start) and at most maxReplicaCount {highest}")
        elif fallback is not None and not lowest <= fallback <= highest:
            problems.append(f"{where}: fallback.replicas {fallback} outside {lowest}..{highest}")

        queues = worker_queues(worker, docs)
        triggered = set()
        for trigger in spec.get("triggers") or []:
            if trigger.get("type") != "rabbitmq":
                continue
            queue = (trigger.get("metadata") or {}).get("queueName")
            if queue not in queues:
                problems.append(f"{where}: a trigger reads queue {queue!r}, which the worker does not "
                                f"consume ({', '.join(sorted(queues))})")
            triggered.add(queue)
            auth_name = (trigger.get("authenticationRef") or {}).get("name")
            auth = auths.get(auth_name)
            if auth is None:
                problems.append(f"{where}: trigger on {queue!r} authenticates with "
                                f"TriggerAuthentication/{auth_name}, not in this rendering")
                continue
            hosts = [r for r in (auth.get("spec") or {}).get("secretTargetRef") or []
                     if r.get("parameter") == "host"]
            if not any(r.get("key") == BROKER_URL and r.get("name") in broker_secrets(worker) for r in hosts):
                problems.append(f"TriggerAuthentication/{auth_name}: `host` must come from {BROKER_URL} "
                                f"of the worker's Secret ({', '.join(sorted(broker_secrets(worker)))})")
        for queue in sorted(queues - triggered):
            problems.append(f"{where}: no rabbitmq trigger on queue {queue!r}: its backlog would not scale the workers")
    return problems


def check(tsc: str, renderings: dict[str, list[dict]]) -> dict[str, list[str]]:
    found = schema_problems(tsc, renderings)
    for name, docs in renderings.items():
        found[name] += meaning_problems(docs)
    return found


def breaks() -> dict[str, Callable[[list[dict]], None]]:
    """Ways to break a good rendering; each must be caught."""
    def spec(docs: list[dict]) -> dict:
        return next(d for d in docs if d["kind"] == "ScaledObject")["spec"]

    def rabbit(docs: list[dict], queue: str) -> dict:
        return next(t for t in spec(docs)["triggers"] if t["metadata"]["queueName"] == queue)

    def keep_hpa(docs: list[dict]) -> None:
        target = spec(docs)["scaleTargetRef"]["name"]
        docs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": {"name": target},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                              "maxReplicas": 3}})

    def auth_from_other_key(docs: list[dict]) -> None:
        auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
        auth["spec"]["secretTargetRef"][0]["key"] = "REDIS_URL"

    return {
        "an unknown field (maxReplicas)": lambda d: spec(d).update(maxReplicas=3),
        "a misspelt trigger field": lambda d: rabbit(d, "sync").update(metdata={}),
        "a count given as a string": lambda d: spec(d).update(minReplicaCount="1"),
        "a trigger without its type": lambda d: rabbit(d, "sync").pop("type"),
        "an HPA left on the same Deployment": keep_hpa,
        "a ScaledObject outside the Deployment's namespace": lambda d: next(
            x for x in d if x["kind"] == "ScaledObject")["metadata"].pop("namespace", None),
        "a queue the worker does not consume": lambda d: rabbit(d, "sync")["metadata"].update(queueName="celery"),
        "no trigger on notifications": lambda d: spec(d)["triggers"].remove(rabbit(d, "notifications")),
        "scale to zero": lambda d: spec(d).update(minReplicaCount=0),
        "a fallback above the maximum": lambda d: spec(d)["fallback"].update(replicas=99),
        "credentials from another key": auth_from_other_key,
        "a missing TriggerAuthentication": lambda d: d.remove(
            next(x for x in d if x["kind"] == "TriggerAuthentication")),
    }


def self_test(tsc: str, path: Path) -> int:
    renderings = with_breaks(load(path), breaks())
    return report_self_test("keda-check", check(tsc, renderings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--tsc", required=True, help="the TypeScript compiler, next to @kubernetes-models/keda")
    parser.add_argument("--self-test", type=Path, metavar="FILE", help="a rendering with KEDA objects to break")
    parser.add_argument("renderings", nargs="*", metavar="NAME=FILE")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.tsc, args.self_test)
    renderings = {arg.split("=", 1)[0]: load(Path(arg.split("=", 1)[1])) for arg in args.renderings}
    counts = {name: sum(d["kind"] in KEDA_KINDS for d in docs) for name, docs in renderings.items()}
    return report(counts, "KEDA objects", check(args.tsc, renderings))


if __name__ == "__main__":
    sys.exit(main())
