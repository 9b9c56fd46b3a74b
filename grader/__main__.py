"""Command line for the grader.

    python -m makemore_wavenet.grader grade [PATH]       grade a checkout or student edition
    python -m makemore_wavenet.grader grade-all FOLDER   grade a class into the gradebook
    python -m makemore_wavenet.grader leaderboard        per-stage public and private boards
    python -m makemore_wavenet.grader grade --schedule challenge   train and grade your stage-8 entry
    python -m makemore_wavenet.grader release [--out D]  write the student edition
    python -m makemore_wavenet.grader autograder --out D --stage 4   a Gradescope autograder (D/autograder.zip)
    python -m makemore_wavenet.grader gradebook export   one row per student, for an LMS's CSV import
    python -m makemore_wavenet.grader calibrate --out D  thresholds from the master over 8 seeds

Exit codes of `grade`: 0 every check passed; 1 some check did not pass (fail, not done, error,
timeout); 2 the command line was wrong; 3 the grader could not run (no data, a broken path).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import traceback
from pathlib import Path

from tabulate import tabulate

from makemore_wavenet.shared.edition import is_student
from makemore_wavenet.shared.errors import UserError
from makemore_wavenet.stages import QUICK_FRACTION, SCHEDULES, all_stages

from . import GraderError
from .exercises import challenge_stage
from .grade import COMPILED_SCHEDULES, TRAINING_SECONDS, TRAININGS, Options
from .gradescope import VISIBILITIES
from .points import Points
from .isolation import MODES
from .sandbox import Limits, Session, clean
from .thresholds import CALIBRATION_DIR, Thresholds

EXIT_PASS, EXIT_NOT_PASSED, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3


def cmd_grade(args) -> int:
    from .grade import grade

    path = Path(args.path)
    is_notebook = path.suffix == ".ipynb" and path.is_file()
    if not is_notebook and not ((path / "shared").is_dir() and (path / "stages").is_dir()):
        raise GraderError(f"{path} is neither a notebook (.ipynb) nor a checkout or student edition "
                          "(a folder with shared/ and stages/)")
    report = grade(path, grading_options(args))
    print(report.table(every_check=args.every_check))
    if report.log.strip() and any(r.status in _log_worthy(is_notebook) for r in report.results):
        if is_notebook:  # each grading process runs the notebook again: its output once
            print("\nThe last of what the notebook printed, each line once, with its errors and warnings ([grader] "
                  "lines are the grader's notes: what raised, what it skipped; never read as a result):")
            print("\n".join(dict.fromkeys(clean(report.log).rstrip().splitlines())))
        else:
            print("\nThe last of what the code printed (control characters removed; never read as a result):")
            print(clean(report.log).rstrip())
    handed = report if is_student() else student_copy(report, args)  # a self-check's report: the student's
    if args.json:
        print(" ".join(filter(None, [f"report written to {handed.save(args.json)}.", handed.sharing_line()])))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(handed.to_markdown(), encoding="utf-8")
        print(f"feedback written to {args.markdown}.")
    if args.gradescope:
        from . import gradescope

        path = gradescope.write(report, args.gradescope, hidden=args.hidden_visibility,
                                score_visible=args.score_visible, details=args.share_details, log=args.share_log)
        print(f"Gradescope's results.json written to {path}.")
    return EXIT_PASS if report.results and report.passed == len(report.results) else EXIT_NOT_PASSED


def _log_worthy(is_notebook: bool) -> set[str]:
    """The statuses whose rows the log may explain: an error or a timeout always; in the student's
    self-check a failed check too, and for a notebook a row not done (a cell that raised leaves its
    definitions undone: the notes say which)."""
    statuses = {"error", "timeout"}
    if is_student():
        statuses |= {"fail", "not done"} if is_notebook else {"fail"}
    return statuses


def student_copy(report, args):
    """The report as a student may see it (Report.for_student), with what the instructor chose to share."""
    return report.for_student(details=args.share_details, log=args.share_log)


def cmd_grade_all(args) -> int:
    import time

    from .batch import find_submissions, grade_many, hand_back
    from .gradebook import Gradebook

    submissions = find_submissions(args.folder)
    options = grading_options(args)
    Session(options.limits, options.tier)  # a hidden tier with no sandbox here stops now, not in every report
    start = time.perf_counter()
    executor = None
    if args.scheduler:  # a Dask cluster: its client hands out a concurrent.futures executor
        from distributed import Client

        executor = Client(args.scheduler).get_executor()
    with Gradebook(args.gradebook) as book:
        stored = grade_many(submissions, book, options, cohort=args.cohort, executor=executor)
        rows = [[student, f"{(r := book.report(rid)).passed}/{len(r.results)}", f"{100 * r.score:.1f}%"]
                for student, rid in sorted(stored)]
        if args.reports:
            hand_back(book, stored, args.reports, details=args.share_details, log=args.share_log)
    print(tabulate(rows, ["student", "checks passed", "score"]))
    print(f"{len(stored)} submissions graded in {time.perf_counter() - start:.1f} s; reports in {args.gradebook}")
    if args.reports:
        print(f"each student's copy of their report, to hand back: {args.reports}/STUDENT.json and STUDENT.md")
    return EXIT_PASS


def cmd_leaderboard(args) -> int:
    from .gradebook import Gradebook
    from .leaderboard import leaderboards, render

    if not Path(args.gradebook).exists():
        raise GraderError(f"no gradebook at {args.gradebook}: grade a class first (grade-all)")
    with Gradebook(args.gradebook) as book:
        print(render(leaderboards(book, schedule=args.schedule, cohort=args.cohort, stages=tuple(args.stage)),
                     args.format), end="")
    return EXIT_PASS


def cmd_autograder(args) -> int:
    import torch

    from .autograder import Assignment, build

    points = Points.load(args.points) if args.points else Points()
    common = dict(points=points.to_dict(), hidden=args.hidden_visibility, score_visible=args.score_visible,
                  details=args.share_details, log=args.share_log, torch=torch.__version__.split("+")[0])
    if args.challenge:
        assignment = Assignment(stages=(challenge_stage().number,), schedule="challenge", **common)
    else:
        assignment = Assignment(stages=tuple(args.stage), schedule=args.schedule, **common)
    path = build(Path(args.out), assignment)
    print(f"Gradescope autograder written to {path}: upload it as the assignment's autograder (zip).")
    print(assignment.describe())
    return EXIT_PASS


def cmd_export(args) -> int:
    from .gradebook import Gradebook

    if not Path(args.gradebook).exists():
        raise GraderError(f"no gradebook at {args.gradebook}: grade a class first (grade-all)")
    with Gradebook(args.gradebook) as book:
        text = book.export_csv(schedule=args.schedule, cohort=args.cohort)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return EXIT_PASS


def cmd_release(args) -> int:
    from .grade import ship_expected
    from .release import release

    out = release(Path(args.out))
    ship_expected(out)
    print(f"student edition written to {out}/ (notebooks in {out}/notebooks/)")
    return EXIT_PASS


def cmd_calibrate(args) -> int:
    from .calibrate import calibrate, write

    if args.seeds < 3:
        print("grader: error: --seeds must be at least 3: the threshold is a prediction bound from their spread",
              file=sys.stderr)
        return EXIT_USAGE
    if args.jobs is not None and args.jobs < 1:
        print(f"grader: error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return EXIT_USAGE
    if is_student():
        raise GraderError("calibrate is for the instructor's edition: it trains on the test split")
    seeds = tuple(range(1, args.seeds + 1))
    losses = calibrate(args.schedule, tuple(args.stage), seeds, names=args.names, jobs=args.jobs)
    rows = [[n, f"{statistics.fmean(v['val']):.4f}", f"{statistics.stdev(v['val']):.4f}",
             f"{statistics.fmean(v['test']):.4f}", f"{statistics.stdev(v['test']):.4f}",
             f"{max(v['seconds']) / 60:.1f}"] for n, v in losses.items()]
    print(tabulate(rows, ["stage", "val mean", "val std", "test mean", "test std", "longest run, minutes"],
                   disable_numparse=True))
    for path in write(losses, args.schedule, seeds, Path(args.out)):
        print(f"wrote {path}")
    return EXIT_PASS


def add_grading_options(p: argparse.ArgumentParser, tier: str, schedule: str, stages: list[int]) -> None:
    p.add_argument("--tier", choices=["public", "hidden"], default=tier,
                   help="public: the checks students run; hidden: public plus the instructor's hidden checks")
    challenge = challenge_stage()
    p.add_argument("--schedule", choices=SCHEDULES, default=schedule,
                   help=f"loss checks: quick (1/{QUICK_FRACTION} of each stage's recipe, its own thresholds), full "
                   f"(the recipe), or challenge (stage {challenge.number} only: the submission's own "
                   f"{challenge.entry_file}, which must beat the lecture's model within "
                   f"{TRAINING_SECONDS['challenge'] / 60:g} minutes)")
    p.add_argument("--stage", type=int, nargs="+", choices=stages, default=stages,
                   metavar="N", help="grade only these stages")
    p.add_argument("--retrain", action="store_true", help="train even where a valid checkpoint exists")
    p.add_argument("--names", help="names file for training and val (default: $MAKEMORE_NAMES or the cached "
                   "names.txt)")
    p.add_argument("--test-names", help="hidden tier: a private names file whose every name is a test example")
    p.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds allowed per check, training "
                   f"included (default: {Limits.seconds:g} for an exercise check; for a loss check, by schedule: "
                   + ", ".join(f"{s} {t:g}" for s, t in TRAINING_SECONDS.items()) + ")")
    p.add_argument("--training", choices=TRAININGS, default="auto", help="how a loss check trains the submission's "
                   "model, and the grader its own: compiled (its forward and backward under torch.compile, eager "
                   "where compiling fails or its first steps disagree with eager's; the row says which), eager, "
                   "or auto: compiled on the " + " and ".join(COMPILED_SCHEDULES) + " schedules, eager on quick, "
                   "where a compile costs about what it saves")
    p.add_argument("--memory", type=int, default=Limits.memory_mb, help="memory limit of each sandbox, MB")
    p.add_argument("--budget", type=float, help="seconds allowed for all of one submission's checks (default: "
                   "10 minutes plus twice each loss check's own limit); once spent, the rest time out")
    p.add_argument("--isolation", choices=MODES, default="auto", help="where the submission's code runs: bwrap "
                   "(bubblewrap: no network, a read-only view of the runtime), fallback (a uid of its own, for where "
                   "bubblewrap cannot run; no network either, by a seccomp filter), none (as the grader's own user: "
                   "the student's self-check), auto (the first that works; none in the student edition)")
    p.add_argument("--allow-unisolated", action="store_true", help="let the hidden tier run without a sandbox "
                   "(it refuses otherwise); the report records it")
    p.add_argument("--points", help="a TOML file of what each row is worth (default: 1 each, spread evenly over "
                   "the row's checks): `default = 1`, `\"1.2\" = 2`, `\"stage 4\" = 3`")
    p.add_argument("--calibration", default=str(CALIBRATION_DIR), help="the calibration folder the thresholds come "
                   "from: calibration.json (val) and hidden/calibration.json (test), as `calibrate --out` writes them")


def add_sharing_options(p: argparse.ArgumentParser) -> None:
    """What a report meant for the student may hold beyond its statuses, checks and losses."""
    p.add_argument("--share-details", action="store_true", help="keep every check's message in the student's copy: "
                   "those of hidden checks, and on the hidden tier those of public checks that did not pass (an "
                   "exception message can carry a hidden input); without it they say the details are in the "
                   "instructor's records. The copy records that they were shared")
    p.add_argument("--share-log", action="store_true", help="keep what the submission printed (the log's tail) "
                   "in the student's copy; without it the log stays in the instructor's records. The copy records it")


def add_gradescope_options(p: argparse.ArgumentParser) -> None:
    """Who sees what of a Gradescope results.json before the grades are published."""
    p.add_argument("--hidden-visibility", choices=VISIBILITIES, default="after_published", help="the hidden checks' "
                   "tests on Gradescope (the public checks' are visible; hidden inputs and the log stay out of "
                   "them unless --share-details, --share-log)")
    p.add_argument("--score-visible", action="store_true", help="say the whole score (the hidden checks' points "
                   "too) in the output students see before the grades are published; without it, the output "
                   "and the visible tests hold the public checks' points alone")


def grading_options(args) -> Options:
    """The grading Options from what add_grading_options defines."""
    timeout = getattr(args, "timeout", None)  # given: every check's limit
    return Options(tier=args.tier, schedule=args.schedule, stages=tuple(args.stage), retrain=args.retrain,
                   losses=not getattr(args, "skip_loss", False), names=args.names, test_names=args.test_names,
                   limits=Limits(seconds=timeout or Limits.seconds, memory_mb=args.memory, total_seconds=args.budget,
                                 isolation=args.isolation, allow_unisolated=args.allow_unisolated),
                   training_seconds=timeout, training=args.training,
                   thresholds=Thresholds(Path(args.calibration)),
                   points=Points.load(args.points) if args.points else Points())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m makemore_wavenet.grader", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    stages = list(all_stages())

    p = sub.add_parser("grade", help="grade a checkout, a student edition or a notebook", formatter_class=fmt,
                       description="Run the exercise checks and each stage's loss check; print a table.")
    p.add_argument("path", nargs="?", default=".", help="the checkout, student edition or .ipynb to grade")
    add_grading_options(p, tier="public", schedule="quick", stages=stages)
    p.add_argument("--skip-loss", action="store_true", help="only the exercise checks: no training, in seconds")
    p.add_argument("--json", help="also write the report as JSON to this file: the student's copy, to hand back "
                   "(the terminal, the instructor's, shows everything): hidden-tier details and the log are left "
                   "out unless --share-details, --share-log say otherwise. The student edition's self-check writes "
                   "it whole")
    p.add_argument("--markdown", metavar="FILE", help="also write the student's copy as Markdown feedback: per row, "
                   "its status and points, what passed, what differed and the hint")
    p.add_argument("--gradescope", metavar="FILE", help="also write Gradescope's results.json to this file")
    add_gradescope_options(p)
    add_sharing_options(p)
    p.add_argument("--every-check", action="store_true", help="one row per check instead of per exercise")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("grade-all", help="grade a folder of submissions into the gradebook", formatter_class=fmt,
                       description="Grade every subfolder of FOLDER (one per student) in parallel processes; "
                       "store every report, whole, in the SQLite gradebook (the instructor's records).")
    p.add_argument("folder", help="one subfolder per student, named by the student's id")
    p.add_argument("--gradebook", default="gradebook.db", help="the SQLite gradebook to add the reports to")
    p.add_argument("--cohort", default="", help="cohort label stored with every report (e.g. 2026-fall)")
    add_grading_options(p, tier="hidden", schedule="full", stages=stages)
    p.add_argument("--scheduler", help="grade on a Dask cluster: the scheduler's address (tcp://host:8786); "
                   "needs `pip install distributed`. Default: local processes, one per core")
    p.add_argument("--reports", metavar="DIR", help="also write each student's copy of their report, to hand back: "
                   "DIR/STUDENT.json and DIR/STUDENT.md (hidden-tier details and the log left out unless "
                   "--share-details, --share-log say otherwise; the gradebook keeps everything)")
    add_sharing_options(p)
    p.set_defaults(func=cmd_grade_all)

    p = sub.add_parser("leaderboard", help="print per-stage leaderboards from the gradebook", formatter_class=fmt,
                       description="Public boards rank by val loss, private boards by test loss (hidden "
                       "tier); each student's newest report counts; students appear under pseudonyms.")
    p.add_argument("--gradebook", default="gradebook.db", help="the SQLite gradebook")
    p.add_argument("--format", choices=["terminal", "markdown", "csv"], default="terminal")
    p.add_argument("--schedule", choices=SCHEDULES, help="only reports graded with this schedule (challenge: "
                   "the stage-8 challenge's boards)")
    p.add_argument("--cohort", help="only this cohort")
    p.add_argument("--stage", type=int, nargs="+", choices=stages, default=stages, metavar="N")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("release", help="write the student edition", formatter_class=fmt,
                       description="Stub every solution region, write one notebook per stage, ship only "
                       "the public checks.")
    p.add_argument("--out", default="dist/student", help="where to write it (replaced if it exists)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("autograder", help="write a Gradescope autograder for one assignment", formatter_class=fmt,
                       description="Write OUT/autograder.zip: setup.sh and run_autograder at its root, the "
                       "assignment, and the instructor's packages. run_autograder grades each submission (a "
                       "checkout or edition at its top or one folder down, or one notebook) on the hidden tier "
                       "and writes results.json. Prints the Gradescope settings the assignment needs.")
    p.add_argument("--out", required=True, help="the folder to write autograder.zip into")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--stage", type=int, nargs="+", choices=stages, metavar="N",
                       help="the stages this assignment grades")
    which.add_argument("--challenge", action="store_true", help=f"the challenge: stage {challenge_stage().number}, "
                       "trained with each submission's own entry file")
    p.add_argument("--schedule", choices=["quick", "full"], default="quick", help="the loss checks' schedule")
    p.add_argument("--points", help="a TOML file of what each row is worth (see grade --help)")
    add_gradescope_options(p)
    add_sharing_options(p)
    p.set_defaults(func=cmd_autograder)

    p = sub.add_parser("gradebook", help="the gradebook's records, for other tools", formatter_class=fmt)
    books = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = books.add_parser("export", help="one row per student (the gradebook's id), a column per stage, a total",
                         formatter_class=fmt, description="Each student's newest report: the points earned in each "
                         "stage's rows, the total and the points possible, as CSV for an LMS's import.")
    q.add_argument("--format", choices=["csv"], default="csv")
    q.add_argument("--gradebook", default="gradebook.db", help="the SQLite gradebook")
    q.add_argument("--out", help="the file to write (default: the terminal)")
    q.add_argument("--schedule", choices=SCHEDULES, help="only reports graded with this schedule")
    q.add_argument("--cohort", help="only this cohort (needed when the gradebook holds more than one)")
    q.set_defaults(func=cmd_export)

    p = sub.add_parser("calibrate", help="set the loss thresholds from the master over many seeds",
                       formatter_class=fmt, description="Train the master's stages under --seeds seeds at once "
                       "(one stacked model), then store each seed's val loss in OUT/calibration.json and test "
                       "loss in OUT/hidden/calibration.json; a threshold is their 99.9% prediction bound.")
    p.add_argument("--out", required=True, help="the calibration folder to write (the grader's own: grader/ in the "
                   "instructor's checkout; any other is read with grade --calibration)")
    p.add_argument("--schedule", choices=["quick", "full"], default="quick")
    p.add_argument("--seeds", type=int, default=8, help="seeds 1..N (at least 3)")
    p.add_argument("--stage", type=int, nargs="+", choices=stages, default=stages, metavar="N")
    p.add_argument("--names", help="names file (default: $MAKEMORE_NAMES, else names.txt fetched on first use)")
    p.add_argument("--jobs", type=int, help="stages the fast engine cannot train (7, 8): seeds trained at once, "
                   "sharing the cores as threads (default: one per core, one thread each; 1: one at a time on "
                   "every core)")
    p.set_defaults(func=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:  # what the user can fix: said in a line
        print(f"grader: error: {err}", file=sys.stderr)
    except Exception:  # a bug in the grader: its traceback, and the grader's exit code, not "a check failed"
        traceback.print_exc()
        print("grader: error: the grader failed (a bug: the traceback above says where)", file=sys.stderr)
    return EXIT_GRADER


if __name__ == "__main__":
    sys.exit(main())
