"""Notebook submissions: what a notebook defines, and how its definitions replace the package's.

Two styles are graded. A student-edition notebook (stageN.ipynb) redefines the stage's exercise
classes and functions; a notebook in the lecture's own style defines its layer classes, a `model`
and a training loop at top level. Either way the child executes the code cells' top-level
definitions and assignments (IPython magics stripped; top-level loops and bare expressions, such
as the training loop and plots, skipped), then every name the notebook defines that an exercise
targets replaces the package's object, everywhere the package refers to it.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from pathlib import Path

import nbformat

from makemore_wavenet.shared.edition import is_student

from . import GraderError
from .regions import BEGIN, source_files

ROOT = Path(__file__).resolve().parents[1]
MAGIC = re.compile(r"^\s*[%!]")


class NotebookError(GraderError):
    """The file is not a readable notebook."""


def code_cells(path: str | Path) -> list[str]:
    """The code cells' sources, IPython magics and shell escapes removed."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as err:  # not JSON, not a notebook, a newer format
        raise NotebookError(f"{path} is not a readable notebook: {type(err).__name__}: {err}") from err
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith("%%"):
            continue
        cells.append("\n".join("" if MAGIC.match(line) else line for line in cell.source.splitlines()))
    return cells


def program(path: str | Path) -> tuple[list[ast.Module], list[str]]:
    """The statements to execute, one module per cell, and a note for each cell that does not parse."""
    modules, problems = [], []
    for i, source in enumerate(code_cells(path), 1):
        try:
            tree = ast.parse(source, filename=f"cell {i}")
        except SyntaxError as err:
            problems.append(f"code cell {i} does not parse: {err.msg} (line {err.lineno})")
            continue
        tree.body = [s for s in tree.body if not isinstance(s, (ast.For, ast.While, ast.AsyncFor, ast.Expr))]
        modules.append(tree)
    return modules, problems


def defined_names(path: str | Path) -> set[str]:
    names = set()
    for tree in program(path)[0]:
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def literal(path: str | Path, name: str):
    """The value of a top-level `name = <literal>` in the notebook, or None."""
    value = None
    for tree in program(path)[0]:
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return value


SHIPPED_TARGETS = Path(__file__).resolve().parent / "expected" / "targets.json"  # in the student edition


def exercise_targets(root: Path = ROOT) -> dict[str, tuple[str, str]]:
    """exercise id -> (module, top-level name) that holds its solution, read from the master sources
    (the student edition ships this map: a stub at module level does not name what it replaces)."""
    if is_student():
        return {k: tuple(v) for k, v in json.loads(SHIPPED_TARGETS.read_text()).items()}
    targets = {}
    for path in source_files(root):
        text = path.read_text(encoding="utf-8")
        if "EXERCISE" not in text:
            continue
        lines = text.splitlines()
        module = ".".join(("makemore_wavenet",) + path.relative_to(root).with_suffix("").parts)
        for node in ast.parse(text).body:
            span = lines[node.lineno - 1:node.end_lineno]
            for line in span:
                m = BEGIN.match(line) or re.match(r"^\s*# EXERCISE (?P<id>\d+\.\d+):", line)
                if m and m["id"] not in targets:
                    name = node.name if hasattr(node, "name") else node.targets[0].id
                    targets[m["id"]] = (module, name)
        # a module-level region (its BEGIN line is not inside any node): the next assignment
        for i, line in enumerate(lines):
            m = BEGIN.match(line)
            if m and m["id"] not in targets:
                assign = re.match(r"^(\w+)\s*=", lines[i + 1])
                targets[m["id"]] = (module, assign.group(1) if assign else "")
    return targets


