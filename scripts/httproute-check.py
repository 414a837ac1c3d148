#!/usr/bin/env python3
"""Check the Gateway API HTTPRoutes of rendered Kubernetes overlays, offline.

Run by scripts/deploy-check.sh on each rendered overlay; usable alone:

    scripts/httproute-check.py --tsc node_modules/.bin/tsc production-gateway=prod-gw.yaml
    scripts/httproute-check.py --tsc node_modules/.bin/tsc --self-test prod-gw.yaml

kubernetes-validate has no schema for custom resources, so two checks stand in:

1. Schema, against the Gateway API v1 types of @kubernetes-models/gateway-api
   (generated from Gateway API's Go types and their validation markers):
   `tsc` type-checks each HTTPRoute as a typed literal, strictly (an unknown
   or misspelt field, a wrong type, a missing required field or a value
   outside an enum fails, as `kubectl apply --validate=strict` would), then
   `node` runs the package's validator on it, for what a type cannot say:
   patterns, lengths and ranges (a hostname's syntax, a port above 65535).
2. Meaning, against the rest of the rendering and the Ingress the route
   replaces (k8s/base/ingress.yaml): every backendRef is a Service of the
   rendering, in the route's namespace, and one of its ports; the route
   serves exactly the Ingress's paths (Prefix as PathPrefix, Exact as Exact),
   each to the Service and port the Ingress names, and matches on nothing
   else; it names its hosts; it attaches to a Gateway through one named
   listener (the HTTPS one: tokens must not travel in clear text); no
   Ingress of the rendering still serves one of its hosts.

`--self-test FILE` breaks FILE's route in each of those ways and fails unless
every break is caught: the check itself is tested.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from manifests import report, report_self_test, with_breaks

ROOT = Path(__file__).resolve().parent.parent
INGRESS = ROOT / "k8s" / "base" / "ingress.yaml"
MODULE = "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute"
# Ingress pathType -> HTTPRoute path match type with the same meaning.
PATH_TYPES = {"Prefix": "PathPrefix", "Exact": "Exact"}
GATEWAY_GROUP = "gateway.networking.k8s.io"

VALIDATE_MJS = f"""\
import {{ readFileSync }} from "node:fs";
import {{ HTTPRoute }} from "{MODULE}";
const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
console.log(JSON.stringify(objects.map((object) => {{
  try {{ new HTTPRoute(object).validate(); return null; }} catch (error) {{ return String(error.message); }}
}})));
"""


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def routes(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") == "HTTPRoute"]


def schema_problems(tsc: str, renderings: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Type-checks every HTTPRoute of each rendering in one `tsc` run, then
    validates them with the package's validator in one `node` run."""
    found: dict[str, list[str]] = {name: [] for name in renderings}
    objects = [(name, doc) for name, docs in renderings.items() for doc in routes(docs)]
    if not objects:
        return found
    with tempfile.TemporaryDirectory(prefix="httproute-check.") as work:
        # Types and the validator resolve from the packages next to tsc
        # (…/node_modules/.bin/tsc).
        (Path(work) / "node_modules").symlink_to(Path(tsc).absolute().parent.parent)
        files = {}
        for index, (name, doc) in enumerate(objects):
            path = Path(work) / f"route{index}.ts"
            path.write_text(f'import type {{ IHTTPRoute }} from "{MODULE}";\n'
                            f"export const route: IHTTPRoute = {json.dumps(doc, indent=1)};\n", encoding="utf-8")
            files[path.name] = (name, doc)
        (Path(work) / "tsconfig.json").write_text(json.dumps({
            "compilerOptions": {"strict": True, "noEmit": True, "module": "nodenext",
                                "moduleResolution": "nodenext", "skipLibCheck": True},
            "files": sorted(files),
        }), encoding="utf-8")
        result = subprocess.run([tsc, "-p", work, "--pretty", "false"], capture_output=True, text=True, check=False)
        if result.returncode != 0 and not re.search(r"^\S+\.ts\(\d+,\d+\): error", result.stdout, re.M):
            raise RuntimeError(f"tsc did not run: {result.stdout}{result.stderr}")
        for line in result.stdout.splitlines():
            match = re.match(r"(\S+\.ts)\(\d+,\d+\): error TS\d+: (.*)", line)
            if match:
                name, doc = files[Path(match.group(1)).name]
                found[name].append(f"HTTPRoute/{doc['metadata']['name']}: {match.group(2)}")

        (Path(work) / "validate.mjs").write_text(VALIDATE_MJS, encoding="utf-8")
        (Path(work) / "routes.json").write_text(json.dumps([doc for _, doc in objects]), encoding="utf-8")
        node = shutil.which("node") or "node"
        result = subprocess.run([node, str(Path(work) / "validate.mjs"), str(Path(work) / "routes.json")],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the Gateway API validator did not run: {result.stdout}{result.stderr}")
        for (name, doc), error in zip(objects, json.loads(result.stdout)):
            if error:
                found[name].append(f"HTTPRoute/{doc['metadata']['name']}: {error}")
    return found


def service_port(service: dict, port: int | str) -> int | None:
    """The number of the Service's port named or numbered `port`."""
    for entry in service["spec"].get("ports", []):
        if port in (entry.get("name"), entry.get("port")):
            return entry["port"]
    return None


def ingress_paths(ingress: dict, services: dict[str, dict]) -> set[tuple[str, str, str, int | None]]:
    """(match type, path, Service, port number) of each of the Ingress's paths."""
    paths = set()
    for rule in ingress["spec"].get("rules", []):
        for path in (rule.get("http") or {}).get("paths", []):
            backend = path["backend"]["service"]
            port = backend["port"].get("number", backend["port"].get("name"))
            service = services.get(backend["name"])
            paths.add((PATH_TYPES.get(path["pathType"], path["pathType"]), path["path"], backend["name"],
                       service_port(service, port) if service else None))
    return paths


def meaning_problems(docs: list[dict], reference: dict) -> list[str]:
    problems = []
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    wanted = ingress_paths(reference, services)
    for route in routes(docs):
        spec = route.get("spec") or {}
        where = f"HTTPRoute/{route['metadata']['name']}"
        namespace = route["metadata"].get("namespace")

        parents = spec.get("parentRefs") or []
        if not parents:
            problems.append(f"{where}: attaches to no Gateway (parentRefs)")
        for parent in parents:
            if parent.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or parent.get("kind", "Gateway") != "Gateway":
                problems.append(f"{where}: a parent is a {parent.get('group')}/{parent.get('kind')}, not a Gateway")
            if not parent.get("sectionName"):
                problems.append(f"{where}: attaches to every listener of Gateway/{parent.get('name')}: name the "
                                "HTTPS one (sectionName), or the API may be served in clear text")
        hosts = set(spec.get("hostnames") or [])
        if not hosts:
            problems.append(f"{where}: no hostnames: it would answer for every host of its Gateway")

        served = set()
        for rule in spec.get("rules") or []:
            backends = rule.get("backendRefs") or []
            targets = []
            for ref in backends:
                name, port = ref.get("name"), ref.get("port")
                service = services.get(name)
                if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
                    problems.append(f"{where}: backend {ref.get('group')}/{ref.get('kind')}/{name} is not a Service")
                elif service is None:
                    problems.append(f"{where}: backend Service/{name} is not in this rendering")
                elif ref.get("namespace", namespace) != service["metadata"].get("namespace"):
                    problems.append(f"{where}: in namespace {namespace or '(none)'}, but Service/{name} is in "
                                    f"{service['metadata'].get('namespace')}")
                elif service_port(service, port) is None or not isinstance(port, int):
                    problems.append(f"{where}: Service/{name} has no port {port!r}")
                else:
                    targets.append((name, port))
            for match in rule.get("matches") or [{}]:
                others = sorted(set(match) - {"path"})
                if others:
                    problems.append(f"{where}: a match on {', '.join(others)} as well as the path: "
                                    "the Ingress routes on paths alone")
                path = match.get("path") or {}
                for name, port in targets:
                    served.add((path.get("type", "PathPrefix"), path.get("value", "/"), name, port))
        for missing in sorted(wanted - served, key=str):
            problems.append(f"{where}: does not route {missing[0]} {missing[1]} to Service/{missing[2]}:{missing[3]} "
                            "as the Ingress does")
        for extra in sorted(served - wanted, key=str):
            problems.append(f"{where}: routes {extra[0]} {extra[1]} to Service/{extra[2]}:{extra[3]}, "
                            "which the Ingress does not expose")

        for ingress in (d for d in docs if d["kind"] == "Ingress"):
            both = hosts & {r.get("host") for r in ingress["spec"].get("rules", [])}
            if both:
                problems.append(f"{where}: Ingress/{ingress['metadata']['name']} still serves "
                                f"{', '.join(sorted(both))}: drop it (two entry points, two sets of limits)")
    return problems


def check(tsc: str, renderings: dict[str, list[dict]], reference: dict) -> dict[str, list[str]]:
    found = schema_problems(tsc, renderings)
    for name, docs in renderings.items():
        found[name] += meaning_problems(docs, reference)
    return found


def breaks(reference: dict) -> dict[str, Callable[[list[dict]], None]]:
    """Ways to break a good rendering; each must be caught."""
    def route(docs: list[dict]) -> dict:
        return routes(docs)[0]

    def spec(docs: list[dict]) -> dict:
        return route(docs)["spec"]

    def matches(docs: list[dict]) -> list[dict]:
        return spec(docs)["rules"][0]["matches"]

    def backend(docs: list[dict]) -> dict:
        return spec(docs)["rules"][0]["backendRefs"][0]

    def keep_ingress(docs: list[dict]) -> None:
        ingress = copy.deepcopy(reference)
        ingress["metadata"]["namespace"] = route(docs)["metadata"].get("namespace")
        ingress["spec"]["rules"][0]["host"] = spec(docs)["hostnames"][0]
        docs.append(ingress)

    def drop_docs(docs: list[dict]) -> None:
        matches(docs)[:] = [m for m in matches(docs) if m["path"]["value"] != "/docs"]

    return {
        "an unknown field (spec.hostname)": lambda d: spec(d).update(hostname="api.example.com"),
        "a misspelt match field (pathh)": lambda d: matches(d)[0].update(pathh=matches(d)[0].pop("path")),
        "a port given as a string": lambda d: backend(d).update(port="8000"),
        "a path type outside the enum (Prefix)": lambda d: matches(d)[0]["path"].update(type="Prefix"),
        "an invalid hostname": lambda d: spec(d).update(hostnames=["API_host.example.com"]),
        "a port above 65535": lambda d: backend(d).update(port=80000),
        "a backend that is no Service of the rendering": lambda d: backend(d).update(name="stock-tracker-web"),
        "a port the Service does not have": lambda d: backend(d).update(port=8001),
        "the route in another namespace than its Service": lambda d: route(d)["metadata"].update(namespace="other"),
        "an Ingress path left out (/docs)": drop_docs,
        "a path the Ingress does not expose (/metrics)": lambda d: matches(d).append(
            {"path": {"type": "PathPrefix", "value": "/metrics"}}),
        "a match on a header as well": lambda d: matches(d)[0].update(
            headers=[{"name": "x-debug", "value": "1"}]),
        "no listener named (sectionName)": lambda d: spec(d)["parentRefs"][0].pop("sectionName"),
        "a parent that is no Gateway": lambda d: spec(d)["parentRefs"][0].update(kind="Service", group=""),
        "no hostnames": lambda d: spec(d).pop("hostnames"),
        "the Ingress left in place": keep_ingress,
    }


def self_test(tsc: str, path: Path, reference: dict) -> int:
    good = load(path)
    if not routes(good):
        print(f"FAIL {path} holds no HTTPRoute to break")
        return 1
    renderings = with_breaks(good, breaks(reference))
    return report_self_test("httproute-check", check(tsc, renderings, reference))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--tsc", required=True, help="the TypeScript compiler, next to @kubernetes-models/gateway-api")
    parser.add_argument("--ingress", type=Path, default=INGRESS, help="the Ingress the routes replace")
    parser.add_argument("--self-test", type=Path, metavar="FILE", help="a rendering with an HTTPRoute to break")
    parser.add_argument("renderings", nargs="*", metavar="NAME=FILE")
    args = parser.parse_args()
    reference = load(args.ingress)[0]
    if args.self_test:
        return self_test(args.tsc, args.self_test, reference)
    renderings = {arg.split("=", 1)[0]: load(Path(arg.split("=", 1)[1])) for arg in args.renderings}
    counts = {name: len(routes(docs)) for name, docs in renderings.items()}
    return report(counts, "HTTPRoutes", check(args.tsc, renderings, reference))


if __name__ == "__main__":
    sys.exit(main())
