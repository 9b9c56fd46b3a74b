"""A grading report: every check's result, the score, a table for people and JSON for machines.

A report is the instructor's record, whole; what goes back to a student is `for_student()`'s copy."""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tabulate import tabulate

from .exercises import exercises

STATUSES = ("pass", "fail", "not done", "waiting", "error", "timeout")  # waiting: on an exercise not done
# an exercise shows its most telling check: unfinished work first, then breakage, then wrong answers
PRECEDENCE = ("not done", "waiting", "error", "timeout", "fail", "pass")
# what a student's copy of a report (Report.for_student) says in place of what it leaves out
HIDDEN_NOTE = "hidden check: its details are in your instructor's records"
IN_REACH_NOTE = ("its details are in your instructor's records (this grading put hidden inputs within your code's "
                 "reach); your own self-check, `nox -s grade`, shows this public check's details")
LOG_NOTE = "(what your code printed is in your instructor's records)"
SHARE = {"details": "the hidden checks' details", "log": "what the code printed"}  # --share-details, --share-log


@dataclass
class CheckResult:
    stage: int | None  # None: a check of the submission as a whole (it loads, a notebook parses)
    row: str  # the report row: an exercise ("4.1"), a stage's own ("stage 4"), "notebook", "submission"
    check: str
    tier: str  # "public" or "hidden"
    status: str  # one of STATUSES
    message: str = ""
    value: float | None = None  # a loss check's loss, shown in its row
    points: float | None = None  # its share of its row's points (points.assign); None: a report from before (1 a row)


@dataclass(frozen=True)
class Loss:
    """A loss the grader measured: what the gradebook and the leaderboards rank."""

    stage: int
    split: str  # "val" or "test"
    value: float
    passed: bool = True  # did the loss check pass: a loss that did not is not ranked


