"""The exercises and stages the grader grades, as the stages declare them (stages/stage.py).

Each exercise's solution sits in the master sources between `# BEGIN EXERCISE <id>` and
`# END EXERCISE <id>` (one exercise may have several regions). The release turns every region
into a stub that raises NotImplementedError naming the exercise.
"""

from __future__ import annotations

from makemore_wavenet.stages import Exercise, Stage, all_stages


def exercises() -> dict[str, Exercise]:
    """Every stage's exercises, by id, in stage order."""
    return {ex.id: ex for stage in all_stages().values() for ex in stage.exercises}


def challenge_stage() -> Stage:
    """The stage whose loss check trains the submission's own entry file (stage 8)."""
    return next(stage for stage in all_stages().values() if stage.entry_file)
