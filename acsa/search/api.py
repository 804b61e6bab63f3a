"""The search tool's Python API in one import; the `acsa` command, the server and the reports use it.

from acsa.search.api import SearchIndex, build_index, search
"""

from acsa.errors import SearchError
from acsa.search.index import IndexReport, build_index
from acsa.search.query import Result, SearchIndex, SearchResponse, search

__all__ = ["IndexReport", "Result", "SearchError", "SearchIndex", "SearchResponse", "build_index", "search"]
