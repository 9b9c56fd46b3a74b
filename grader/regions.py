"""Solution regions in the master sources, and the stubs that replace them in the student edition.

    # BEGIN EXERCISE 4.1          a region: replaced by a stub that raises NotImplementedError
    ...solution...
    # END EXERCISE 4.1
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from . import GraderError
from .exercises import exercises

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN EXERCISE (?P<id>\d+\.\d+)\s*$")
END = re.compile(r"^\s*# END EXERCISE (?P<id>\d+\.\d+)\s*$")
SOURCE_DIRS = ("shared", "stages")  # where regions may live


class RegionError(GraderError):
    """A solution region is malformed: unclosed, nested, or naming an unknown exercise."""


@dataclass(frozen=True)
class Region:
    path: Path
    exercise: str
    start: int  # line index of BEGIN
    end: int  # line index of END
    solution: tuple[str, ...]  # the lines between


def find_regions(path: Path) -> list[Region]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    regions, open_at, known = [], None, exercises()
    for i, line in enumerate(lines):
        if m := BEGIN.match(line):
            if open_at is not None:
                raise RegionError(f"{path}:{i + 1}: exercise {m['id']} begins inside another region")
            if m["id"] not in known:
                raise RegionError(f"{path}:{i + 1}: unknown exercise {m['id']}")
            open_at = (i, m["id"])
        elif m := END.match(line):
            if open_at is None or open_at[1] != m["id"]:
                raise RegionError(f"{path}:{i + 1}: END EXERCISE {m['id']} without its BEGIN")
            regions.append(Region(Path(path), m["id"], open_at[0], i, tuple(lines[open_at[0] + 1:i])))
            open_at = None
    if open_at is not None:
        raise RegionError(f"{path}:{open_at[0] + 1}: exercise {open_at[1]} is never closed")
    return regions


def stub(exercise_id: str, indent: str, solution: list[str] = ()) -> list[str]:
    """The exercise's task as comments, then code that raises NotImplementedError naming it; a
    setting at module level (stage 6's CONFIG) becomes a NotDone, so that its module still imports."""
    ex = exercises()[exercise_id]
    message = f"exercise {ex.id} ({ex.title}) is not done yet"
    names = [] if indent else setting_names(solution)
    settings = [f'{name} = NotDone("{message}")' for name in names]
    code = (["from makemore_wavenet.shared.errors import NotDone", *settings] if names
            else [f'{indent}raise NotImplementedError("{message}")'])
    return [f"{indent}# EXERCISE {ex.id}: {ex.title}", *(f"{indent}# {line}" for line in textwrap.wrap(ex.task, 90)),
            *code]


def setting_names(solution) -> list[str]:
    """The names a solution assigns, when it is nothing but assignments to names (a setting); else []."""
    try:
        body = ast.parse("\n".join(solution)).body
    except SyntaxError:
        return []
    if not body or not all(isinstance(node, (ast.Assign, ast.AnnAssign)) for node in body):
        return []
    targets = [t for node in body for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
    return [t.id for t in targets] if all(isinstance(t, ast.Name) for t in targets) else []


def student_text(text: str, done: frozenset[str] = frozenset()) -> str:
    """A file's text as the student edition has it: every region stubbed, but the exercises in
    `done`, whose solutions stay (a student who has done those; the tests use it)."""
    out, region, solution = [], None, []
    for line in text.splitlines():
        if (m := BEGIN.match(line)) and m["id"] not in done:
            region, solution = m, []
        elif region is not None and END.match(line):
            out.extend(stub(region["id"], region["indent"], solution))
            region = None
        elif region is not None:
            solution.append(line)
        elif not (BEGIN.match(line) or END.match(line)):
            out.append(line)
    return "\n".join(out) + "\n"


def source_files(root: Path) -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (Path(root) / d).rglob("*.py"))


def all_regions(root: Path) -> list[Region]:
    return [r for p in source_files(root) for r in find_regions(p)]
