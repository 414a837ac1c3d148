#!/usr/bin/env python3
"""Keeps the crate's dependencies pointing one way.

Reads every `crate::…` path under src/ (use lines and inline paths, comments
left out) and checks the top-level modules against three layers:

  foundations  config crypto db redis_conn cache telemetry resilience http broker infra ssrf mailer
  domains      every other top-level module
  entry points app worker   (and main.rs, which may use anything)

A foundation imports no domain and no entry point; a domain imports no entry
point; and no top-level modules import each other in a cycle. Each violation
is printed with the file, line and text of the reference that makes it.

Usage: scripts/check-deps.py [--graph]   (--graph prints the module graph by layer)
Exit status: 0 when the rules hold, 1 otherwise.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
FOUNDATIONS = {
    "config", "crypto", "db", "redis_conn", "cache", "telemetry", "resilience",
    "http", "broker", "infra", "ssrf", "mailer",
}
ENTRY_POINTS = {"app", "worker"}
ROOT_FILES = {"lib", "main"}

PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP_START = re.compile(r"\bcrate::\{")


def layer(module):
    if module in FOUNDATIONS:
        return "foundation"
    if module in ENTRY_POINTS:
        return "entry point"
    return "domain"


def top_level(path):
    first = path.relative_to(SRC).parts[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_comments(line):
    """The line without its `//` comment (a `//` inside a string literal stays)."""
    in_string = False
    for i, char in enumerate(line):
        if char == '"' and (i == 0 or line[i - 1] != "\\"):
            in_string = not in_string
        elif not in_string and line.startswith("//", i):
            return line[:i]
    return line


def group_heads(code, start):
    """The top-level module names of a `crate::{...}` group opening at
    `start` (just after its `{`), nested groups included: (offset, name)."""
    heads, depth, token, token_at, expect_head = [], 1, "", start, True
    i = start
    while i < len(code) and depth:
        char = code[i]
        if char.isalnum() or char == "_":
            if not token:
                token_at = i
            token += char
        else:
            if token and expect_head and depth == 1:
                heads.append((token_at, token))
            if token:
                expect_head = False
            token = ""
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            elif char == "," and depth == 1:
                expect_head = True
        i += 1
    return heads


def references():
    """(module, target, file, line number, line) for every crate:: reference."""
    found = []
    for path in sorted(SRC.rglob("*.rs")):
        module = top_level(path)
        if module in ROOT_FILES:
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        code = "\n".join(strip_comments(line) for line in lines)
        offsets = [0]
        for line in code.splitlines(keepends=True):
            offsets.append(offsets[-1] + len(line))

        def line_of(position):
            low, high = 0, len(offsets) - 1
            while low < high:
                middle = (low + high + 1) // 2
                if offsets[middle] <= position:
                    low = middle
                else:
                    high = middle - 1
            return low

        hits = [(m.start(), m.group(1)) for m in PATH.finditer(code)]
        for group in GROUP_START.finditer(code):
            hits.extend(group_heads(code, group.end()))
        for position, target in hits:
            number = line_of(position)
            found.append((module, target, path, number + 1, lines[number].strip()))
    return found


def cycles(edges):
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def main():
    modules = {top_level(p) for p in SRC.rglob("*.rs")} - ROOT_FILES
    refs = [r for r in references() if r[1] in modules and r[1] != r[0]]
    edges = {m: set() for m in modules}
    first_ref = {}
    for module, target, path, number, line in refs:
        edges[module].add(target)
        first_ref.setdefault((module, target), (path, number, line))

    problems = []
    for (module, target), (path, number, line) in sorted(first_ref.items()):
        source_layer, target_layer = layer(module), layer(target)
        wrong = (source_layer == "foundation" and target_layer != "foundation") or (
            source_layer == "domain" and target_layer == "entry point")
        if wrong:
            where = path.relative_to(SRC.parent)
            problems.append(
                f"{where}:{number}: {source_layer} `{module}` imports {target_layer} `{target}`: {line}")
    for component in cycles(edges):
        problems.append(f"cycle between top-level modules: {' '.join(component)}")
        members = set(component)
        for (module, target), (path, number, line) in sorted(first_ref.items()):
            if module in members and target in members:
                problems.append(f"  {path.relative_to(SRC.parent)}:{number}: {module} -> {target}: {line}")

    if "--graph" in sys.argv:
        for name in ("foundation", "domain", "entry point"):
            print(f"{name}s:")
            for module in sorted(m for m in modules if layer(m) == name):
                targets = ", ".join(sorted(edges[module])) or "-"
                print(f"  {module} -> {targets}")
    if problems:
        print("\n".join(problems))
        print(f"check-deps: {len(problems)} problem(s)")
        return 1
    print(f"check-deps: ok, {len(modules)} top-level modules, dependencies point one way "
          "(foundations -> domains -> entry points), no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