def execute(path: str | Path) -> tuple[dict, list[str]]:
    """Run the notebook's kept statements in a fresh namespace; a statement that raises is noted
    and the rest still run (a notebook's later cells often do not need the broken one)."""
    modules, problems = program(path)
    namespace = {"__name__": "__main__"}
    for tree in modules:
        for node in tree.body:
            code = compile(ast.Module(body=[node], type_ignores=[]), "<notebook>", "exec")
            try:
                exec(code, namespace)
            except NotImplementedError as err:
                problems.append(f"not done: {err}")
            except Exception as err:
                problems.append(f"line {node.lineno}: {type(err).__name__}: {err}"[:300])
    return namespace, problems


def overlay(namespace: dict, targets: dict[str, tuple[str, str]], defined: set[str]) -> list[str]:
    """Put the notebook's own definitions (`defined`: not what it imported) in place of the
    package's; returns the exercises covered."""
    from importlib import import_module

    from makemore_wavenet.shared.layers import Module

    covered = []
    for exercise, (module_name, name) in targets.items():
        if name not in defined or name not in namespace:  # a star import's CONFIG is not exercise 6.1's
            continue
        old = getattr(import_module(module_name), name, None)
        new = namespace[name]
        if inspect.isclass(new) and not issubclass(new, Module):
            new = _adapt(new)
        elif inspect.isfunction(new) and inspect.isfunction(old):
            new = _adapt_function(new, old)
        for mod in [m for n, m in sys.modules.items() if n.startswith("makemore_wavenet.") and m is not None]:
            for attr, value in list(vars(mod).items()):
                if value is old or (attr == name and mod.__name__ == module_name):
                    setattr(mod, attr, new)
        covered.append(exercise)
    return covered


def _adapt(cls: type) -> type:
    """A layer class in the lecture's style, given what the package's code expects of a layer:
    device/dtype arguments (tensors moved after construction), unknown keyword arguments dropped
    (reduce_time), and train()/eval()/modules() from our Module."""
    from makemore_wavenet.shared.layers import Module

    accepted = inspect.signature(cls.__init__).parameters

    class Adapted(cls, Module):
        def __init__(self, *args, device=None, dtype=None, **kwargs):
            super().__init__(*args, **{k: v for k, v in kwargs.items() if k in accepted})
            for attr, value in vars(self).items():
                if hasattr(value, "to") and hasattr(value, "dtype") and value.dtype.is_floating_point:
                    setattr(self, attr, value.to(device=device, dtype=dtype or value.dtype))

        def children(self):
            return list(getattr(self, "layers", []))

    Adapted.__name__ = Adapted.__qualname__ = cls.__name__
    Adapted.accepts_reduce_time = "reduce_time" in accepted
    return Adapted


def _adapt_function(fn, reference):
    """A lecture-style function that reads a setting from the notebook's globals instead of taking it
    as an argument (`build_dataset(words)` reads `block_size`): called with the package's
    signature, the missing arguments are set as the notebook's globals first."""
    ours, theirs = inspect.signature(reference), inspect.signature(fn).parameters
    missing = [p for p in ours.parameters if p not in theirs]
    if not missing:
        return fn

    def adapted(*args, **kwargs):
        bound = ours.bind(*args, **kwargs)
        bound.apply_defaults()
        saved = {p: fn.__globals__[p] for p in missing if p in fn.__globals__}
        fn.__globals__.update({p: bound.arguments[p] for p in missing})
        try:
            return fn(**{p: bound.arguments[p] for p in theirs if p in bound.arguments})
        finally:
            fn.__globals__.update(saved)

    return adapted


def accepts(path: str | Path, class_name: str, parameter: str) -> bool:
    """Does the notebook's class `class_name` take `parameter` in its __init__?"""
    for tree in program(path)[0]:
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        return parameter in {a.arg for a in item.args.args + item.args.kwonlyargs}
    return True


def stage_from_name(path: str | Path) -> int | None:
    """The stage a notebook's name says it is (stage4.ipynb: 4), if there is such a stage."""
    from makemore_wavenet.stages import all_stages

    m = re.search(r"stage(\d+)", Path(path).stem)
    return int(m.group(1)) if m and int(m.group(1)) in all_stages() else None
