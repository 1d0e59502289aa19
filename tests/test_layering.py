"""The package's imports point down its layers and never go round in a circle.

Every module of `keras_albert` is read with `ast` (nothing is imported): `import x`, `from x import y` and relative
imports, at module level and inside functions alike, and `importlib.import_module` called with a constant module
name or with an entry of a module-level table of module names (a lazy `__init__`'s `_LAZY`). A name imported
from a package (`from keras_albert.models import huggingface`) counts as an import of the submodule when one by that
name exists, else of the package.

Layers, bottom to top (`RANKS`): 0 `errors`, `io`, `version`, `signals`; 1 `data`, `optimizers`, `distribute`;
2 `models`; 3 `training`; 4 `commands`, `cli`, `sagemaker`, `quickstart`. The rules:
- a module never imports a module of a higher rank, even inside a function;
- sideways, between top-level packages of the same rank: allowed at ranks 0 and 4 (`io` raises `errors`;
  `quickstart` drives `cli`, a SageMaker entry point runs commands), forbidden at rank 1: `data`, `optimizers` and
  `distribute` are independent of each other (none imports another today), so that a model is the first place
  where they meet. Ranks 2 and 3 hold one package each, whose modules import each other freely, circles aside;
- no circle between modules. A package's `__init__` importing its own children (re-exports) is not an edge of the
  circle search: a child importing a name from its package's `__init__` is no circle. Any other loop is, function-level
  imports included: they only hide it until the functions run;
- every module belongs to a layer, and every `keras_albert` import names a module that exists.
The package root `keras_albert/__init__.py` (the lazy public API, which reaches every layer) is exempt as an importer;
as a target it ranks with the commands: inside the package, import a name from the module that defines it. The
strings of `cli.py`'s command table are not imports (the table is read at run time).
"""

import ast
import importlib.machinery
import os
import textwrap

import pytest

import keras_albert

RANKS = {
    "keras_albert.errors": 0,
    "keras_albert.io": 0,
    "keras_albert.version": 0,
    "keras_albert.signals": 0,
    "keras_albert.data": 1,
    "keras_albert.optimizers": 1,
    "keras_albert.distribute": 1,
    "keras_albert.models": 2,
    "keras_albert.training": 3,
    "keras_albert.commands": 4,
    "keras_albert.cli": 4,
    "keras_albert.sagemaker": 4,
    "keras_albert.quickstart": 4,
}
SIDEWAYS_ALLOWED = {0, 2, 3, 4}


# ---------------------------------------------------------------------------------------------- the checker


def discover_modules(package_dir, package):
    """{module name: (file path, is a package __init__)} for every module under `package_dir`."""
    extensions = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    modules = {}
    for directory, subdirectories, files in os.walk(package_dir):
        subdirectories[:] = sorted(d for d in subdirectories if d.isidentifier())
        relative = os.path.relpath(directory, package_dir)
        parts = [package] + ([] if relative == "." else relative.split(os.sep))
        if "__init__.py" in files:
            modules[".".join(parts)] = (os.path.join(directory, "__init__.py"), True)
        elif any(name.endswith(".py") for name in files):
            modules[".".join(parts)] = (None, True)  # a namespace package
        else:
            subdirectories[:] = []  # data (a corpus, fixtures), not code
            continue
        for name in sorted(files):
            path = os.path.join(directory, name)
            if name.endswith(".py") and name != "__init__.py":
                modules[".".join(parts + [name[:-3]])] = (path, False)
            elif name.endswith(extensions):
                stem = name[: -len(next(s for s in extensions if name.endswith(s)))]
                modules[".".join(parts + [stem])] = (None, False)
    return modules


def _string_tables(tree):
    """Module-level `NAME = {key: "module.name", ...}` dicts whose values are all strings."""
    tables = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            values = node.value.values
            if values and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        tables[target.id] = [v.value for v in values]
    return tables


def _import_module_names(call, tables):
    function = call.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    if name not in ("import_module", "__import__") or not call.args:
        return []
    argument = call.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return [argument.value]
    if isinstance(argument, ast.Subscript) and isinstance(argument.value, ast.Name):
        return tables.get(argument.value.id, [])
    return []


def module_imports(module, path, is_package, modules, package):
    """[(line, target module or None, text as written)] for every import of a `package` module in `module`."""
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read(), filename=path)
    own_package = module if is_package else module.rpartition(".")[0]
    tables = _string_tables(tree)
    found = []

    def add(line, name, text):
        entry = (line, name if name in modules else None, text)
        if (name == package or name.startswith(package + ".")) and entry not in found:
            found.append(entry)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node.lineno, alias.name, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            text = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            if not (source == package or source.startswith(package + ".")):
                continue
            if source not in modules:
                add(node.lineno, source, text)
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                add(node.lineno, child if child in modules else source, text)
        elif isinstance(node, ast.Call):
            for name in _import_module_names(node, tables):
                add(node.lineno, name, f"import_module({name!r})")
    return sorted(found, key=lambda entry: entry[0])


def rank_of(module, ranks):
    """The rank of the longest entry of `ranks` that is `module` or a package above it; None when unranked."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in ranks:
            return prefix, ranks[prefix]
    return None, None


def _find_cycles(graph):
    """One cycle per strongly connected component of more than one module (or a module importing itself)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def connect(start):
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, {})))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)

    cycles = []
    for component in components:
        start = min(component)
        if len(component) == 1 and start not in graph.get(start, {}):
            continue
        # Shortest path from `start` back to itself inside the component (breadth first).
        previous = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for successor in sorted(graph.get(node, {})):
                    if successor in component and successor not in previous:
                        previous[successor] = node
                        following.append(successor)
            frontier = following
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        cycles.append(list(reversed(path)))
    return cycles


