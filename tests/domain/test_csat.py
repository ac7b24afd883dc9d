"""CSAT rules without I/O: recipients, allow-list, masking, tokens, scores, CSAT arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ps_integrations.domain.csat import (
    TOKEN_SALT,
    ContactRole,
    TokenError,
    allowed_by_list,
    choose_recipients,
    csat_figures,
    engagement_name,
    followup_title,
    make_token,
    mask_email,
    parse_score,
    read_token,
    reminder_due,
    skip_category,
)

ROLES = ("Decision Maker", "Economic Buyer")


def contact(cid, role="Evaluator", primary=False, email=None, opted_out=False):
    return ContactRole(
        cid, f"Contact {cid}", email if email is not None else f"c{cid}@acme.example.com", role, primary, opted_out
    )


def test_primary_and_configured_roles_are_chosen_once_each():
    contacts = [
        contact("1", primary=True),
        contact("2", "Decision Maker"),
        contact("3", "Evaluator"),
        contact("2", "Economic Buyer"),  # the same contact in a second role
    ]
    decisions = choose_recipients(contacts, ROLES, set(), set(), set(), None)
    assert [(d.contact.contact_id, d.send) for d in decisions] == [("1", True), ("2", True)]


@pytest.mark.parametrize(
    ("candidate", "optouts", "recent", "already", "allow", "reason"),
    [
        (contact("1", primary=True, opted_out=True), set(), set(), set(), None, "opted out of e-mail in Salesforce"),
        (contact("1", primary=True), {"c1@acme.example.com"}, set(), set(), None, "unsubscribed from CSAT surveys"),
        (
            contact("1", primary=True),
            set(),
            {"c1@acme.example.com"},
            set(),
            None,
            "surveyed within the throttle window",
        ),
        (contact("1", primary=True), set(), set(), {"1"}, None, "already surveyed for this engagement"),
        (contact("1", primary=True), set(), set(), set(), ["ps.example.com"], "not on the recipient allow-list"),
        (contact("1", primary=True, email=""), set(), set(), set(), None, "no e-mail address"),
    ],
)
def test_who_is_not_surveyed_and_why(candidate, optouts, recent, already, allow, reason):
    [decision] = choose_recipients([candidate], ROLES, optouts, recent, already, allow)
    assert not decision.send and decision.reason.startswith(reason)


def test_allow_list_entries():
    assert allowed_by_list("A@Acme.Example.com", ["example.com"])
    assert allowed_by_list("a@example.com", ["@example.com"])
    assert not allowed_by_list("a@acme.example.com", ["@example.com"])
    assert allowed_by_list("qa@customer.io", ["qa@customer.io"])
    assert not allowed_by_list("ceo@customer.io", ["qa@customer.io", "example.com"])
    assert not allowed_by_list("a@notexample.com", ["example.com"])


def test_masked_addresses_keep_no_readable_part():
    assert mask_email("jane.doe@acme-corp.com") == "j***@a***.com"
    assert mask_email("x@localhost") == "x***@l***"
    assert "jane" not in mask_email("jane.doe@acme.com") and "acme" not in mask_email("jane.doe@acme.com")


NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_tokens_are_bound_to_survey_and_purpose_and_carry_their_expiry():
    token = make_token("secret-1", "abc123", "respond", NOW + timedelta(days=3))
    assert read_token("secret-1", token, NOW) == "abc123"
    assert read_token("secret-1", token, NOW + timedelta(days=2, hours=23)) == "abc123"
    with pytest.raises(TokenError):
        read_token("secret-1", token, NOW + timedelta(days=3))  # expired
    with pytest.raises(TokenError):
        read_token("another-secret", token, NOW)
    with pytest.raises(TokenError):
        read_token("secret-1", token, NOW, purpose="unsubscribe")
    with pytest.raises(TokenError):
        read_token("secret-1", token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], NOW)


def old_token(payload: dict, days_ago: int) -> str:
    """A token as mails sent before this change carry: signed ``days_ago`` days before now."""
    import time

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class SignedThen(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - days_ago * 86400  # the signer's own clock, moved back

    return str(URLSafeTimedSerializer("secret-1", salt=TOKEN_SALT, signer=SignedThen).dumps(payload))


def test_unsubscribe_links_never_expire_and_old_rating_links_keep_their_60_days():
    import time
    from datetime import datetime as real_datetime

    real_now = real_datetime.fromtimestamp(int(time.time()), UTC)  # the serializer signs with the real clock
    unsubscribe = old_token({"s": "abc123", "p": "unsubscribe"}, days_ago=900)
    assert read_token("secret-1", unsubscribe, real_now, purpose="unsubscribe") == "abc123"
    assert read_token(
        "secret-1", make_token("secret-1", "abc123", "unsubscribe"), NOW + timedelta(days=3650), "unsubscribe"
    )
    assert read_token("secret-1", old_token({"s": "abc123", "p": "respond"}, days_ago=59), real_now) == "abc123"
    with pytest.raises(TokenError):
        read_token("secret-1", old_token({"s": "abc123", "p": "respond"}, days_ago=61), real_now)


@pytest.mark.parametrize(
    ("configured", "account", "offering", "kind", "expected"),
    [
        ("Platform  Modernisation\n2026", "Acme", "Migration+", "Migration", "Platform Modernisation 2026"),
        ("", "Acme Corp", "GitLab Migration Services", "Migration", "Acme Corp - GitLab Migration Services"),
        ("", "Acme Corp", "", "Training", "Acme Corp - Training"),
        ("", "", "", "", "Professional Services"),
        ("x" * 500, "Acme", "", "", "x" * 119 + "…"),  # a long text field: the name is the subject
    ],
)
def test_the_customer_facing_engagement_name(configured, account, offering, kind, expected):
    assert engagement_name(configured, account, offering, kind) == expected


def test_follow_up_titles_reference_nothing_and_hide_nothing():
    title = followup_title("Globex /close @all #1 ~urgent", "Initech <b>EMEA</b>: Migration %v1 &7 !3", 2)
    assert title == "CSAT follow-up: Globex /close all 1 urgent rated Initech <b>EMEA</b>: Migration v1 7 3 2/5"
    assert "\u200b" not in title and not any(ord(char) > 0x7F for char in title)
    assert followup_title("ops@acme.example.com", "x", 1).startswith("CSAT follow-up: ops@acme.example.com")


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("surveyed within the throttle window", "throttled"),
        ("opted out of e-mail in Salesforce", "opted out"),
        ("unsubscribed from CSAT surveys", "opted out"),
        ("no e-mail address", "no contact"),
        ("not on the recipient allow-list (non-production)", "allow-list"),
    ],
)
def test_every_skip_reason_has_a_summary_category(reason, category):
    assert skip_category(reason) == category


@pytest.mark.parametrize("value", ["0", "6", "-1", "3.5", "five", "", None])
def test_scores_outside_one_to_five_are_refused(value):
    with pytest.raises(ValueError, match="1 to 5"):
        parse_score(value)


def test_reminder_is_due_after_the_configured_days():
    sent = datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert not reminder_due(sent, sent + timedelta(days=4, hours=23), timedelta(days=5))
    assert reminder_due(sent, sent + timedelta(days=5), timedelta(days=5))


@pytest.mark.parametrize(
    ("surveys", "scores", "csat", "rate", "satisfied"),
    [
        (0, [], None, None, 0),
        (4, [], None, 0.0, 0),
        (1, [5], 100.0, 100.0, 1),
        (3, [1, 2, 1], 0.0, 100.0, 0),
        (8, [5, 4, 3, 1, 4, 5], 66.7, 75.0, 4),  # 4 of 6 satisfied; 6 of 8 answered
    ],
)
def test_csat_arithmetic_hand_computed(surveys, scores, csat, rate, satisfied):
    figures = csat_figures(surveys, scores)
    assert (figures.csat_pct, figures.response_rate_pct, figures.satisfied) == (csat, rate, satisfied)
    assert sum(figures.score_counts.values()) == len(scores)
