#!/usr/bin/env python3
"""Check the migrate Job of rendered Kubernetes overlays: a pre-sync hook that can run.

Run by scripts/deploy-check.sh on each rendered overlay; usable alone:

    scripts/migrate-hook-check.py --plain dev production=prod.yaml dev=dev.yaml
    scripts/migrate-hook-check.py --self-test prod.yaml

The Job (the container running `migrate`) is a pre-sync hook for Argo CD
(`argocd.argoproj.io/hook: PreSync`, delete policy BeforeHookCreation) and
for Helm-style tools (`helm.sh/hook: pre-install,pre-upgrade`, delete policy
before-hook-creation), so each sync replaces it instead of an operator
deleting it, and migrates before anything else is applied. Checked in every
rendering except those named with --plain (applied with kubectl, where the
Job is a plain Job):

1. the annotations, for both tools;
2. that it can run: a pre-sync hook runs before the sync creates the
   rendering's other objects, so every ConfigMap, Secret and ServiceAccount
   of the rendering its pod uses must itself be a hook of the same phases
   running before it (a lower Argo CD sync wave and a lower Helm hook
   weight). What the rendering does not hold must exist beforehand (the
   Secrets): listed;
3. `ttlSecondsAfterFinished`, if set, leaves the tools time to see the Job
   complete (a Job gone before that leaves the sync waiting).

In every rendering: the settings the Job reads from ConfigMaps are exactly
those the API's `serve` container reads (the Job's copy kept in step).

`--self-test FILE` breaks FILE's Job in each of those ways and fails unless
every break is caught: the check itself is tested.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import yaml

from manifests import configmaps, report_self_test, with_breaks

ARGO_HOOK = "argocd.argoproj.io/hook"
ARGO_WAVE = "argocd.argoproj.io/sync-wave"
ARGO_DELETE = "argocd.argoproj.io/hook-delete-policy"
HELM_HOOK = "helm.sh/hook"
HELM_WEIGHT = "helm.sh/hook-weight"
HELM_DELETE = "helm.sh/hook-delete-policy"
# What the Job must carry: the phase and a delete policy that removes the
# previous Job before the next is created, for each tool.
ARGO_PHASES = {"PreSync"}
HELM_PHASES = {"pre-install", "pre-upgrade"}
# Long enough for Argo CD or Helm to have seen the Job complete.
MIN_TTL_SECS = 300


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def csv(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def annotations(doc: dict) -> dict[str, str]:
    return doc["metadata"].get("annotations") or {}


def migrate_job(docs: list[dict]) -> tuple[dict, dict] | None:
    for doc in docs:
        if doc["kind"] != "Job":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if (container.get("args") or [""])[0] == "migrate":
                return doc, container
    return None


def served_container(docs: list[dict]) -> dict | None:
    for doc in docs:
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if (container.get("args") or [""])[0] == "serve":
                    return container
    return None


def configmap_settings(container: dict, by_name: dict[str, dict]) -> dict[str, str]:
    """The settings a container reads from ConfigMaps (envFrom, then env)."""
    settings: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            settings.update(by_name.get(ref["configMapRef"]["name"], {}))
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            settings[item["name"]] = by_name.get(ref["name"], {}).get(ref["key"], "")
    return settings


def dependencies(job: dict) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret and ServiceAccount the pod uses."""
    pod = job["spec"]["template"]["spec"]
    found = {("ServiceAccount", pod.get("serviceAccountName") or "default")}
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        for ref in container.get("envFrom", []):
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in ref:
                    found.add((kind, ref[key]["name"]))
        for item in container.get("env", []):
            source = item.get("valueFrom") or {}
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if key in source:
                    found.add((kind, source[key]["name"]))
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
    for ref in pod.get("imagePullSecrets", []):
        found.add(("Secret", ref["name"]))
    return found


