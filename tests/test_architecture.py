"""The house rules that code review forgets: imports inside lsd/ point one way (no cycles),
and the repository names no file outside itself and no path of a development machine."""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lsd"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the lsd modules it imports (any depth, lazy imports included). An edge to a
    package's __init__ is left out: importing `lsd.diffusion` for a name it re-exports is an
    edge to the module that defines the name, which the re-export itself records."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    graph = {m: set() for m in files}
    for mod, path in files.items():
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here[: len(here) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod and t not in packages}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_lsd():
    found = cycles(import_graph())
    assert not found, "import cycles in lsd/: " + "; ".join(" <-> ".join(c) for c in found)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    keep = (".py", ".md", ".smk", ".yaml", ".yml", ".json", ".toml", ".txt", ".tex", ".csv", ".log", ".tsv")
    return [ROOT / f for f in out.splitlines() if f.endswith(keep) and (ROOT / f).is_file()
            and (ROOT / f).stat().st_size < 2_000_000]


def test_repository_stands_on_its_own():
    """No citation of files outside the repository and no absolute path of a machine that
    ran something (they mean nothing in a clone)."""
    outside = re.compile(r"anchors\.md|shared/reference")
    machine_path = re.compile(r"/(?:work|home|root|tmp/pytest-of-)[A-Za-z0-9_./+-]*/(?:main|lsd|results)\b")
    offenders = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for pattern in (outside, machine_path):
            hit = pattern.search(text)
            if hit:
                offenders.append(f"{path.relative_to(ROOT)}: {hit.group(0)}")
    assert not offenders, "\n".join(offenders[:20])
