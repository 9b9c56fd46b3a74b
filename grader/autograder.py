"""A Gradescope autograder for one assignment: the bundle (`build`), and what runs inside it.

    python -m makemore_wavenet.grader autograder --out DIR --stage 4    DIR/autograder.zip, for Gradescope

The zip holds, at its root (Gradescope's autograder specification):

    setup.sh          run once, as root, when Gradescope builds the image: a venv with torch's CPU
                      build and this project (editable, from /autograder/source, which it then makes
                      root's alone: the reference, the hidden checks and the calibration are there),
                      bubblewrap; then `python -m makemore_wavenet.grader.autograder setup`, which
                      fetches names.txt and grades the master itself: a bundle that cannot give the
                      master every point fails its build, and the grader's own training of each stage
                      is in its cache before the first student submits
    run_autograder    for each submission: `python -m makemore_wavenet.grader.autograder run`, which
                      grades /autograder/submission on the hidden tier and writes
                      /autograder/results/results.json (gradescope.py), whatever happens
    assignment.json   what this assignment grades and how (Assignment)
    project/          the instructor's packages and their build files
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import traceback
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from makemore_wavenet.shared.data import names_path

from . import GraderError, gradescope
from .grade import TRAINING_SECONDS, Options, grade
from .points import Points
from .sandbox import Limits

# Gradescope's settings an assignment needs, by schedule: its autograder timeout (minutes; 10 is the
# default, 40 the most), its container where the default (half a CPU, 768 MB) is too small, and
# whether the grader's own training runs beside the child's (two trainings' memory, and the cores
# to run them at once) or after it
SETTINGS = {"quick": {"timeout_minutes": 10, "container": "", "replay_beside": False},
            "full": {"timeout_minutes": 40, "container": "2 CPUs and 3 GB of memory", "replay_beside": True},
            "challenge": {"timeout_minutes": 40, "container": "2 CPUs and 3 GB of memory", "replay_beside": True}}
DEFAULT_MEMORY_MB = 768
# a quick grading's peak memory, the grader's, the child's and the grader's own training's (one after
# the other) together, with an empty cache: measured; every other stage within 600 MB
QUICK_MEMORY_MB = {7: 830, 8: 1450}
MARGIN_SECONDS = 120  # of the timeout, kept for what is not the submission's calls: starting, evaluating, writing
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md")
PACKAGES = ("shared", "stages", "grader")
BUNDLE = Path(__file__).resolve().parent / "bundle"  # the two scripts, with the torch version to fill in
SCRIPTS = ("setup.sh", "run_autograder")
LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "runs", ".ipynb_checkpoints", "*.egg-info")


@dataclass(frozen=True)
class Assignment:
    """One Gradescope assignment: its stages and schedule, its points, and what its students see."""

    stages: tuple[int, ...]
    schedule: str = "quick"  # "quick", "full" or "challenge"
    points: dict = field(default_factory=lambda: Points().to_dict())
    hidden: str = "after_published"  # the hidden tests' visibility on Gradescope
    score_visible: bool = False  # the whole score (hidden checks' points too) in the output before publishing
    details: bool = False  # --share-details: hidden checks' details in the hidden tests
    log: bool = False  # --share-log: what the code printed, in a test of the hidden tests' visibility
    torch: str = ""  # the torch version setup.sh installs (the instructor's)

    @property
    def timeout_minutes(self) -> int:
        return SETTINGS[self.schedule]["timeout_minutes"]

    def container(self) -> str:
        if SETTINGS[self.schedule]["container"]:
            return SETTINGS[self.schedule]["container"]
        need = max(QUICK_MEMORY_MB.get(stage, 600) for stage in self.stages)
        return ("the default (half a CPU, 768 MB)" if need < DEFAULT_MEMORY_MB else
                f"at least {need} MB of memory (stage {max(self.stages, key=lambda s: QUICK_MEMORY_MB.get(s, 0))} "
                "needs it); half a CPU will do")

    def options(self) -> Options:
        """How run_autograder grades: the hidden tier, in a sandbox, within Gradescope's timeout."""
        budget = 60 * self.timeout_minutes - MARGIN_SECONDS
        return Options(tier="hidden", schedule=self.schedule, stages=self.stages,
                       training_seconds=min(TRAINING_SECONDS[self.schedule], budget),
                       limits=Limits(total_seconds=budget), replay_beside=SETTINGS[self.schedule]["replay_beside"],
                       points=Points.from_dict(self.points))

    def visibility(self) -> dict:
        return {"hidden": self.hidden, "score_visible": self.score_visible, "details": self.details, "log": self.log}

    def describe(self) -> str:
        """The assignment, and the settings it needs on Gradescope, as the command prints them."""
        what = (f"the challenge (stage {self.stages[0]}'s entry file)" if self.schedule == "challenge" else
                f"stage{'s' * (len(self.stages) > 1)} {', '.join(map(str, self.stages))}, {self.schedule} schedule")
        return (f"Assignment: {what}, public and hidden checks.\n"
                f"Gradescope settings it needs: autograder timeout {self.timeout_minutes} minutes"
                f"{' (the default)' if self.timeout_minutes == 10 else ''}; container: {self.container()}.\n"
                f"Hidden tests: {self.hidden}; the whole score before publishing: "
                f"{'shown' if self.score_visible else 'not shown (the public tests show theirs)'}."
                + ("\nThe full schedule trains a stage for up to 25 minutes (stage 8): the stages of one "
                   "assignment train one after another within its 40, so give the longer ones an assignment each."
                   if self.schedule == "full" and len(self.stages) > 1 else ""))


