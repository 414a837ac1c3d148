"""What the deployment checks (connection-budget.py, keda-check.py,
httproute-check.py, migrate-hook-check.py) share: reading rendered
Kubernetes manifests, reporting what a check found in each rendering, and
running a check's self-test against deliberately broken copies of one."""

import copy


def configmaps(docs: list[dict]) -> dict[str, dict]:
    """Each ConfigMap's data, by name."""
    return {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}


def container_env(container: dict, configmaps_by_name: dict[str, dict]) -> dict[str, str]:
    """The plain settings a container gets: its envFrom ConfigMaps, then its
    own env values (Secrets are not read)."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(configmaps_by_name.get(ref["configMapRef"]["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def with_breaks(good: list[dict], breaks: dict) -> dict[str, list[dict]]:
    """The rendering ("as rendered") and one copy per deliberate break, each
    made by applying its function to a deep copy."""
    renderings = {"as rendered": good}
    for name, apply in breaks.items():
        docs = copy.deepcopy(good)
        apply(docs)
        renderings[name] = docs
    return renderings


def report_self_test(tool: str, found: dict[str, list]) -> int:
    """Prints a self-test's outcome from the problems the check found in
    each rendering of `with_breaks`: the rendering itself must pass and every
    break must be caught. Returns the exit status."""
    failures = 0
    if found["as rendered"]:
        print(f"FAIL the rendering itself does not pass: {found['as rendered']}")
        failures += 1
    breaks = [name for name in found if name != "as rendered"]
    for name in breaks:
        if found[name]:
            print(f"  caught {name}: {found[name][0]}")
        else:
            print(f"FAIL not caught: {name}")
            failures += 1
    print(f"{tool} self-test: {len(breaks) - failures} of {len(breaks)} breaks caught")
    return 1 if failures else 0


def report(counts: dict[str, int], what: str, found: dict[str, list[str]]) -> int:
    """Prints each rendering's outcome: how many `what` it holds (`counts`),
    then ok or each problem the check found. Returns the exit status."""
    for name, count in counts.items():
        problems = found[name]
        print(f"{name}: {count} {what}" + (", none to check" if not count else
                                           ", ok" if not problems else ""))
        for problem in problems:
            print(f"FAIL {name}: {problem}")
    return 1 if any(found.values()) else 0
