"""Write the student edition: the sources with every solution region stubbed, one notebook per
stage, the public checks only. Hidden checks, tests, benchmarks and results stay behind.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from makemore_wavenet.stages import all_stages

from .exercises import challenge_stage, exercises
from .notebook import EDITION_KEY, exercise_targets
from .regions import all_regions, student_text

ROOT = Path(__file__).resolve().parents[1]  # the master checkout
INCLUDE = ["pyproject.toml", "setup.py", "noxfile.py", ".gitignore", "shared", "stages", "grader"]
EXCLUDE = {"hidden", "__pycache__"}  # names never copied (grader/hidden holds the hidden checks)
EDITION_MARKER = Path("shared") / "edition.py"  # the one place that says which edition this is
STUDENT_README = Path(__file__).parent / "edition" / "README.md"
CHALLENGE_HEADER = """# Your challenge entry (stage {stage}): change it, train it (`makemore challenge {file}`), and
# grade it: `python -m makemore_wavenet.grader grade --schedule challenge`. The settings are
# WaveNetConfig's ([model]) and TrainConfig's ([train]); stages/{name}/LESSON.md has the rules.
"""


def release(out: Path, root: Path = ROOT) -> Path:
    """Write the student edition of `root` into `out` (replaced if it exists); returns `out`."""
    out, root = Path(out), Path(root)
    all_regions(root)  # fail early, before writing anything, if a region is malformed
    if out.exists():
        shutil.rmtree(out)
    for name in INCLUDE:
        for src in _files(root / name):
            dest = out / src.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix == ".py":
                dest.write_text(student_text(src.read_text(encoding="utf-8")), encoding="utf-8")
            else:
                shutil.copy2(src, dest)
    marker, master = out / EDITION_MARKER, 'EDITION = "master"\n'
    if (text := marker.read_text(encoding="utf-8")).count(master) != 1:
        raise RuntimeError(f"{EDITION_MARKER} has no one line {master.strip()!r} for the release to rewrite")
    marker.write_text(text.replace(master, 'EDITION = "student"\n'), encoding="utf-8")
    shutil.copy2(STUDENT_README, out / "README.md")
    challenge = challenge_stage()  # a student's first entry: stage 7 as an entry file
    start = (root / "stages" / challenge.name / "entries" / "stage7.toml").read_text(encoding="utf-8")
    header = CHALLENGE_HEADER.format(stage=challenge.number, file=challenge.entry_file, name=challenge.name)
    (out / challenge.entry_file).write_text(header + start, encoding="utf-8")
    (out / "grader" / "edition" / "README.md").unlink()
    targets = out / "grader" / "expected" / "targets.json"
    targets.parent.mkdir(parents=True, exist_ok=True)
    targets.write_text(json.dumps(exercise_targets(root), indent=1), encoding="utf-8")
    for stage in sorted({ex.stage for ex in exercises().values()}):
        path = out / "notebooks" / f"stage{stage}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(stage_notebook(stage, root), path)
    return out


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not EXCLUDE & set(p.relative_to(path).parts))


def stage_notebook(stage: int, root: Path = ROOT) -> nbformat.NotebookNode:
    """The lesson as Markdown, the imports, then each exercise: its task and the code to complete."""
    package = root / "stages" / all_stages()[stage].name
    cells = [new_markdown_cell((package / "LESSON.md").read_text(encoding="utf-8"))]
    snippets, imports = [], []
    for ex in all_stages()[stage].exercises:
        for region in (r for r in all_regions(root) if r.exercise == ex.id):
            module = student_text(region.path.read_text(encoding="utf-8"))
            imports += [line for line in _setup_lines(module, region.path, root) if line not in imports]
            snippets.append((ex, _enclosing_definition(module, ex.id)))
    cells.append(new_code_cell("\n".join(imports)))
    seen = set()
    for ex, code in snippets:
        if ex.id not in seen:
            cells.append(new_markdown_cell(f"## Exercise {ex.id}: {ex.title}\n\n{ex.task}"))
        if code not in seen:  # two regions of one class give one cell
            cells.append(new_code_cell(code))
        seen |= {ex.id, code}
    cells.append(new_markdown_cell(f"When the exercises are done, check them: `nox -s grade` (or "
                                   f"`python -m makemore_wavenet.grader grade notebooks/stage{stage}.ipynb`)."))
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}, EDITION_KEY: {"stage": stage}})


def _setup_lines(module: str, path: Path, root: Path) -> list[str]:
    """Imports that give a notebook what the module's exercise code uses: the module's own imports,
    made absolute, and everything the module defines (unless its stub is at module level)."""
    package = ".".join(("makemore_wavenet",) + path.relative_to(root).parent.parts)
    lines = []
    for node in ast.parse(module).body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(p for p in (base, node.module) if p)
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
            lines.append(f"from {source} import {names}")
        elif isinstance(node, ast.Import):
            lines.append(ast.get_source_segment(module, node))
        elif isinstance(node, ast.Raise):  # a module-level stub: importing the module would raise
            return lines
    return lines + [f"from {package}.{path.stem} import *"]


def _enclosing_definition(module: str, exercise_id: str) -> str:
    """The top-level class, function or statement that holds the exercise's stub."""
    lines = module.splitlines()
    stub_line = next(i for i, line in enumerate(lines, 1) if line.strip().startswith(f"# EXERCISE {exercise_id}:"))
    for node in ast.parse(module).body:
        start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
        if start <= stub_line <= node.end_lineno:
            return "\n".join(lines[start - 1:node.end_lineno])
    # a module-level stub (a statement, not inside a definition): the stub's own lines, its task's
    # comments and its raise, or a setting's NotDone (regions.stub)
    end = stub_line
    while end < len(lines) and (lines[end].startswith(("#", "raise ", "from makemore_wavenet.shared.errors import"))
                                or "= NotDone(" in lines[end]):
        end += 1
    return "\n".join(lines[stub_line - 1:end])
