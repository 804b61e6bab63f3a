"""Text from data in the reports' Markdown: captions, noun phrases, attribute names, variant names and
configuration values are shown as written, never as markup (the reports are passed around as files; a
caption is third-party text)."""

from __future__ import annotations

import html
import re

# ASCII punctuation that Markdown reads as syntax: emphasis, code, links and images, headings, lists, tables,
# block quotes, autolinks. A backslash before any ASCII punctuation shows it as itself (CommonMark).
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:<])")


def markdown_text(text: object) -> str:
    """`text` as inline Markdown that renders to exactly `text`: HTML's `&`, `<` and `>` become entities (no
    tag or entity of the text survives as markup) and Markdown's punctuation is backslash-escaped (no
    emphasis, code span, link, image or heading is made of it). Line breaks become spaces."""
    escaped = html.escape(" ".join(str(text).split()), quote=False)
    return _MARKDOWN_SYNTAX.sub(r"\\\1", escaped)


def markdown_code(text: object) -> str:
    """`text` shown as code (a <code> element; a Markdown code span would end at a backtick of the text)."""
    return f"<code>{markdown_text(text)}</code>"
