"""The package's shape: no import cycles among the project's modules (lazy imports inside
functions count too: they hide a cycle, they do not remove it), and the library never imports
the UI."""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("began_core", "app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
            named = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in named if t in modules]
            targets += [base] if len(targets) < len(named) else []
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` -> the deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a -> b -> ... -> a, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_the_imports_it_should():
    graph = import_graph()
    assert (
        "began_core.equilibrium" in graph["began_core.training.step"]
    )  # from .equilibrium import ...
    assert graph["began_core.training.train"] >= {
        "began_core",
        "began_core.training.distributed",
    }  # __version__
    assert "began_core.runs.launch" in graph["app.views.train"]  # from began_core import launch
    assert "began_core.data.builtin_data" in graph["began_core.data.sources"]


def test_the_cycle_finder_finds_lazy_and_long_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    modules = {"pkg": Path("x"), "pkg.a": Path("y"), "pkg.b": Path("z")}
    lazy = "def f():\n    from . import b\n"
    tmp = ROOT / "tests" / ".layering_probe.py"
    try:
        tmp.write_text(lazy)
        assert imports_of("pkg.a", tmp, modules) == {"pkg.b"}
    finally:
        tmp.unlink()


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_library_never_imports_the_ui():
    offenders = {
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.split(".")[0] == "began_core"
        for target in targets
        if target.split(".")[0] == "app"
    }
    assert not offenders


# The library's layers: each subpackage of began_core and the subpackages it may import. The
# top-level modules (the paper's math in equilibrium.py, config.py, flags.py, presets.py,
# faults.py and the package itself) may be imported by all and import no subpackage. The table
# is a DAG whose order is the architecture: networks and data at the bottom, the command line
# on top.
ALLOWED = {
    "nn": set(),
    "data": set(),
    "classroom": set(),
    "runs": {"data"},
    "checkpoints": {"nn", "runs"},
    "explore": {"nn", "checkpoints"},
    "evaluation": {"nn", "data", "runs", "checkpoints"},
    "training": {"nn", "data", "runs", "checkpoints", "evaluation"},
    "publish": {"nn", "data", "runs", "checkpoints", "evaluation", "training"},
    "cli": {"nn", "data", "runs", "checkpoints", "evaluation", "training", "publish"},
}
TOP = {"began_core", "began_core.__main__", "began_core.config", "began_core.equilibrium"}
TOP |= {"began_core.flags", "began_core.presets", "began_core.faults", "began_core.atomic"}


def layer(module: str) -> str:
    """'began_core.training.step' -> 'training'; a top-level module -> its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else module


def test_every_subpackage_is_in_the_table_and_says_what_it_owns():
    found = {p.parent.name for p in (ROOT / "began_core").glob("*/__init__.py")}
    assert found == set(ALLOWED)
    for name in found:
        doc = ast.get_docstring(ast.parse((ROOT / "began_core" / name / "__init__.py").read_text()))
        assert doc and len(doc.splitlines()) == 1, name
    top = {module_name(p) for p in (ROOT / "began_core").glob("*.py")}
    assert top == TOP


def test_the_table_is_layered():
    assert find_cycle({k: set(v) for k, v in ALLOWED.items()}) is None


def test_subpackages_import_only_what_the_table_allows():
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.startswith("began_core.") and layer(name) in ALLOWED
        for target in targets
        if target.startswith("began_core")
        and layer(target) in ALLOWED
        and layer(target) != layer(name)
        and layer(target) not in ALLOWED[layer(name)]
    )
    assert not offenders


def test_top_level_modules_import_no_subpackage():
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name in TOP - {"began_core.__main__"}
        for target in targets
        if layer(target) in ALLOWED
    )
    assert not offenders


# Where the code of this checkout finds itself: installed (`pip install -e .`), or run from
# the repository root (`python -m`), never by editing the import path. The one exception is
# the dashboard's script: `streamlit run app/main.py` puts app/ on the path, not the root, and
# the Space installs requirements.txt without the checkout, so the script adds the root itself.
PATH_CALLS = {"sys.path.insert", "sys.path.append", "sys.path.extend", "site.addsitedir"}
MAY_EDIT_THE_PATH = {"app/main.py"}


def edits_the_import_path(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        return ast.unparse(node.func) in PATH_CALLS
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(
            ast.unparse(t).startswith("sys.path") or "PYTHONPATH" in ast.unparse(t) for t in targets
        )
    return False


def test_the_path_check_sees_each_way_of_editing_the_path():
    for code in ("sys.path.insert(0, 'x')", "sys.path += ['x']", "os.environ['PYTHONPATH'] = 'x'"):
        assert any(edits_the_import_path(n) for n in ast.walk(ast.parse(code))), code
    assert not any(edits_the_import_path(n) for n in ast.walk(ast.parse("x = sys.path[0]")))


def test_nothing_edits_the_import_path_but_the_dashboard_script():
    found = {
        path.relative_to(ROOT).as_posix()
        for folder in ("began_core", "app", "scripts", "bench", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if any(map(edits_the_import_path, ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    }
    assert found == MAY_EDIT_THE_PATH
