"""Errors a user can cause; the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: a configuration, a name, a file. Its message is one line that says what to do."""


class ConfigError(UserError, ValueError):
    """An unknown name or a bad value in a run's configuration."""


class DataError(UserError):
    """A data set that is missing, corrupt or truncated."""


class PluginError(UserError):
    """A plugin that cannot be loaded or used: a syntax error, an exception on import, a bad
    registration, kernels that do not compile. The message names the plugin and its source."""


def one_line(error: BaseException) -> str:
    """An exception's text collapsed onto one line, because user-facing errors are one line."""
    return " ".join(str(error).split()) or type(error).__name__
