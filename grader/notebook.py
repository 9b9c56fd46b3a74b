"""Notebook submissions: what a notebook defines, and how its definitions replace the package's.

Two styles are graded. A student-edition notebook (stageN.ipynb) redefines the stage's exercise
classes and functions; a notebook in the lecture's own style defines its layer classes, a `model`
and a training loop at top level. Either way the child executes the code cells top to bottom
(IPython magics stripped), then every name the notebook defines that an exercise targets replaces
the package's object, everywhere the package refers to it.

How a notebook runs (`execute`), so that its model is graded as the notebook built it:
- Every top-level statement runs, loops and bare calls included (`random.shuffle(words)`,
  `torch.manual_seed(42)`, `for layer in model.layers: layer.training = False`, plots), except
  the ones that train: a statement that calls `.backward(`, or calls (by name or as a method) a
  function the notebook defines that does. The grader trains the model with its own schedule.
- A statement that raises is noted and the rest still run: later cells rarely need the broken one.
- The graded `model` is a copy taken at the end of the last cell that assigns `model`: what later
  cells do to it (a forward pass on one example in training mode puts NaN in BatchNorm's running
  variance) does not reach the grader.
- Plots draw to no window (matplotlib's Agg backend): `plt.show()` never waits.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import os
import re
import sys
from pathlib import Path

import nbformat

from makemore_wavenet.shared.edition import is_student

from . import GraderError
from .regions import BEGIN, source_files

ROOT = Path(__file__).resolve().parents[1]
MAGIC = re.compile(r"^\s*[%!]")
EDITION_KEY = "makemore_wavenet"  # an edition notebook's metadata: {"stage": N}


class NotebookError(GraderError):
    """The file is not a readable notebook."""


def code_cells(path: str | Path) -> list[str]:
    """The code cells' sources, IPython magics and shell escapes removed."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as err:  # not JSON, not a notebook, a newer format
        raise NotebookError(f"{path} is not a readable notebook: {type(err).__name__}: {err}") from err
    cells = []
    for i, cell in enumerate(nb.get("cells") or [], 1):
        source = cell.get("source") if isinstance(cell, dict) else None
        if not isinstance(source, str):
            raise NotebookError(f"{path} is not a readable notebook: cell {i}'s source is {type(source).__name__}, "
                                "not text")
        if cell.get("cell_type") != "code" or source.lstrip().startswith("%%"):
            continue
        cells.append("\n".join("" if MAGIC.match(line) else line for line in source.splitlines()))
    return cells


