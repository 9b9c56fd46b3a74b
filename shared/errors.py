"""What a user can get wrong, as one exception type: commands print it and exit; anything else
is a bug and shows its traceback."""


class UserError(Exception):
    """Bad input the user can fix: a missing or corrupt names file, a bad setting, a checkpoint
    that does not fit. Each package raises its own subclass (DataError, ConfigError, ...)."""


class ConfigError(UserError, ValueError):
    """A setting out of range, or settings that do not go together."""


class NotDone:
    """The student edition's stub of a setting (a module-level assignment an exercise asks for, like
    stage 6's CONFIG): its module still imports, so that a notebook's own value can take its place,
    and the stage that reads it raises NotImplementedError naming the exercise (stages/stage.py)."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"NotDone({self.message!r})"
