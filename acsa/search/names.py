"""File names as the search tool shows them: any name a file system allows, in one row of a table, in a URL.

On Linux a file name is bytes. Python reads the bytes that are not UTF-8 as lone surrogates (U+DC80 to
U+DCFF, `os.fsdecode`), so an index stores and returns every name exactly: `os.fsencode(path)` gives its
bytes back, and JSON (written with `ensure_ascii`) carries them as `\\udcff` escapes. Printing such a name,
or one holding a newline, is another matter: a terminal cannot encode a lone surrogate, and a newline in a
row of a table or CSV would start another row that looks like a result. `printable` escapes them.
"""

from __future__ import annotations

import os
import unicodedata
from urllib.parse import quote, unquote_to_bytes

IMAGE_ROUTE = "/images/"


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (os.fsdecode): show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _needs_escape(char: str) -> bool:
    # control characters, line and paragraph separators, format characters (bidirectional overrides that
    # would reorder what a terminal shows) and surrogates (bytes that are not UTF-8)
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def printable(name: str) -> str:
    """`name` on one line, unambiguously: control, format and separator characters and undecodable bytes as
    backslash escapes (`\\n`, `\\x1b`, `\\xff`, `\\u202e`), a backslash doubled; everything else as it is."""
    if name.isprintable() and "\\" not in name:
        return name
    out = []
    for char in name:
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif _needs_escape(char):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def image_url(key: str) -> str:
    """The server's URL path of an indexed key: its bytes percent-encoded (any byte, any character)."""
    return IMAGE_ROUTE + quote(os.fsencode(key), safe="/")


def key_of_url(raw_path: bytes) -> str | None:
    """The key an image URL names (`image_url` inverted from the request's raw path, so that bytes that are
    not UTF-8 come back as they were); None for a path outside the image route."""
    prefix = IMAGE_ROUTE.encode("ascii")
    if not raw_path.startswith(prefix):
        return None
    return os.fsdecode(unquote_to_bytes(raw_path[len(prefix) :]))