def parsed_cells(path: str | Path) -> tuple[list[tuple[int, ast.Module]], list[str]]:
    """Each code cell that parses, with its number, and a note for each cell that does not."""
    cells, problems = [], []
    for i, source in enumerate(code_cells(path), 1):
        try:
            cells.append((i, ast.parse(source, filename=f"cell {i}")))
        except SyntaxError as err:
            problems.append(f"code cell {i} does not parse: {err.msg} (line {err.lineno})")
        except (MemoryError, RecursionError, ValueError) as err:  # nested or long beyond what the parser holds
            problems.append(f"code cell {i} does not parse: {type(err).__name__}: {str(err)[:200]}")
    return cells, problems


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def training_functions(trees: list[ast.Module]) -> set[str]:
    """The names of the notebook's functions and methods that train: they call `.backward(`, or
    another function of the notebook that does (`train(model)` calling `step()`)."""
    functions = [node for tree in trees for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    training: set[str] = set()
    while new := {f.name for f in functions if f.name not in training and _calls_training(f, training)}:
        training |= new
    return training


def _calls_training(node: ast.AST, training: set[str]) -> bool:
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if name == "backward" or name in training:
            return True
    return False


def trains(statement: ast.stmt, training: set[str]) -> bool:
    """Is this top-level statement training (the training loop, a `train(...)` call)? A definition
    is not: defining a training function trains nothing."""
    return not isinstance(statement, DEFINITIONS) and _calls_training(statement, training)


def program(path: str | Path) -> tuple[list[ast.Module], list[str]]:
    """The statements to execute, one module per cell (the ones that train left out), and a note
    for each cell that does not parse."""
    cells, problems = parsed_cells(path)
    training = training_functions([tree for _, tree in cells])
    for _, tree in cells:
        tree.body = [s for s in tree.body if not trains(s, training)]
    return [tree for _, tree in cells], problems


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


NOTES = "__grader_notes__"  # execute's notes, also in the namespace: a probe can say why the notebook has no model


def execute(path: str | Path) -> tuple[dict, list[str]]:
    """Run the notebook as the module docstring says, in a fresh namespace; returns the namespace,
    its `model` the copy the grader trains, and the notes: a statement that raised, a training
    statement skipped (read them in the log when a check fails)."""
    os.environ["MPLBACKEND"] = "Agg"  # no window: a plot is drawn and dropped, plt.show() returns at once
    cells, problems = parsed_cells(path)
    training = training_functions([tree for _, tree in cells])
    kept = {i: [s for s in tree.body if not trains(s, training)] for i, tree in cells}
    model_cell = max((i for i, body in kept.items() if any(_assigns(s, "model") for s in body)), default=None)
    namespace, graded = {"__name__": "__main__"}, None
    for i, tree in cells:
        for node in tree.body:
            where = f"cell {i}, line {node.lineno}"
            if trains(node, training):
                problems.append(f"{where}: skipped (it trains; the grader trains the model with its own schedule)")
                continue
            try:
                exec(compile(ast.Module(body=[node], type_ignores=[]), f"<cell {i}>", "exec"), namespace)
            except NotImplementedError as err:
                problems.append(f"{where}: not done: {err}"[:300])
            except Exception as err:
                problems.append(f"{where}: {type(err).__name__}: {err}"[:300])
        if i == model_cell and "model" in namespace:
            try:
                graded = snapshot(namespace["model"])
            except Exception as err:  # something in it does not copy: grade the model as the notebook leaves it
                problems.append(f"the model could not be copied ({type(err).__name__}: {err}); it is graded as "
                                "the whole notebook leaves it"[:300])
    if graded is not None:
        namespace["model"] = graded
    namespace[NOTES] = problems
    return namespace, problems


def _assigns(statement: ast.stmt, name: str) -> bool:
    """Does this top-level statement bind `name` at module level (not inside a definition)?"""
    if isinstance(statement, DEFINITIONS):
        return statement.name == name
    stack = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
            return True
        stack += [child for child in ast.iter_child_nodes(node) if not isinstance(child, DEFINITIONS + (ast.Lambda,))]
    return False


def snapshot(model):
    """A deep copy of `model`. A tensor a forward pass made with autograd on (a layer's `.out`) is
    copied detached: deepcopy takes only the leaves of the autograd graph."""
    import torch

    memo = {id(t): t.detach().clone() for t in _reachable(model) if isinstance(t, torch.Tensor) and t.grad_fn}
    return copy.deepcopy(model, memo)


def _reachable(root) -> list:
    """The objects reachable from `root` through attributes, lists, tuples and dicts (not through
    modules, classes or functions: those are shared, never copied)."""
    seen, stack, found = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
            continue
        seen.add(id(obj))
        found.append(obj)
        if isinstance(obj, dict):
            stack += list(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack += list(obj)
        elif hasattr(obj, "__dict__"):
            stack += list(vars(obj).values())
    return found


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


def given_exercises(path: str | Path) -> frozenset[str]:
    """The exercises the course gives a notebook in the instructor's grading: for the edition's
    stageN.ipynb, the earlier stages' (solved in the package around it, neither graded nor
    counted there: each stage's notebook answers for its own); none for any other notebook."""
    from makemore_wavenet.stages import all_stages

    stage = edition_stage(path)
    if stage is None:
        return frozenset()
    return frozenset(ex.id for s in all_stages().values() if s.number < stage for ex in s.exercises)


def edition_stage(path: str | Path) -> int | None:
    """The stage whose edition notebook this is, if one: its metadata's (EDITION_KEY, which the release
    writes: a notebook renamed for a course's upload keeps it), else its name's (stage4.ipynb: 4)."""
    from makemore_wavenet.stages import all_stages

    try:
        stage = json.loads(Path(path).read_text(encoding="utf-8"))["metadata"][EDITION_KEY]["stage"]
    except (OSError, ValueError, KeyError, TypeError):
        m = re.search(r"stage(\d+)", Path(path).stem)
        stage = int(m.group(1)) if m else None
    return stage if type(stage) is int and stage in all_stages() else None
