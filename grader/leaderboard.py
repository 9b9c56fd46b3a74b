"""Leaderboards, Kaggle-style: per stage, a public board ranked by val loss and a private board
ranked by test loss (from hidden-tier grading), students under pseudonyms. The challenge's boards
are stage 8's from reports graded on the challenge schedule: each student's own entry."""

from __future__ import annotations

import csv
import io

from tabulate import tabulate

from makemore_wavenet.stages import all_stages

from .exercises import challenge_stage
from .gradebook import Gradebook

BOARDS = (("public", "val"), ("private", "test"))
HEADERS = ["rank", "student", "cohort", "loss"]


def leaderboards(book: Gradebook, schedule: str | None = None, cohort: str | None = None,
                 stages=None) -> list[dict]:
    """[{stage, board, split, rows: [[rank, pseudonym, cohort, loss], ...]}], best first."""
    if schedule == "challenge":
        stages = (challenge_stage().number,)
    stages = stages or tuple(all_stages())
    latest = book.latest(schedule=schedule, cohort=cohort)
    who = {r["id"]: r for r in latest}
    boards = []
    for stage in stages:
        losses = book.losses(list(who), stage)
        for board, split in BOARDS:
            entries = sorted((loss[split], rid) for rid, loss in losses.items() if split in loss)
            rows = [[rank, book.pseudonym(who[rid]["student"]), who[rid]["cohort"], round(value, 4)]
                    for rank, (value, rid) in enumerate(entries, 1)]
            what = "The challenge" if schedule == "challenge" else f"Stage {stage}"
            boards.append({"stage": stage, "board": board, "split": split, "rows": rows,
                           "title": f"{what}, {board} leaderboard ({split} loss)"})
    return boards


def render(boards: list[dict], fmt: str = "terminal") -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["stage", "board", "split", *HEADERS])
        for b in boards:
            writer.writerows([b["stage"], b["board"], b["split"], *row] for row in b["rows"])
        return out.getvalue()
    tablefmt = {"terminal": "simple", "markdown": "github"}[fmt]
    parts = []
    for b in boards:
        parts.append(f"## {b['title']}" if fmt == "markdown" else b["title"])
        parts.append(tabulate(b["rows"], HEADERS, tablefmt=tablefmt, floatfmt=".4f") if b["rows"]
                     else "(no entries yet)")
        parts.append("")
    return "\n".join(parts)