def build(out: Path, assignment: Assignment) -> Path:
    """Write the bundle for `assignment` to out/autograder.zip; returns its path."""
    project = Path(__file__).resolve().parents[1]
    if not all((project / name).is_file() for name in PROJECT_FILES) or not (project / "grader" / "hidden").is_dir():
        raise GraderError(f"{project} is not the instructor's checkout (pyproject.toml, setup.py, grader/hidden): "
                          "build the autograder from it")
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / "autograder.zip"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "project").mkdir()
        for name in PROJECT_FILES:
            shutil.copy2(project / name, root / "project" / name)
        for name in PACKAGES:
            shutil.copytree(project / name, root / "project" / name, ignore=LEFT_OUT)
        (root / "assignment.json").write_text(json.dumps(asdict(assignment), indent=2) + "\n")
        for script in SCRIPTS:
            (root / script).write_text((BUNDLE / script).read_text().replace("@TORCH@", assignment.torch))
        zip_path.unlink(missing_ok=True)
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo.from_file(path, path.relative_to(root).as_posix())
                    info.external_attr = (0o755 if path.name in SCRIPTS else 0o644) << 16
                    z.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return zip_path


def find_submission(folder: Path) -> Path:
    """What a student submitted: a checkout or student edition at the folder's top or one folder down,
    or a single notebook of any name (at the top or one folder down). Links are never followed."""
    def edition(path: Path) -> bool:
        return (not path.is_symlink() and path.is_dir() and (path / "shared").is_dir()
                and not (path / "shared").is_symlink() and (path / "stages").is_dir())

    if not folder.is_dir():
        raise GraderError(f"nothing was submitted ({folder} is not a folder)")
    subfolders = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink()
                  and not p.name.startswith((".", "__MACOSX"))]
    for candidate in [folder, *subfolders]:
        if edition(candidate):
            return candidate
    notebooks = [p for where in [folder, *subfolders] for p in sorted(where.glob("*.ipynb"))
                 if p.is_file() and not p.is_symlink()]
    if len(notebooks) == 1:
        return notebooks[0]
    if notebooks:
        names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
        raise GraderError(f"the submission holds {len(notebooks)} notebooks ({names}): submit the one to grade")
    raise GraderError("the submission holds no notebook (.ipynb) and no checkout or student edition (a folder with "
                      "shared/ and stages/): submit your edition's folder, or your notebook")


def run(root: Path) -> dict:
    """Grade root/submission as root/source/assignment.json says; write root/results/results.json,
    whatever happens (a submission that cannot be graded gets a score of 0 and says why); print the
    instructor's whole report (Gradescope keeps stdout for the instructor)."""
    results_file = root / "results" / "results.json"
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.parent.chmod(0o700)  # the instructor's report lands beside it: no sandbox uid reads it
    (root / "submission").chmod(0o700)  # the grader copies it for the sandbox: nobody else need read it
    try:
        assignment = load(root / "source" / "assignment.json")
        report = grade(find_submission(root / "submission"), assignment.options())
        print(report.table(every_check=True))
        if report.log.strip():
            print("\nWhat the code printed (its last part):\n" + report.log)
        data = gradescope.results(report, **assignment.visibility())
    except GraderError as err:
        data = _failure(f"This submission could not be graded: {err}.")
    except Exception:
        traceback.print_exc()
        data = _failure("The autograder failed on this submission (a bug of the grader's, not your work): your "
                        "instructor has the details.")
    results_file.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def _failure(message: str) -> dict:
    print(message)
    return gradescope.failure(message)


def load(path: Path) -> Assignment:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Assignment(**{**data, "stages": tuple(data["stages"])})


def setup(source: Path) -> int:
    """setup.sh's last step: fetch names.txt, then grade the master as a student's submission: every
    point, or the build fails; the grader's own training of each stage stays in its cache."""
    assignment = load(source / "assignment.json")
    print(f"names.txt: {names_path()}")
    options = assignment.options()
    if assignment.schedule == "challenge":  # the master has no entry of a student's: its exercises only
        options = replace(options, losses=False)
    report = grade(source / "project", options)
    print(report.table())
    if report.earned != report.possible:
        print("setup: the master's own code did not earn every point: this bundle would grade students wrong",
              file=sys.stderr)
        return 1
    print(f"setup: the master earns {report.earned:g} of {report.possible:g} points: the autograder is ready")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("run", "setup"):
        print("usage: python -m makemore_wavenet.grader.autograder run AUTOGRADER_ROOT | setup SOURCE",
              file=sys.stderr)
        return 2
    if argv[0] == "setup":
        return setup(Path(argv[1]))
    run(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
