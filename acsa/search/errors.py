"""The search tool's user-facing error: one line, exit 2 on the command line, HTTP 4xx on the server."""

from __future__ import annotations

from acsa.data.types import DataError


class SearchError(DataError):
    """Bad input to the search tool (a query, an index, a folder, a model): the message is one line naming it.

    A DataError, so that the command-line runner (acsa.cli.run_stage) reports it as one line with exit 2."""