def find_violations(package_dir, package, ranks, sideways_allowed, exempt=None):
    """Every broken layering rule of the package at `package_dir`, one line each, naming file:line -> target."""
    exempt = {package} if exempt is None else exempt
    modules = discover_modules(package_dir, package)
    root = os.path.dirname(os.path.abspath(package_dir))
    problems = []
    graph = {}
    for module, (path, is_package) in sorted(modules.items()):
        if path is None:
            continue
        where = os.path.relpath(path, root)
        if module not in exempt and rank_of(module, ranks)[1] is None:
            problems.append(f"{where}: module {module} belongs to no layer (add it to RANKS in {__name__})")
        for line, target, text in module_imports(module, path, is_package, modules, package):
            if target is None:
                problems.append(f"{where}:{line} -> {text}: no such module in {package}")
                continue
            if module in exempt or target == module:
                continue
            edges = graph.setdefault(module, {})
            if not (is_package and target.startswith(module + ".")):
                edges.setdefault(target, f"{where}:{line}")
            source_layer, source_rank = rank_of(module, ranks)
            target_layer, target_rank = (package, max(ranks.values())) if target == package else rank_of(target, ranks)
            if source_rank is None or target_rank is None:
                continue
            if target_rank > source_rank:
                problems.append(
                    f"{where}:{line} -> {target}: upward import (rank {source_rank} {source_layer} imports rank "
                    f"{target_rank} {target_layer})"
                )
            elif (
                target_rank == source_rank
                and source_rank not in sideways_allowed
                and source_layer != target_layer
            ):
                problems.append(
                    f"{where}:{line} -> {target}: sideways import between rank-{source_rank} layers "
                    f"{source_layer} and {target_layer}"
                )
    for cycle in _find_cycles(graph):
        steps = " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        problems.append(f"import circle: {steps} -> {cycle[-1]}")
    return problems


# ---------------------------------------------------------------------------------------------- the tests


def test_keras_albert_imports_point_down_and_never_circle():
    package_dir = os.path.dirname(keras_albert.__file__)
    problems = find_violations(package_dir, "keras_albert", RANKS, SIDEWAYS_ALLOWED)
    assert not problems, f"{len(problems)} layering violation(s):\n" + "\n".join(problems)


def _write_package(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


FAKE_RANKS = {"fake.low": 0, "fake.mid": 1, "fake.side": 1, "fake.top": 2}


@pytest.fixture
def fake_package(tmp_path):
    _write_package(
        tmp_path,
        {
            "fake/__init__.py": "import importlib\n\ndef load():\n    return importlib.import_module('fake.top')\n",
            "fake/low.py": "X = 1\n",
            "fake/mid/__init__.py": "from fake.mid.a import A\nfrom . import b\n",
            "fake/mid/a.py": "from fake import low\nfrom fake.mid import b\n\nA = 1\n",
            "fake/mid/b.py": "from fake.mid import A  # from the package's __init__: no circle\n",
            "fake/side.py": "X = 1\n",
            "fake/top.py": "from fake.mid import a\nfrom . import low\n",
        },
    )
    return tmp_path / "fake"


def test_checker_passes_a_clean_package(fake_package):
    assert find_violations(str(fake_package), "fake", FAKE_RANKS, sideways_allowed={0, 2}) == []


def test_checker_finds_a_circle_through_function_level_imports(fake_package):
    (fake_package / "mid" / "b.py").write_text(
        "def later():\n    from ..mid.c import C  # relative, inside a function\n    return C\n"
    )
    (fake_package / "mid" / "c.py").write_text("import fake.mid.a\n\nC = 1\n")
    problems = find_violations(str(fake_package), "fake", FAKE_RANKS, sideways_allowed={0, 2})
    assert problems == [
        "import circle: fake.mid.a (fake/mid/a.py:2) -> fake.mid.b (fake/mid/b.py:2) -> fake.mid.c (fake/mid/c.py:1) "
        "-> fake.mid.a"
    ]


def test_checker_finds_upward_sideways_and_broken_imports(fake_package):
    (fake_package / "low.py").write_text(
        "import importlib\n\ndef f():\n    return importlib.import_module('fake.mid.a')\n"
    )
    (fake_package / "side.py").write_text("from fake.mid import a\nimport fake.gone\n")
    (fake_package / "stray.py").write_text("X = 1\n")
    problems = find_violations(str(fake_package), "fake", FAKE_RANKS, sideways_allowed={0, 2})
    assert problems == [
        "fake/low.py:4 -> fake.mid.a: upward import (rank 0 fake.low imports rank 1 fake.mid)",
        "fake/side.py:1 -> fake.mid.a: sideways import between rank-1 layers fake.side and fake.mid",
        "fake/side.py:2 -> import fake.gone: no such module in fake",
        f"fake/stray.py: module fake.stray belongs to no layer (add it to RANKS in {__name__})",
        "import circle: fake.low (fake/low.py:4) -> fake.mid.a (fake/mid/a.py:1) -> fake.low",
    ]


def test_checker_reads_lazy_module_tables(fake_package):
    (fake_package / "low.py").write_text(
        "import importlib\n\n_LAZY = {'A': 'fake.top'}\n\ndef get(name):\n"
        "    return importlib.import_module(_LAZY[name])\n"
    )
    (fake_package / "side.py").write_text("def f():\n    import fake.side.x\n")
    problems = find_violations(str(fake_package), "fake", FAKE_RANKS, sideways_allowed={0, 2})
    assert problems == [
        "fake/low.py:6 -> fake.top: upward import (rank 0 fake.low imports rank 2 fake.top)",
        "fake/side.py:2 -> import fake.side.x: no such module in fake",
        "import circle: fake.low (fake/low.py:6) -> fake.top (fake/top.py:2) -> fake.low",
    ]
