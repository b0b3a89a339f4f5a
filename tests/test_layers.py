"""Imports flow one way through the layers of src/trainlab (config -> data -> engines -> runs ->
report / studies -> api -> cli), none going back up, and no module-level import circle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Each top-level module or package of trainlab, by layer: a module may import its own layer
# and the layers below at run time; an import of a higher layer is allowed only for type hints.
LAYERS: dict[str, int] = {
    # 0: no trainlab imports above these (errors, files, names, console, monitor warnings)
    **dict.fromkeys(("errors", "io", "names", "progress", "monitoring"), 0),
    "config": 1,
    **dict.fromkeys(("data", "schedules", "diagnostics"), 2),
    **dict.fromkeys(("engines", "custom_model"), 3),
    **dict.fromkeys(("run_files", "runs", "callbacks"), 4),
    **dict.fromkeys(("predict_files", "predict", "export", "parity"), 5),
    **dict.fromkeys(("report", "studies"), 6),
    **dict.fromkeys(("pipeline", "run_extension", "trained", "gradcheck_run"), 7),
    # lr_find trains its sweep through api.run, as a user's script would
    **dict.fromkeys(("api", "lr_find"), 8),
    **dict.fromkeys(("cli", "cli_common", "cli_study", "cli_checks", "cli_source", "cli_export", "cli_data"), 9),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "trainlab").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {sub.lineno for sub in ast.walk(node) if hasattr(sub, "lineno")}
    return lines


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported trainlab module, line, at module level) of the run-time imports of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hints = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            targets = [module]
            if module == "trainlab":  # `from trainlab import api` imports the module trainlab.api
                targets += [f"trainlab.{alias.name}" for alias in node.names if alias.name in LAYERS]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            if target.startswith("trainlab") and node.lineno not in hints:
                found.append((target, node.lineno, id(node) in top_level))
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def test_every_module_has_a_layer() -> None:
    tops = {name.split(".")[1] for name in _modules() if "." in name}
    assert tops <= set(LAYERS), f"give these a layer: {sorted(tops - set(LAYERS))}"


def test_no_import_goes_back_up() -> None:
    # The package's own __init__ is the facade that offers api's names (imported on first use).
    upward = [f"{name}:{line} imports {target}" for name, path in _modules().items() if name != "trainlab"
              for target, line, _ in _imports(name, path) if _layer(target) > _layer(name)]
    assert not upward, "\n".join(upward)


def test_no_module_level_import_circle() -> None:
    modules = _modules()
    graph = {name: {t for t, _, top in _imports(name, path) if top and t in modules and t != name}
             for name, path in modules.items()}
    # A package's __init__ importing its own modules is how a package exports them: not a circle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name in modules and t.startswith(name + "."))}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)
