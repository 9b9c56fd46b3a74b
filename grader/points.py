"""Points: what each row of a report is worth, spread evenly over the checks the grading ran in it.

A row is an exercise ("1.2") or a stage's own ("stage 4": its configuration, initial scale and loss
checks; stage 6's is its exercise's row, "6.1"). Every row is worth `default` points (1) unless the
instructor's TOML file says otherwise:

    default = 1          # every row not named below
    "1.2" = 2
    "stage 4" = 3        # stage 4's model and loss checks

The points go into each CheckResult when a grading ends (`assign`), so that a report carries its
own: its score is the same in the terminal, its JSON, Gradescope's results.json and the gradebook.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from . import GraderError
from .exercises import exercises

DEFAULT = 1.0


@dataclass(frozen=True)
class Points:
    default: float = DEFAULT
    rows: dict[str, float] = field(default_factory=dict)  # row -> its points, where not the default

    def of(self, row: str) -> float:
        return self.rows.get(row, self.default)

    @classmethod
    def load(cls, path: str | Path) -> Points:
        """The points of an instructor's TOML file; a GraderError says what in it is wrong."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise GraderError(f"cannot read the points file {path}: {err}") from None
        default = data.pop("default", DEFAULT)
        known = set(rows())
        for row, value in {"default": default, **data}.items():
            if row != "default" and row not in known:
                raise GraderError(f"the points file {path} names {row!r}, which is no row of a report; "
                                  f"rows: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise GraderError(f"the points file {path} gives {row!r} {value!r}: points are a number, 0 or more")
        return cls(float(default), {row: float(value) for row, value in data.items()})

    def to_dict(self) -> dict:
        return {"default": self.default, **self.rows}

    @classmethod
    def from_dict(cls, data: dict) -> Points:
        return cls(data.get("default", DEFAULT), {row: value for row, value in data.items() if row != "default"})


def rows() -> list[str]:
    """Every row a report can hold: each exercise, each stage's own, and a notebook's whole."""
    from makemore_wavenet.stages import all_stages

    return list(dict.fromkeys([*exercises(), *(s.row for s in all_stages().values()), "notebook", "submission"]))


def assign(results: list, points: Points) -> None:
    """Give each result its share of its row's points: the row's, split evenly over its checks."""
    checks = Counter(r.row for r in results)
    for r in results:
        r.points = points.of(r.row) / checks[r.row]
