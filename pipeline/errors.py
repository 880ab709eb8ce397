"""Errors a user can fix: the CLI prints them as one line and exits non-zero, without a traceback."""


class PipelineError(Exception):
    """Bad input or configuration; the message names the file/option and the reason."""
