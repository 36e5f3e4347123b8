"""The shape of the code: no circle of imports among xpnet's modules, found by reading their sources."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"xpnet": ROOT / "xpnet", "xpnet.backends": ROOT / "backends"}


def modules():
    """``{dotted name: path}`` of every module of xpnet, the backends package included."""
    out = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports(name, path, known):
    """The xpnet modules ``name`` imports anywhere in its source (function bodies included).

    ``from package import module`` names the module, not the package; a module's own parent
    packages are left out (Python runs them first whatever the module does).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets.update(submodules)
            if len(submodules) < len(node.names):
                targets.add(base)
    out = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_in_xpnet():
    known = modules()
    assert "xpnet.training.trainer" in known and "xpnet.backends.base" in known
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert "xpnet.serialization" in graph["xpnet.models.base"]  # the reader sees real edges
    assert cycles(graph) == []


BACKEND_NAMES = {"numpy", "cuda", "cpu", "gpu", "cupy"}


def name_branches(source):
    """Line numbers of comparisons of a ``.name`` attribute with a backend's name (``be.name == "numpy"``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, ast.Attribute) and s.attr == "name" for s in sides)
            literal = any(isinstance(s, ast.Constant) and s.value in BACKEND_NAMES for s in sides)
            if named and literal:
                lines.append(node.lineno)
    return lines


def test_branch_finder_sees_a_planted_branch():
    assert name_branches('if model.backend.name == "numpy":\n    pass\nx = be.name != "cuda"\n') == [1, 3]


def test_no_branch_on_a_backends_name_outside_backends():
    found = {str(path.relative_to(ROOT)): name_branches(path.read_text(encoding="utf-8"))
             for path in (ROOT / "xpnet").rglob("*.py")}
    assert {path: lines for path, lines in found.items() if lines} == {}