@dataclass
class Report:
    submission: str
    tier: str  # the tiers that ran: "public", or "hidden" (public and hidden)
    schedule: str
    results: list[CheckResult]
    losses: list[Loss] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""  # the tail of what the submission printed: shown, never parsed
    test_source: str = "course split"
    student: str = ""
    isolation: str = ""  # where the submission's code ran: "bwrap", "fallback", "none" ("": a report from before)
    network_open: bool | None = None  # could the submission's code reach the network (None: not recorded)
    isolation_note: str = ""  # what else the sandbox's line says (--allow-unisolated, the self-check needs none)
    audience: str = "instructor"  # "student": a copy made by for_student(), which leaves out what `shared` lacks
    shared: list[str] = field(default_factory=list)  # a student's copy: what the instructor chose to share (SHARE)
    # 3: results carry their points, and the public rows were settled before any hidden input was sent;
    # 2: results name their stage and row, losses are data; 1: one "exercise" string
    version: int = 3

    @property
    def passed(self) -> int:
        return sum(r.status == "pass" for r in self.results)

    def worth(self) -> list[float]:
        """Each result's points: its own, or for a report from before points, 1 a row spread over its checks."""
        per_row = Counter(r.row for r in self.results)
        return [r.points if r.points is not None else 1 / per_row[r.row] for r in self.results]

    @property
    def possible(self) -> float:
        return sum(self.worth())

    @property
    def earned(self) -> float:
        return earned(self.results, self.worth())

    @property
    def score(self) -> float:
        """The fraction of the points earned."""
        return self.earned / self.possible if self.possible else 0.0

    def loss(self, stage: int, split: str) -> float | None:
        return next((loss.value for loss in self.losses if (loss.stage, loss.split) == (stage, split)), None)

    def title(self) -> str:
        if self.tier == "public":
            return "PUBLIC checks only (the hidden checks were not run)"
        return "PUBLIC and HIDDEN checks"

    def sandbox_line(self) -> str:
        """Where the code ran: "sandbox: bwrap, no network", or "" for a report from before."""
        if not self.isolation:
            return ""
        net = "" if self.network_open is None else ", network open" if self.network_open else ", no network"
        return f"sandbox: {self.isolation}{net}" + (f" ({self.isolation_note})" if self.isolation_note else "")

    def sharing_line(self) -> str:
        """What a student's copy leaves out, so that its reader knows where the rest went; "" otherwise."""
        if self.audience != "student":
            return ""
        left_out = [text for key, text in SHARE.items() if key not in self.shared]
        if not left_out:
            return "This copy is for the student; the instructor shared every detail of the grading."
        return f"This copy is for the student: {' and '.join(left_out)} are in the instructor's records."

    def for_student(self, details: bool = False, log: bool = False) -> Report:
        """A copy to hand back: without the log (whatever the code chose to print) and, unless
        `details`, without what may carry a hidden input (see _student_row). Status, row and loss
        stay. `details` and `log` (--share-details, --share-log) keep the rest; the copy records them."""
        hidden = Counter()
        results = []
        for r in self.results:
            hidden[r.row] += r.tier == "hidden"
            results.append(replace(r) if details else self._student_row(r, hidden[r.row]))
        kept_log = self.log if log or not self.log.strip() else LOG_NOTE
        shared = [key for key, on in (("details", details), ("log", log)) if on]
        return replace(self, results=results, losses=list(self.losses), log=kept_log, audience="student",
                       shared=shared)

    def _student_row(self, r: CheckResult, k: int) -> CheckResult:
        """r as a student's copy shows it. A hidden check's name holds its input sizes and its message
        can hold its inputs: "hidden check k" and a note. The public rows ran before any hidden input
        was sent (grade.py's rounds) and stay whole; in a report from before that (version < 3), a
        public check's error or failure could repeat a hidden input: a note."""
        if r.tier == "hidden":
            name = "test loss" if r.check.startswith("test loss") else f"hidden check {k}"  # no threshold
            return replace(r, check=name, message=HIDDEN_NOTE if r.message else "")
        in_reach = (self.version < 3 and self.tier == "hidden" and r.message and r.value is None
                    and r.status not in ("pass", "waiting"))
        return replace(r, message=IN_REACH_NOTE) if in_reach else replace(r)

    def summary(self) -> str:
        n = len(self.results)
        if not n:
            return "Nothing was graded: the submission defines no exercise and no model for the stages asked for."
        points = f"{points_text(self.earned)} of {points_text(self.possible)} points"
        if self.tier == "public":
            if self.passed == n:
                return (f"All {n} public checks passed: {points}. Hidden checks were not run: your instructor's "
                        "grading adds them, on inputs and data you have not seen.")
            return f"{self.passed} of {n} public checks passed: {points} (hidden checks were not run)."
        return f"{self.passed} of {n} checks passed, public and hidden: {points} (score {100 * self.score:.1f}%)."

    def row_groups(self, tiers: tuple[str, ...] = ("public", "hidden")) -> list[tuple[str, list, list[float]]]:
        """Each row, in the report's order, with its results of `tiers` and their points."""
        worth = self.worth()
        groups: dict[str, tuple[list, list]] = {}
        for r, w in zip(self.results, worth):
            if r.tier in tiers:
                mine, points = groups.setdefault(r.row, ([], []))
                mine.append(r)
                points.append(w)
        return [(row, mine, points) for row, (mine, points) in groups.items()]

    def exercise_rows(self) -> list[list]:
        rows = []
        for row, mine, worth in self.row_groups():
            worst = most_telling(mine)
            note = worst.message if worst.status != "pass" else "; ".join(
                r.message for r in mine if r.value is not None)
            rows.append([row, row_title(row),
                         worst.status.upper() if worst.status != "pass" else "pass",
                         f"{sum(r.status == 'pass' for r in mine)}/{len(mine)}",
                         f"{points_text(earned(mine, worth))}/{points_text(sum(worth))}",
                         _wrap(note)])
        return rows

    def table(self, tablefmt: str = "simple", every_check: bool = False) -> str:
        if every_check:
            rows = [[r.row, r.tier, r.check, r.status, points_text(w), _wrap(r.message)]
                    for r, w in zip(self.results, self.worth())]
            body = tabulate(rows, ["exercise", "tier", "check", "status", "points", "message"], tablefmt=tablefmt,
                            disable_numparse=True)
        else:
            body = tabulate(self.exercise_rows(), ["exercise", "what", "status", "checks", "points", "message"],
                            tablefmt=tablefmt, disable_numparse=True)
        return "\n".join([self.heading(), body, "", self.summary(), *filter(None, [self.sharing_line()])])

    def heading(self, seconds: bool = True) -> str:
        sandbox = f"; {self.sandbox_line()}" if self.sandbox_line() else ""
        took = f", {self.seconds:.0f} s" if seconds else ""
        return f"{self.title()}  ({self.schedule} schedule{took}{sandbox})"

    def to_markdown(self, public_only: bool = False) -> str:
        """Feedback as Markdown, a section per row: its status and points, the checks that passed, and
        each that did not with what differed and the course's hint. `public_only`: the public checks
        alone, no log, and not the time the grading took, which the hidden round's code could stretch
        (what Gradescope shows before the grades are published)."""
        title = f"# Grading report: {self.student}" if self.student else "# Grading report"
        tiers = ("public",) if public_only else ("public", "hidden")
        groups = self.row_groups(tiers)
        results = [r for _, mine, _ in groups for r in mine]
        got = sum(earned(mine, worth) for _, mine, worth in groups)
        possible = sum(sum(worth) for _, _, worth in groups)
        if public_only:
            summary = (f"Public checks: {sum(r.status == 'pass' for r in results)} of {len(results)} passed, "
                       f"{points_text(got)} of {points_text(possible)} points. "
                       + ("The hidden checks' results come when your instructor publishes the grades."
                          if self.tier == "hidden" else ""))
        else:
            summary = self.summary()
        parts = [title, "", escape(self.heading(seconds=not public_only)), "", f"**{escape(summary.strip())}**"]
        for row, mine, worth in groups:
            passed = sum(r.status == "pass" for r in mine)
            status = most_telling(mine).status
            points = f"{points_text(earned(mine, worth))} of {points_text(sum(worth))} points"
            parts += ["", f"## {escape(row)} {escape(row_title(row))}: {status.upper()}, {passed} of {len(mine)} "
                      f"checks, {points}", "", checks_markdown(mine)]
        if self.sharing_line():
            parts += ["", escape(self.sharing_line())]
        if self.log.strip() and not public_only:
            parts += ["", "What the code printed (its last part):", "", fenced(self.log)]
        return "\n".join(parts) + "\n"

    def to_json(self) -> str:
        data = asdict(self)
        data.update(passed=self.passed, total=len(self.results), earned=self.earned, possible=self.possible,
                    score=self.score, title=self.title())
        return json.dumps(data, indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["version"] = data.get("version", 1)
        # a version-1 report (older gradebooks): its row was "exercise"; its losses are in the gradebook's table
        fields["results"] = [CheckResult(**({"stage": None, "row": r.pop("exercise")} if "exercise" in r else {}), **r)
                             for r in data["results"]]
        fields["losses"] = [Loss(**loss) for loss in data.get("losses", [])]
        return cls(**fields)


def earned(results: list[CheckResult], worth: list[float]) -> float:
    """The points of the checks in `results` that passed (`worth`: each one's points)."""
    return sum(w for w, r in zip(worth, results) if r.status == "pass")


def most_telling(results: list[CheckResult]) -> CheckResult:
    """The check a row shows for its status (PRECEDENCE: unfinished work first)."""
    return min(results, key=lambda r: PRECEDENCE.index(r.status))


def row_title(row: str) -> str:
    """What a row is: its exercise's title, or a stage's own row's."""
    return exercise.title if (exercise := exercises().get(row)) else "training and model"


def checks_markdown(results: list[CheckResult]) -> str:
    """Checks as Markdown: those that passed on one line, and each that did not with its message (what
    differed, the course's hint) as it was written, in a code block."""
    passed = [r for r in results if r.status == "pass"]
    parts = ["Passed: " + "; ".join(escape(r.check + (f" ({r.message})" if r.message else "")) for r in passed)
             ] if passed else []
    for r in results:
        if r.status != "pass":
            parts.append(f"**{r.status.upper()}** {escape(r.check)}" + (":" if r.message else ""))
            parts += [fenced(r.message)] if r.message else []
    return "\n\n".join(parts)


def fenced(text: str) -> str:
    """`text` in a Markdown code block whose fence is longer than any run of backticks in it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence}text\n{text.rstrip()}\n{fence}"


def escape(text: str) -> str:
    """`text` as Markdown shows it inside a line, character for character: no emphasis, code, link or HTML
    of its own (it never starts a line, where a heading or a list could begin)."""
    return re.sub(r"([\\`*_\[\]<>~&|])", r"\\\1", text)


def points_text(points: float) -> str:
    """Points as people write them: 1, 0.5, 0.33."""
    return f"{points:.2f}".rstrip("0").rstrip(".")


def _wrap(text: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(text, width)) if text else ""
