"""Leaderboards, Kaggle-style: per stage, a public board ranked by val loss and a private board
ranked by test loss (from hidden-tier grading), students under pseudonyms. Equal losses, at the four
decimals shown, share a rank (1, 2, 2, 4); a loss whose check did not pass is not ranked, and the
board's title counts it. The challenge's boards are the challenge stage's from reports graded on
the challenge schedule: each student's own entry."""

from __future__ import annotations

import csv
import io
from bisect import bisect_left

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
            entries = sorted((round(loss[split][0], 4), rid) for rid, loss in losses.items()
                             if split in loss and loss[split][1])
            unranked = sum(split in loss and not loss[split][1] for loss in losses.values())
            values = [value for value, _ in entries]
            rows = [[1 + bisect_left(values, value), book.pseudonym(who[rid]["student"]), who[rid]["cohort"], value]
                    for value, rid in entries]  # competition ranking: equal losses, as shown, share a rank
            what = "The challenge" if schedule == "challenge" else f"Stage {stage}"
            left_out = f"; {unranked} not ranked: loss check not passed" if unranked else ""
            boards.append({"stage": stage, "board": board, "split": split, "rows": rows,
                           "title": f"{what}, {board} leaderboard ({split} loss{left_out})"})
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
