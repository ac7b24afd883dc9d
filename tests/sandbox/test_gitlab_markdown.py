"""GitLab's text rules the stand-in applies: quick actions, mentions, references, durations."""

from __future__ import annotations

import pytest

from sandbox.gitlab.markdown import (
    QuickAction,
    extract_quick_actions,
    human_duration,
    mentions,
    parse_duration,
    references,
)


@pytest.mark.parametrize(
    ("text", "kept", "actions"),
    [
        ("/close", "", [QuickAction("close", "")]),
        ('Hi\n/label ~a ~"b c"\nbye', "Hi\nbye", [QuickAction("label", '~a ~"b c"')]),
        (" /close", " /close", []),  # leading space: not a command
        ("> /close", "> /close", []),
        ("```\n/close\n```", "```\n/close\n```", []),
        (">>>\n/close\n>>>", ">>>\n/close\n>>>", []),
        ("/notacommand x", "/notacommand x", []),
        ("text /close inline", "text /close inline", []),
    ],
)
def test_quick_actions(text, kept, actions):
    assert extract_quick_actions(text) == (kept, actions)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@all please", ["all"]),
        ("ping @jane.doe and @bob_1.", ["jane.doe", "bob_1"]),
        ("mail me at a@b.com", []),
        ("`@all` in code", []),
        ("```\n@all\n```", []),
        ("\\@all escaped", []),
    ],
)
def test_mentions(text, expected):
    assert mentions(text) == expected


def test_references_outside_code():
    assert references('fixes #1, see !2, ~bug ~"needs review" %v1.0 &3 but not `#4` or a#5') == [
        ("issue", "1"),
        ("merge_request", "2"),
        ("label", "bug"),
        ("label", "needs review"),
        ("milestone", "v1.0"),
        ("epic", "3"),
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("-15m", -900),
        ("1d", 28800),
        ("1w", 144000),
        ("1mo", 576000),
        ("6m", 360),
        ("2", 7200),
        ("x", None),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_human_duration():
    assert (human_duration(0), human_duration(5400), human_duration(30600), human_duration(-900)) == (
        None,
        "1h 30m",
        "1d 30m",
        "-15m",
    )


def test_titles_mention_and_reference_by_gitlabs_single_line_rules():
    from sandbox.gitlab.markdown import title_mentions, title_references

    title = "Acme: @all see #12, !3, $4, &5 and grp/proj#6 - ~label %milestone /close ops@example.com"
    assert title_mentions(title) == ["all"]
    assert title_references(title) == [
        ("issue", "12"),
        ("issue", "6"),
        ("merge_request", "3"),
        ("snippet", "4"),
        ("epic", "5"),
    ]
    assert title_mentions("@\u200ball") == [] and title_references("#\u200b12") == []
