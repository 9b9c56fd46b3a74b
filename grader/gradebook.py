"""The gradebook: every report, in SQLite, with its losses in a table of their own for the boards.

Students appear on leaderboards under pseudonyms: a stable adjective-animal name made from a
keyed hash of the student id, with a key that lives in the gradebook (so pseudonyms cannot be
recomputed from a list of ids without the file).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections import Counter
import secrets
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from . import GraderError
from .report import Report

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    student TEXT NOT NULL,
    cohort TEXT NOT NULL DEFAULT '',
    graded_at TEXT NOT NULL,
    tier TEXT NOT NULL,
    schedule TEXT NOT NULL,
    passed INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seconds REAL NOT NULL,
    report_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS losses (
    report_id INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    stage INTEGER NOT NULL,
    split TEXT NOT NULL,
    loss REAL NOT NULL,
    passed INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS reports_by_student ON reports(student, cohort, schedule);
"""
ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fond", "gentle", "hazel", "ivory", "jolly", "keen",
              "lucid", "mellow", "noble", "opal", "plucky", "quiet", "rapid", "sunny", "tidy", "upbeat",
              "vivid", "witty", "young", "zesty", "bold", "clever", "dapper", "fuzzy", "grand", "lively", "merry")
ANIMALS = ("otter", "heron", "lynx", "panda", "koala", "finch", "gecko", "ibis", "jackal", "kiwi", "lemur",
           "marten", "newt", "ocelot", "puffin", "quail", "raven", "seal", "tapir", "urchin", "vole", "wombat",
           "yak", "zebra", "badger", "crane", "dingo", "egret", "ferret", "gibbon", "hare", "impala")


class Gradebook:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)
        if "passed" not in {row[1] for row in self.db.execute("PRAGMA table_info(losses)")}:
            with self.db:  # a gradebook from before losses knew their check: count them as passed
                self.db.execute("ALTER TABLE losses ADD COLUMN passed INTEGER NOT NULL DEFAULT 1")
        if self._meta("pseudonym_key") is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('pseudonym_key', ?)", (secrets.token_hex(16),))

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, report: Report, student: str, cohort: str = "") -> int:
        """Store a report (and its losses); returns its id. One transaction: all of it or nothing."""
        with self.db:
            cur = self.db.execute(
                "INSERT INTO reports (student, cohort, graded_at, tier, schedule, passed, total, seconds, "
                "report_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (student, cohort, datetime.now(timezone.utc).isoformat(timespec="seconds"), report.tier,
                 report.schedule, report.passed, len(report.results), report.seconds, report.to_json()))
            rows = [(cur.lastrowid, loss.stage, loss.split, loss.value, loss.passed) for loss in report.losses
                    if loss.value == loss.value]  # no NaN
            self.db.executemany("INSERT INTO losses VALUES (?, ?, ?, ?, ?)", rows)
        return cur.lastrowid

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]

    def report(self, report_id: int) -> Report:
        row = self.db.execute("SELECT report_json FROM reports WHERE id = ?", (report_id,)).fetchone()
        if row is None:
            raise KeyError(f"no report {report_id} in {self.path}")
        return Report.from_json(row[0])

    def latest(self, schedule: str | None = None, cohort: str | None = None) -> list[dict]:
        """The newest report of each (student, cohort): id, student, cohort, tier, passed, total."""
        query = """SELECT id, student, cohort, tier, schedule, passed, total FROM reports r WHERE id = (
                       SELECT MAX(id) FROM reports WHERE student = r.student AND cohort = r.cohort
                       AND (:schedule IS NULL OR schedule = :schedule))
                   AND (:cohort IS NULL OR cohort = :cohort) ORDER BY id"""
        cols = ("id", "student", "cohort", "tier", "schedule", "passed", "total")
        rows = self.db.execute(query, {"schedule": schedule, "cohort": cohort}).fetchall()
        return [dict(zip(cols, row)) for row in rows]

    def losses(self, report_ids: list[int], stage: int) -> dict[int, dict[str, tuple[float, bool]]]:
        """{report id: {split: (loss, whether its loss check passed)}} for one stage."""
        marks = ",".join("?" * len(report_ids)) or "NULL"
        out: dict[int, dict[str, tuple[float, bool]]] = {}
        for rid, split, loss, passed in self.db.execute(
                f"SELECT report_id, split, loss, passed FROM losses WHERE stage = ? AND report_id IN ({marks})",
                (stage, *report_ids)):
            out.setdefault(rid, {})[split] = (loss, bool(passed))
        return out

    def export_csv(self, schedule: str | None = None, cohort: str | None = None) -> str:
        """Each student's newest report as CSV for an LMS's import: the student's id, the points earned
        in each stage's rows, the total, and the points possible (rows of no stage, such as a
        notebook that does not parse, count in the total)."""
        latest = self.latest(schedule=schedule, cohort=cohort)
        if len(cohorts := sorted({row["cohort"] for row in latest})) > 1:
            raise GraderError(f"the gradebook holds the cohorts {', '.join(map(repr, cohorts))}: export one at a time "
                              "(--cohort NAME), so that each student has one row")
        reports = {row["student"]: self.report(row["id"]) for row in latest}
        stages = sorted({r.stage for report in reports.values() for r in report.results if r.stage is not None})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["student", *(f"stage {n}" for n in stages), "total", "possible"])
        for student, report in sorted(reports.items()):
            by_stage = Counter()
            for r, w in zip(report.results, report.worth()):
                if r.status == "pass":
                    by_stage[r.stage] += w
            writer.writerow([student, *(_points(by_stage[n]) for n in stages), _points(report.earned),
                             _points(report.possible)])
        return out.getvalue()

    def pseudonym(self, student: str) -> str:
        digest = hmac.new(bytes.fromhex(self._meta("pseudonym_key")), student.encode(), hashlib.sha256).digest()
        return f"{ADJECTIVES[digest[0] % len(ADJECTIVES)]}-{ANIMALS[digest[1] % len(ANIMALS)]}-{digest[2]:02x}"


def _points(value: float) -> str:
    return f"{round(value, 4):g}"
