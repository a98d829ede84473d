"""The shape of the package, checked: rooms that import one way, modules of one idea each.

The rooms and their order are those of the README's layout section and ``../shared/STYLE.md``:
a module may import its own room and the rooms of lower layers, never a higher one, and rooms of
one layer never import each other both ways. The checks read the source (every ``import``,
including those inside functions and under ``TYPE_CHECKING``), so they hold for lazy imports too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "crossent"

# Lowest first. Each room is a top-level module or package of crossent.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "version files extras tolerance lazy failures checksums hardware",
        "kernels",
        "losses nn",
        "metrics distributed uncertainty",
        "models",
        "data",
        "evaluation scoring comparison explain training bench sampling",
        "hf lm_eval",
        "report",
        "cli __main__",
    )
)
LAYER_OF = {room: depth for depth, layer in enumerate(LAYERS) for room in layer}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "crossent"


def _imports(path: Path) -> set[str]:
    """Every crossent module ``path`` imports, resolved to the modules that exist."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name.startswith("crossent") and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("crossent"):
                found.add(name)
    return found


def test_every_room_has_a_layer() -> None:
    rooms = {_room(module) for module in MODULES} - {"crossent"}
    assert rooms <= set(LAYER_OF), f"rooms missing from LAYERS: {sorted(rooms - set(LAYER_OF))}"


def test_rooms_import_only_rooms_below_them() -> None:
    wrong = []
    for module, path in MODULES.items():
        room = _room(module)
        if room == "crossent":
            continue
        for imported in _imports(path):
            other = _room(imported)
            # The root package is a lazy hub (the version, and names loaded on first use).
            if other in (room, "crossent"):
                continue
            if LAYER_OF[other] > LAYER_OF[room]:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(sorted(wrong))


def test_no_two_rooms_import_each_other() -> None:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        for imported in _imports(path):
            if _room(imported) != _room(module):
                edges.setdefault(_room(module), set()).add(_room(imported))
    both_ways = {
        tuple(sorted((a, b)))
        for a, targets in edges.items()
        for b in targets
        if a in edges.get(b, ())
    }
    assert not both_ways


def test_no_import_cycles_between_modules() -> None:
    edges = {module: _imports(path) - {module} for module, path in MODULES.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of ideas.
    for module in edges:
        edges[module] = {t for t in edges[module] if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_modules_hold_one_idea() -> None:
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{module}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # The body from its first statement: a long docstring is no second idea.
                documented = ast.get_docstring(node) is not None and len(node.body) > 1
                body = node.body[1:] if documented else node.body
                length = (node.end_lineno or node.lineno) - body[0].lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name}: {length} lines")
    assert not long_modules, "\n".join(long_modules)
    assert not long_functions, "\n".join(long_functions)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--version"],
        ["eval", "--help"],
        ["compare", "--help"],
        ["train", "--help"],
        ["explain", "--help"],
        ["bench", "--help"],
        ["sample", "--help"],
        ["lm-eval", "--help"],
        ["sample", "--temperature", "-1"],
        ["sample", "--top-p", "1.5"],
        ["eval", "--window", "0"],
        ["eval", "--window", "8", "--stride", "9"],
        ["eval", "--report", "report.txt"],
        ["eval", "--per-token", "tokens.txt"],
        ["compare", "--model", "a"],
        ["explain", "--probs", "0.5,0.5"],
        ["explain", "--stability", "--probs", "0.5,0.5"],
        ["explain", "a text", "--probs", "1"],
    ],
)
def test_the_command_line_answers_without_heavy_imports(arguments: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crossent", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 2), done.stderr[-2000:]
    if done.returncode == 2:  # an argument error: one line, naming the problem
        assert [line for line in done.stderr.splitlines() if "|" not in line][-1].startswith(
            "crossent"
        )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    heavy = imported & {"torch", "transformers", "matplotlib", "tqdm", "numpy"}
    assert not heavy, f"crossent {' '.join(arguments)} imported {sorted(heavy)}"
