"""The opportunity sync's pure rules: parsing, fiscal quarters, engagement types, text, the plan."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from ps_integrations.domain.gitlab_text import inline_markdown, issue_title, plain_title
from ps_integrations.domain.opportunity_plan import SyncState, plan
from ps_integrations.domain.opportunity_sync import (
    BLOCK_END,
    BLOCK_START,
    EngagementTypes,
    InvalidRecord,
    SyncConfig,
    build_content,
    change_id,
    change_ids,
    change_note,
    compose_description,
    diff,
    find_marker,
    fiscal_quarter,
    is_sync_label,
    label_collisions,
    label_config_problems,
    parse_opportunity,
    quarter_label,
    require_issue_fields,
    snapshot,
    with_change_id,
)
from ps_integrations.exceptions import ConfigurationError
from sandbox.gitlab.markdown import extract_quick_actions, mentions, references

TYPES = EngagementTypes(
    by_sku={"SRV-EMBEDDED": "Embedded Engineer"},
    by_category={"Education": "Training", "Migration": "Migration"},
    sku_categories={"GL-BAS": "Education", "MIG+": "Migration", "SRV-EMBEDDED": "Consulting"},
)


def record(**overrides):
    base = {
        "attributes": {"type": "Opportunity"},
        "Id": "0065g0000000001AAA",
        "Name": "Rollout",
        "Account": {"Name": "Acme"},
        "Owner": {"Name": "Ada Lovelace", "Email": "ada@example.com"},
        "StageName": "Closed Won",
        "IsWon": True,
        "IsDeleted": False,
        "CloseDate": "2026-03-15",
        "Amount": 71000.0,
        "CurrencyIsoCode": "USD",
        "SystemModstamp": "2026-03-16T10:00:00.000+0000",
        "OpportunityLineItems": {
            "records": [
                {
                    "Quantity": 2.0,
                    "UnitPrice": 35000.0,
                    "TotalPrice": 70000.0,
                    "Product2": {"ProductCode": "MIG+", "Name": "Migration+"},
                },
                {
                    "Quantity": 1.0,
                    "UnitPrice": 1000.0,
                    "TotalPrice": 1000.0,
                    "Product2": {"ProductCode": "GL-BAS", "Name": "Basics"},
                },
            ]
        },
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("day", "start_month", "expected"),
    [
        (date(2026, 2, 1), 2, (1, 2027)),
        (date(2026, 4, 30), 2, (1, 2027)),
        (date(2026, 5, 1), 2, (2, 2027)),
        (date(2026, 12, 31), 2, (4, 2027)),
        (date(2027, 1, 31), 2, (4, 2027)),
        (date(2026, 1, 15), 1, (1, 2026)),
        (date(2026, 7, 1), 7, (1, 2027)),
        (date(2026, 6, 30), 7, (4, 2026)),
    ],
)
def test_fiscal_quarter_is_named_by_the_year_it_ends(day, start_month, expected):
    assert fiscal_quarter(day, start_month) == expected


def test_quarter_label_format():
    assert quarter_label(date(2026, 3, 15), SyncConfig()) == "close_qtr::Q127"
    assert (
        quarter_label(date(2026, 3, 15), SyncConfig(quarter_label="close_qtr::Q{quarter}-FY{year}"))
        == "close_qtr::Q1-FY2027"
    )


def test_engagement_type_from_sku_category_or_custom_sow():
    assert TYPES.classify(["MIG+", "GL-BAS"]) == ("Migration", [])
    assert TYPES.classify(["SRV-EMBEDDED"]) == ("Embedded Engineer", [])
    assert TYPES.classify([None]) == ("Custom SOW", [])
    assert TYPES.classify(["PS-LEGACY", "GL-BAS"]) == ("Training", ["PS-LEGACY"])
    assert TYPES.classify(["PS-LEGACY"]) == ("Custom SOW", ["PS-LEGACY"])


def test_parse_orders_line_items_by_value_and_reads_money_as_decimal():
    opportunity = parse_opportunity(record())
    assert opportunity.won
    assert opportunity.amount == Decimal("71000.0")
    assert [item.sku for item in opportunity.line_items] == ["MIG+", "GL-BAS"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"Id": "nope"}, "Id"),
        ({"CloseDate": "2026-13-01"}, "CloseDate"),
        ({"Amount": "lots"}, "Amount"),
        ({"CurrencyIsoCode": "dollars"}, "CurrencyIsoCode"),
    ],
)
def test_bad_records_name_the_field(overrides, field):
    with pytest.raises(InvalidRecord) as raised:
        parse_opportunity(record(**overrides))
    assert raised.value.field == field
    assert "Opportunity" in str(raised.value)


def test_not_won_when_stage_or_deleted_says_so():
    assert not parse_opportunity(record(StageName="Negotiation/Review", IsWon=False)).won
    assert not parse_opportunity(record(IsDeleted=True)).won


HOSTILE = (
    "Globex /close @all #1 !2 ~urgent %v1 &3 <b>bold</b> | x | ![img](http://e/x.png) [link](http://e) :smile: `code`"
)


def test_inline_markdown_neutralises_everything_gitlab_would_act_on():
    text = "Account: " + inline_markdown(HOSTILE) + "\n/close"
    _kept, actions = extract_quick_actions("\n".join(["Account: " + inline_markdown("/close")]))
    assert actions == []
    assert mentions(text) == []
    assert references(text.replace("\n/close", "")) == []
    escaped = inline_markdown(HOSTILE)
    assert "<b>" not in escaped and "|" not in escaped.replace("\\|", "")
    assert "![" not in escaped and "](" not in escaped
    assert inline_markdown("line one\n/close\nline two") == "line one \\/close line two"


def test_plain_title_reads_the_same_and_cannot_reference():
    title = plain_title("Globex /close @all #1")
    assert title.replace("\u200b", "") == "Globex /close @all #1"
    assert mentions(title) == [] and references(title) == []


def test_content_and_description_keep_human_edits():
    config = SyncConfig()
    opportunity = parse_opportunity(record())
    content = build_content(opportunity, TYPES, config, lambda context: f"Amount {context['amount']}", "https://sf/x")
    assert content.labels == ("proposal::Closed_Won", "ps::todo", "Migration", "close_qtr::Q127")
    assert content.due_date == "2026-04-14"
    first = compose_description(None, content, opportunity.id)
    assert find_marker(first) == opportunity.id
    edited = "Kick-off notes by the PM\n\n" + first + "\nMore human notes"
    changed = build_content(
        parse_opportunity(record(Amount=80000.0)), TYPES, config, lambda c: f"Amount {c['amount']}", "x"
    )
    updated = compose_description(edited, changed, opportunity.id)

    assert updated.startswith("Kick-off notes by the PM")
    assert "More human notes" in updated
    assert "Amount 80,000\\.00 USD" in updated and "71,000" not in updated
    assert updated.count(BLOCK_START) == updated.count(BLOCK_END) == 1
    assert content.content_hash() != changed.content_hash()


def test_change_note_says_what_changed_from_what_to_what():
    before = snapshot(parse_opportunity(record()))
    after = snapshot(parse_opportunity(record(Amount=80000.0, Owner={"Name": "Grace Hopper"})))
    changes = diff(before, after)
    assert [change.field for change in changes] == ["owner", "amount"]
    note = change_note(changes, "2026-03-17")
    assert "Owner: Ada Lovelace → Grace Hopper" in note
    assert "Amount: 71,000\\.00 USD → 80,000\\.00 USD" in note


def test_plan_decides_per_opportunity():
    config = SyncConfig()
    won = parse_opportunity(record())
    lost = parse_opportunity(record(Id="0065g0000000002AAA", StageName="Closed Lost", IsWon=False))
    fresh = parse_opportunity(record(Id="0065g0000000003AAA"))
    crashed = parse_opportunity(record(Id="0065g0000000004AAA"))
    parked = parse_opportunity(record(Id="0065g0000000005AAA"))
    contents = {o.id: build_content(o, TYPES, config, lambda c: "x", "u") for o in (won, fresh, crashed, parked)}
    state = {
        won.id: SyncState(won.id, "p", "synced", issue_iid=1, content_hash=contents[won.id].content_hash()),
        lost.id: SyncState(lost.id, "p", "synced", issue_iid=2),
    }
    actions = plan([won, lost, fresh, crashed, parked], state, {crashed.id: 9}, contents, {parked.id})

    assert [(a.kind, a.issue_iid) for a in actions] == [
        ("unchanged", 1),
        ("flag", 2),
        ("create", None),
        ("update", 9),  # found by its marker after a crash: adopted, not created again
        ("quarantined", None),
    ]


# --- issue #17 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, None),
        ({"reopened_label": "ps::opportunity-reopened"}, "shares the scope 'ps' with the base label 'ps::todo'"),
        ({"unknown_sku_label": "proposal::unknown-sku"}, "base label 'proposal::Closed_Won'"),
        ({"quarter_label": "ps::Q{quarter}{yy}"}, "quarter_label 'ps::Q100' shares the scope 'ps'"),
        ({"reopened_label": "sku::reopened"}, "shares the scope 'sku' with reopened_label"),
        ({"reopened_label": "opportunity-reopened"}, None),  # unscoped: removes nothing
    ],
)
def test_sync_labels_may_not_share_a_scope_with_the_teams(settings, problem):
    problems = label_config_problems(SyncConfig(**settings))
    if problem is None:
        assert problems == []
        SyncConfig.from_mapping(settings)
    else:
        assert any(problem in text for text in problems), problems
        with pytest.raises(ConfigurationError, match="ps_opportunity_sync_config"):
            SyncConfig.from_mapping(settings)


def test_label_collisions_spare_the_syncs_own_labels_and_name_the_others():
    config = SyncConfig()
    current = ["ps::in-progress", "close_qtr::Q127", "ps-sync::on-hold"]
    ours = {label for label in current if is_sync_label(label, config)}
    assert label_collisions(current, ["close_qtr::Q427", "ps-sync::opportunity-reopened"], ours) == [
        ("ps-sync::opportunity-reopened", "ps-sync::on-hold")
    ]
    assert label_collisions(current, ["Training"], ours) == []


@pytest.mark.parametrize(
    ("text", "title"),
    [
        (
            "Acme: Rollout 2027 (phase 2) - EMEA & APAC: 50% done!",
            "Acme: Rollout 2027 (phase 2) - EMEA & APAC: 50% done!",
        ),
        ("O'Brien & Sons: /close ~urgent %v1 <b>x</b>", "O'Brien & Sons: /close ~urgent %v1 <b>x</b>"),
        ("Mail ops@example.com", "Mail ops@example.com"),
        ("Fix #12 for @all", "Fix #\u200b12 for @\u200ball"),
        ("see !3, &4, $5 and group/project#6", "see !\u200b3, &\u200b4, $\u200b5 and group/project#\u200b6"),
        ("  two\nlines  ", "two lines"),
    ],
)
def test_issue_titles_change_only_what_gitlab_would_act_on(text, title):
    from sandbox.gitlab.markdown import title_mentions, title_references

    assert issue_title(text) == title
    assert title_mentions(issue_title(text)) == [] and title_references(issue_title(text)) == []


def test_changes_while_not_won_become_notes_and_a_flag_says_what_changed():
    config = SyncConfig()
    reopened = parse_opportunity(record(StageName="Negotiation/Review", IsWon=False, Amount=5.0))
    before = snapshot(parse_opportunity(record(StageName="Negotiation/Review", IsWon=False)))
    won_before = snapshot(parse_opportunity(record()))
    flagged = {reopened.id: SyncState(reopened.id, "p", "flagged", issue_iid=3, flagged=True, snapshot=before)}
    synced = {reopened.id: SyncState(reopened.id, "p", "synced", issue_iid=3, snapshot=won_before)}

    [note] = plan([reopened], flagged, {}, {}, set())
    assert (note.kind, note.issue_iid, [c.field for c in note.changes]) == ("note", 3, ["amount"])
    [flag] = plan([reopened], synced, {}, {}, set())
    assert flag.kind == "flag" and [c.field for c in flag.changes] == ["stage", "amount"]
    same = {reopened.id: replace(flagged[reopened.id], snapshot=snapshot(reopened))}
    assert plan([reopened], same, {}, {}, set())[0].kind == "unchanged"
    assert config.reopened_label == "ps-sync::opportunity-reopened"


def test_a_change_has_one_id_hidden_in_its_note():
    old, new = {"amount": "1.00 USD"}, {"amount": "2.00 USD"}
    identifier = change_id("0065g0000000001AAA", "update", old, new)
    assert identifier == change_id("0065g0000000001AAA", "update", dict(old), dict(new))
    assert identifier != change_id("0065g0000000001AAA", "update", new, old)
    body = with_change_id("**Opportunity updated**", identifier)
    assert change_ids(body) == {identifier} and body.startswith("**Opportunity updated**")
    assert mentions(body) == [] and references(body) == []


@pytest.mark.parametrize(("overrides", "field"), [({"Name": ""}, "Name"), ({"CloseDate": None}, "CloseDate")])
def test_a_won_opportunity_needs_a_name_and_a_close_date(overrides, field):
    opportunity = parse_opportunity(record(**overrides))
    with pytest.raises(InvalidRecord) as error:
        require_issue_fields(opportunity)
    assert error.value.field == field and error.value.record_id == opportunity.id


def test_an_org_without_multi_currency_reads_amounts_in_the_org_currency():
    plain = record()
    plain.pop("CurrencyIsoCode")
    assert parse_opportunity(plain, default_currency="EUR").currency == "EUR"
    assert parse_opportunity(record(), default_currency="EUR").currency == "USD"
