"""What a user can get wrong, as one exception type: commands print it and exit; anything else
is a bug and shows its traceback."""


class UserError(Exception):
    """Bad input the user can fix: a missing or corrupt names file, a bad setting, a checkpoint
    that does not fit. Each package raises its own subclass (DataError, ConfigError, ...)."""


class ConfigError(UserError, ValueError):
    """A setting out of range, or settings that do not go together."""
