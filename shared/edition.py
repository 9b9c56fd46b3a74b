"""Which edition this is: the instructor's master sources, or the student edition that the grader's
release writes (exercise stubs, public checks only). The release rewrites the line below; every
question of "which edition am I?" is answered by `is_student()`."""

EDITION = "master"


def is_student() -> bool:
    return EDITION == "student"
