"""What GitLab does with the text of descriptions and notes: quick actions, mentions, references.

Rules followed (GitLab's QuickActions::Extractor and reference filters):
- a quick action is a line that starts with ``/command`` (no leading space), outside fenced code
  blocks (```` ``` ```` / ``~~~``) and ``>>>`` quote blocks; executed lines are removed from the text;
- ``@username`` and ``@all`` mention people, ``#12``, ``!3``, ``~label``, ``~"two words"``,
  ``%milestone`` and ``&epic`` reference things - outside code spans and code blocks, and not
  preceded by a word character or a backslash escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUICK_ACTION = re.compile(r"^/(?P<name>[a-z_]+)(?:[ \t]+(?P<args>.*))?$")
FENCE = re.compile(r"^(```|~~~)")
QUOTE_FENCE = re.compile(r"^>>>")
CODE_SPAN = re.compile(r"`[^`\n]*`")
MENTION = re.compile(r"(?<![\w\\/`])@(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*[A-Za-z0-9_]|[A-Za-z0-9_])")
REFERENCES = {
    "issue": re.compile(r"(?<![\w\\&/`#])#(?P<ref>\d+)\b"),
    "merge_request": re.compile(r"(?<![\w\\/`!])!(?P<ref>\d+)\b"),
    "label": re.compile(r'(?<![\w\\/`~])~(?P<ref>"[^"\n]+"|[A-Za-z0-9_][A-Za-z0-9_:.-]*)'),
    "milestone": re.compile(r'(?<![\w\\/`%])%(?P<ref>"[^"\n]+"|[A-Za-z0-9_][A-Za-z0-9_.-]*)'),
    "epic": re.compile(r"(?<![\w\\/`&])&(?P<ref>\d+)\b"),
}


# Titles go through GitLab's single-line pipeline: mentions and issue, merge request, snippet and
# epic references (cross-project ones too), but no Markdown (no escapes, no code spans), no labels,
# no milestones and no quick actions.
TITLE_MENTION = re.compile(r"(?<![\w])@(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*[A-Za-z0-9_]|[A-Za-z0-9_])")
TITLE_REFERENCES = {
    "issue": re.compile(r"#(?P<ref>\d+)\b"),
    "merge_request": re.compile(r"!(?P<ref>\d+)\b"),
    "snippet": re.compile(r"\$(?P<ref>\d+)\b"),
    "epic": re.compile(r"&(?P<ref>\d+)\b"),
}


def title_mentions(title: str) -> list[str]:
    found: list[str] = []
    for match in TITLE_MENTION.finditer(title or ""):
        if match.group("name") not in found:
            found.append(match.group("name"))
    return found


def title_references(title: str) -> list[tuple[str, str]]:
    return [(kind, m.group("ref")) for kind, pattern in TITLE_REFERENCES.items() for m in pattern.finditer(title or "")]


@dataclass(frozen=True)
class QuickAction:
    name: str
    args: str


def extract_quick_actions(text: str) -> tuple[str, list[QuickAction]]:
    """Split text into what remains and the quick actions it carried."""
    kept: list[str] = []
    actions: list[QuickAction] = []
    in_code = in_quote = False
    for line in (text or "").split("\n"):
        if FENCE.match(line):
            in_code = not in_code
        elif QUOTE_FENCE.match(line) and not in_code:
            in_quote = not in_quote
        elif not in_code and not in_quote:
            match = QUICK_ACTION.match(line.rstrip("\r"))
            if match and match.group("name") in KNOWN_ACTIONS:
                actions.append(QuickAction(match.group("name"), (match.group("args") or "").strip()))
                continue
        kept.append(line)
    return "\n".join(kept).strip("\n"), actions


def _prose(text: str) -> str:
    """The text with code blocks and code spans blanked out (they neither mention nor reference)."""
    out = []
    in_code = False
    for line in (text or "").split("\n"):
        if FENCE.match(line):
            in_code = not in_code
            out.append("")
            continue
        out.append("" if in_code else CODE_SPAN.sub("", line))
    return "\n".join(out)


def mentions(text: str) -> list[str]:
    """Usernames mentioned (``all`` included), in order of appearance, without repeats."""
    found: list[str] = []
    for match in MENTION.finditer(_prose(text)):
        name = match.group("name")
        if name not in found:
            found.append(name)
    return found


def references(text: str) -> list[tuple[str, str]]:
    """(kind, reference) pairs GitLab would turn into links."""
    prose = _prose(text)
    found: list[tuple[str, str]] = []
    for kind, pattern in REFERENCES.items():
        for match in pattern.finditer(prose):
            found.append((kind, match.group("ref").strip('"')))
    return found


KNOWN_ACTIONS = {
    "close",
    "reopen",
    "label",
    "unlabel",
    "relabel",
    "assign",
    "unassign",
    "reassign",
    "spend",
    "spent",
    "remove_time_spent",
    "estimate",
    "remove_estimate",
    "due",
    "remove_due_date",
    "title",
    "confidential",
    "lock",
    "unlock",
    "epic",
    "remove_epic",
    "milestone",
    "todo",
    "done",
    "subscribe",
    "unsubscribe",
    "award",
    "weight",
    "copy_metadata",
    "duplicate",
    "move",
    "relate",
    "iteration",
}

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>mo|w|d|h|m|s)")
_UNIT_SECONDS = {"mo": 4 * 5 * 8 * 3600, "w": 5 * 8 * 3600, "d": 8 * 3600, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int | None:
    """GitLab time-tracking durations in seconds: ``1h30m``, ``-15m``, ``1d`` (8h), ``1w`` (5d), ``1mo`` (4w)."""
    text = text.strip()
    negative = text.startswith("-")
    body = text.lstrip("-").replace(" ", "")
    if not body:
        return None
    position = 0
    seconds = 0.0
    for match in _DURATION.finditer(body):
        if match.start() != position:
            return None
        seconds += float(match.group("value")) * _UNIT_SECONDS[match.group("unit")]
        position = match.end()
    if position != len(body):
        if body.isdigit():  # a bare number means hours in GitLab's parser
            seconds = float(body) * 3600
        else:
            return None
    total = round(seconds)
    return -total if negative else total


def human_duration(seconds: int) -> str | None:
    """GitLab's human form (``1h 30m``, ``1d 2h``) or None for zero."""
    if not seconds:
        return None
    sign = "-" if seconds < 0 else ""
    remaining = abs(seconds)
    parts = []
    for unit in ("mo", "w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return sign + " ".join(parts)


def split_label_args(args: str) -> list[str]:
    """``~a ~"b c" d`` -> ``["a", "b c", "d"]``."""
    return [
        (match.group(1) or match.group(2)).strip()
        for match in re.finditer(r'~?"([^"]+)"|~?([^\s~"]+)', args)
        if (match.group(1) or match.group(2)).strip()
    ]
