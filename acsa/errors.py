"""Every error a user can cause, and the one way they are shown: one line, no traceback.

A stage run through `acsa.cli.run_stage` turns these (and OSError: a missing, unreadable or unwritable file,
a full disk) into `error: <one line>` on stderr and exit status 2; `NonFiniteError` (a NaN or infinite loss,
weight, score or metric) exits with status 3. Anything else is a bug and ends in a traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A params file or override that does not match the configuration schema."""


class DataError(ValueError):
    """Bad benchmark input or prepared data; the message is one line naming the file and the record."""


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this format; the message is one line naming the path."""


class SearchError(ValueError):
    """Bad input to the search tool (acsa.search): a query, an index, a folder of images, a model. One line
    naming it; exit status 2 on the command line, HTTP 400/404 with a JSON body from the server."""


class NotebookError(RuntimeError):
    """A cell of a report notebook failed; the message names the cell and the error."""


class NonFiniteError(ArithmeticError):
    """A NaN or infinite number where a finite one is needed (scores, metrics, JSON outputs): exit 3."""


class NonFiniteLossError(NonFiniteError):
    """Training diverged (a NaN or infinite loss, weight or validation score): training stops and the last
    good checkpoint is kept."""


class OutputBusyError(OSError):
    """Another process is writing the same output folder (it holds the folder's lock)."""


class RunError(RuntimeError):
    """One of several runs trained side by side failed; the message names it and its last line, `exit_status`
    is the child's (2 bad input, 3 non-finite loss)."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


# Errors caused by the user's input or files: reported as one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    CheckpointError,
    SearchError,
    NotebookError,
    OSError,
)


def one_line(err: BaseException | str) -> str:
    """The message of `err` with every run of whitespace (newlines included) collapsed to one space; an
    exception without a message is named by its type."""
    text = " ".join(str(err).split())
    return text or (type(err).__name__ if isinstance(err, BaseException) else text)
