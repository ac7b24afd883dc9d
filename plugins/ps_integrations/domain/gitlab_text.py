"""Make text from other systems inert inside GitLab.

Text copied from Salesforce (account and opportunity names, owners, products...) must not act in
GitLab: no quick actions (``/close`` at a line start), no mentions (``@all``), no references
(``#1``, ``!1``, ``~label``, ``%milestone``, ``&epic``), no HTML, no Markdown layout (tables,
images, links, emphasis) and no emoji codes.

- ``inline_markdown``: for Markdown bodies (descriptions, notes): one line, every Markdown
  punctuation character backslash-escaped (CommonMark renders ``\\@`` as ``@``; GitLab does not
  treat escaped characters as mentions or references).
- ``plain_title``: for issue titles, which GitLab shows raw in lists, mails and the API: one line,
  a zero-width space after each reference sigil so nothing links or mentions, visible text unchanged.
"""

from __future__ import annotations

import re

MARKDOWN_PUNCTUATION = set("\\`*_{}[]()<>#+-.!|@~%&:$^/=\"'")
SIGILS = set("@#!~%&/:<")
ZERO_WIDTH_SPACE = "\u200b"
_WHITESPACE = re.compile(r"\s+")


def one_line(text: str | None, limit: int | None = None) -> str:
    value = _WHITESPACE.sub(" ", str(text or "")).strip()
    if limit is not None and len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


def inline_markdown(text: str | None, limit: int | None = 500) -> str:
    """Text that renders as itself in GitLab Markdown and does nothing else."""
    return "".join("\\" + char if char in MARKDOWN_PUNCTUATION else char for char in one_line(text, limit))


def plain_title(text: str | None, limit: int = 255) -> str:
    """A title that reads the same but cannot mention, reference or run anything."""
    out = []
    for char in one_line(text):
        out.append(char)
        if char in SIGILS:
            out.append(ZERO_WIDTH_SPACE)
    title = "".join(out)
    return title if len(title) <= limit else title[: limit - 1] + "…"
