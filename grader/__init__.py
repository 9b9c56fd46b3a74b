"""The grader: exercise and stage checks (public; hidden/ for the instructor), the sandbox, grading,
reports, the gradebook, leaderboards, notebooks, and the student edition's release."""

from makemore_wavenet.shared.errors import UserError


class GraderError(UserError):
    """What stops the grader, said plainly: not a submission, no calibration, an unreadable notebook."""