def number(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def hook_problems(docs: list[dict], job: dict) -> tuple[list[str], list[str]]:
    problems, external = [], []
    where = f"Job/{job['metadata']['name']}"
    notes = annotations(job)
    if not ARGO_PHASES <= csv(notes.get(ARGO_HOOK)):
        problems.append(f"{where}: {ARGO_HOOK} is {notes.get(ARGO_HOOK)!r}, not PreSync")
    if notes.get(ARGO_DELETE) != "BeforeHookCreation":
        problems.append(f"{where}: {ARGO_DELETE} is {notes.get(ARGO_DELETE)!r}: BeforeHookCreation replaces "
                        "the previous Job (whose template cannot change) at the next sync")
    if not HELM_PHASES <= csv(notes.get(HELM_HOOK)):
        problems.append(f"{where}: {HELM_HOOK} is {notes.get(HELM_HOOK)!r}, not pre-install,pre-upgrade")
    if "before-hook-creation" not in csv(notes.get(HELM_DELETE)):
        problems.append(f"{where}: {HELM_DELETE} is {notes.get(HELM_DELETE)!r}, not before-hook-creation")
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    if ttl is not None and ttl < MIN_TTL_SECS:
        problems.append(f"{where}: ttlSecondsAfterFinished {ttl} s: the Job may vanish before Argo CD or "
                        f"Helm sees it complete (at least {MIN_TTL_SECS} s)")

    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for kind, name in sorted(dependencies(job)):
        dependency = objects.get((kind, name))
        if dependency is None:
            external.append(f"{kind}/{name}")
            continue
        theirs = annotations(dependency)
        what = f"{where} uses {kind}/{name}"
        if not ARGO_PHASES <= csv(theirs.get(ARGO_HOOK)):
            problems.append(f"{what}, which is no PreSync hook: the sync creates it after the Job has run")
        elif number(theirs.get(ARGO_WAVE)) >= number(notes.get(ARGO_WAVE)):
            problems.append(f"{what}, in sync wave {number(theirs.get(ARGO_WAVE))}, not before the Job's "
                            f"{number(notes.get(ARGO_WAVE))}")
        if not HELM_PHASES <= csv(theirs.get(HELM_HOOK)):
            problems.append(f"{what}, which is no pre-install,pre-upgrade hook: Helm creates it after the Job")
        elif number(theirs.get(HELM_WEIGHT)) >= number(notes.get(HELM_WEIGHT)):
            problems.append(f"{what}, of hook weight {number(theirs.get(HELM_WEIGHT))}, not below the Job's "
                            f"{number(notes.get(HELM_WEIGHT))}")
    return problems, external


def settings_problems(docs: list[dict], container: dict) -> list[str]:
    served = served_container(docs)
    if served is None:
        return ["no Deployment runs `serve`: nothing to compare the migrate Job's settings with"]
    by_name = configmaps(docs)
    mine, theirs = configmap_settings(container, by_name), configmap_settings(served, by_name)
    problems = []
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            problems.append(f"the migrate Job reads {key}={mine.get(key)!r}, the API {theirs.get(key)!r}: "
                            "merge the same files into stock-tracker-migrate-config as into stock-tracker-config")
    return problems


def check(docs: list[dict], plain: bool) -> tuple[list[str], list[str]]:
    found = migrate_job(docs)
    if found is None:
        return ["no Job runs `migrate`"], []
    job, container = found
    problems, external = ([], []) if plain else hook_problems(docs, job)
    return problems + settings_problems(docs, container), external


def breaks() -> dict[str, Callable[[list[dict]], None]]:
    """Ways to break a good rendering; each must be caught."""
    def job(docs: list[dict]) -> dict:
        return migrate_job(docs)[0]

    def notes(docs: list[dict]) -> dict:
        return job(docs)["metadata"]["annotations"]

    def config(docs: list[dict]) -> dict:
        name = migrate_job(docs)[1]["envFrom"][0]["configMapRef"]["name"]
        return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)

    def read_served_config(docs: list[dict]) -> None:
        served = served_container(docs)["envFrom"][0]["configMapRef"]["name"]
        migrate_job(docs)[1]["envFrom"][0]["configMapRef"]["name"] = served

    def served_service_account(docs: list[dict]) -> None:
        job(docs)["spec"]["template"]["spec"]["serviceAccountName"] = "stock-tracker"
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stock-tracker"}})

    def change_setting(docs: list[dict]) -> None:
        data = config(docs)["data"]
        data["STOCK_TRACKER__ENVIRONMENT"] = "development"

    return {
        "no Argo CD hook": lambda d: notes(d).pop(ARGO_HOOK),
        "an Argo CD PostSync hook": lambda d: notes(d).update({ARGO_HOOK: "PostSync"}),
        "no Argo CD delete policy": lambda d: notes(d).pop(ARGO_DELETE),
        "a Helm hook without pre-upgrade": lambda d: notes(d).update({HELM_HOOK: "pre-install"}),
        "no Helm delete policy": lambda d: notes(d).pop(HELM_DELETE),
        "a ttlSecondsAfterFinished of 0": lambda d: job(d)["spec"].update(ttlSecondsAfterFinished=0),
        "the served (hashed) ConfigMap, no hook": read_served_config,
        "the served ServiceAccount, no hook": served_service_account,
        "its ConfigMap in the Job's sync wave": lambda d: config(d)["metadata"]["annotations"].update(
            {ARGO_WAVE: "0"}),
        "its ConfigMap at the Job's Helm weight": lambda d: config(d)["metadata"]["annotations"].update(
            {HELM_WEIGHT: "0"}),
        "settings that differ from the API's": change_setting,
    }


def self_test(path: Path) -> int:
    renderings = with_breaks(load(path), breaks())
    found = {name: check(docs, plain=False)[0] for name, docs in renderings.items()}
    return report_self_test("migrate-hook-check", found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--plain", action="append", default=[], metavar="NAME",
                        help="a rendering applied with kubectl, where the Job is not a hook")
    parser.add_argument("--self-test", type=Path, metavar="FILE", help="a rendering whose Job to break")
    parser.add_argument("renderings", nargs="*", metavar="NAME=FILE")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.self_test)
    status = 0
    for arg in args.renderings:
        name, path = arg.split("=", 1)
        plain = name in args.plain
        problems, external = check(load(Path(path)), plain)
        if problems:
            status = 1
            for problem in problems:
                print(f"FAIL {name}: {problem}")
        elif plain:
            print(f"{name}: a plain Job (applied with kubectl); its settings are the API's")
        else:
            print(f"{name}: a pre-sync hook for Argo CD and Helm; its hooks run first; its settings are the API's"
                  + (f"; expects {', '.join(external)} to exist before the sync" if external else ""))
    missing = set(args.plain) - {arg.split("=", 1)[0] for arg in args.renderings}
    for name in sorted(missing):
        print(f"FAIL --plain {name}: no such rendering")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
