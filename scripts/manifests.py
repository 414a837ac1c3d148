"""What the deployment checks (connection-budget.py, keda-check.py) read
from rendered Kubernetes manifests."""


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
