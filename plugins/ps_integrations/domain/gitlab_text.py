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
- ``issue_title``: the same guarantee touching only what GitLab's title pipeline would act on, so
  ordinary titles stay byte-for-byte what was typed (searchable, pasteable).
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


# Issue titles go through GitLab's single-line pipeline (Banzai::Pipeline::SingleLinePipeline): HTML
# entity escaping, emoji, autolinks and the reference filters for users, issues, merge requests,
# snippets, commits (+ EE: epics, iterations, vulnerabilities) - no Markdown, so no backslash escape
# and no quick actions, labels or milestones. Only a sigil that starts one of those references is
# broken, with a zero-width space between it and what follows; nothing else is touched.
TITLE_REFERENCE = re.compile(
    r"(?<![\w])@(?=[A-Za-z0-9_])"  # @user, @all (an e-mail address is not a mention)
    r"|[#!&$](?=\d)"  # #12, !3, &4, $5, also group/project#12
    r"|\*(?=iteration:)|\^(?=alert#)|\[(?=vulnerability:)"
)


def issue_title(text: str | None, limit: int = 255) -> str:
    """A title that cannot mention or reference, unchanged unless it would have."""
    title = TITLE_REFERENCE.sub(lambda match: match.group(0) + ZERO_WIDTH_SPACE, one_line(text))
    return title if len(title) <= limit else title[: limit - 1] + "…"
