"""Contract tests (issue #22): users, Salesforce Files and Chatter through the hook and simple-salesforce
against the Salesforce stand-in."""

from __future__ import annotations

import json

import pytest

from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.hooks.salesforce import SalesforceHook, soql_string

OPPORTUNITY = "0065g0000000007AAA"


@pytest.fixture
def salesforce(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(sandbox.airflow_connections()["salesforce_default"])
    )
    return sandbox.standin("salesforce")


def test_users_resolve_by_username_or_email_case_insensitively(salesforce):
    found = SalesforceHook().find_users(["Controller@PS.example.com", "fbp.sales@ps.example.com", "nobody@x.example"])
    assert set(found) == {"controller@ps.example.com", "fbp.sales@ps.example.com"}
    assert found["controller@ps.example.com"]["Name"] == "Carla Controller"
    assert found["controller@ps.example.com"]["Id"].startswith("005")
    assert SalesforceHook().find_users([]) == {}


def test_soql_strings_are_escaped(salesforce):
    assert soql_string("o'brien\\x") == "'o\\'brien\\\\x'"
    assert SalesforceHook().find_users(["o'brien@example.com"]) == {}


def test_content_version_creates_document_link_and_versions(salesforce):
    hook = SalesforceHook()
    first = hook.create_content_version(
        "Close-out", "closeout.html", b"<p>v1</p>", first_publish_location_id=OPPORTUNITY, description="marker-1"
    )
    assert first.startswith("068")
    [version] = hook.content_versions(location_id=OPPORTUNITY)
    assert version["Id"] == first and version["VersionNumber"] == "1" and version["IsLatest"] is True
    assert version["Description"] == "marker-1" and version["ContentSize"] == 9
    document = version["ContentDocumentId"]
    assert document.startswith("069")
    links = list(
        hook.query_records(
            f"SELECT LinkedEntityId, ShareType FROM ContentDocumentLink WHERE ContentDocumentId = '{document}'"
        )
    )
    assert OPPORTUNITY in {link["LinkedEntityId"] for link in links}

    second = hook.create_content_version(
        "Close-out", "closeout.html", b"<p>v2</p>", content_document_id=document, reason_for_change="reclosed"
    )
    versions = hook.content_versions(document_id=document)
    assert [(v["Id"], v["VersionNumber"], v["IsLatest"]) for v in versions] == [
        (first, "1", False),
        (second, "2", True),
    ]
    assert hook.version_data(second) == b"<p>v2</p>"
    latest = hook.get_record("ContentDocument", document)
    assert latest["LatestPublishedVersionId"] == second


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"first_publish_location_id": "0065g0000009999AAA"}, "INVALID_CROSS_REFERENCE_KEY"),
        ({"content_document_id": "0695g0000009999AAA"}, "INVALID_CROSS_REFERENCE_KEY"),
        ({"content_document_id": "0695g0000009999AAA", "first_publish_location_id": OPPORTUNITY}, "FIELD_INTEGRITY"),
    ],
)
def test_content_version_errors(salesforce, kwargs, code):
    with pytest.raises(SalesforceApiError, match=code):
        SalesforceHook().create_content_version("x", "x.csv", b"a,b", **kwargs)


def test_content_version_requires_path_and_content_link_queries_need_a_filter(salesforce):
    hook = SalesforceHook()
    with pytest.raises(SalesforceApiError, match="REQUIRED_FIELD_MISSING"):
        hook._call(lambda client: client.ContentVersion.create({"Title": "x", "VersionData": "YQ=="}))
    with pytest.raises(SalesforceApiError, match=r"MALFORMED_QUERY.*Implementation restriction"):
        list(hook.query_records("SELECT Id FROM ContentDocumentLink"))


def test_feed_item_with_mentions_and_the_record_feed(salesforce):
    hook = SalesforceHook()
    users = hook.find_users(["controller@ps.example.com", "fbp.sales@ps.example.com"])
    controller, partner = users["controller@ps.example.com"]["Id"], users["fbp.sales@ps.example.com"]["Id"]
    item = hook.post_feed_item(
        OPPORTUNITY,
        [
            {"type": "Text", "text": "Close-out filed. "},
            {"type": "Mention", "id": controller},
            {"type": "Text", "text": " "},
            {"type": "Mention", "id": partner},
        ],
    )
    assert item["id"].startswith("0D5") and item["feedElementType"] == "FeedItem"
    assert item["parent"]["id"] == OPPORTUNITY and item["parent"]["type"] == "Opportunity"
    assert item["body"]["text"] == "Close-out filed. @Carla Controller @Felix Partner"
    mentions = [segment for segment in item["body"]["messageSegments"] if segment["type"] == "Mention"]
    assert [mention["record"]["id"] for mention in mentions] == [controller, partner]
    assert item["actor"]["username"] == "integration@ps.example.com"

    for number in range(3):
        hook.post_feed_item(OPPORTUNITY, [{"type": "Text", "text": f"later {number}"}])
    feed = list(hook.record_feed(OPPORTUNITY, page_size=2))  # two pages and one more
    assert len(feed) == 4 and feed[-1]["id"] == item["id"]
    soql = list(hook.query_records(f"SELECT Id, Body FROM FeedItem WHERE ParentId = '{OPPORTUNITY}'"))
    assert {row["Id"] for row in soql} == {element["id"] for element in feed}


@pytest.mark.parametrize(
    ("subject", "segments", "code"),
    [
        ("0065g0000009999AAA", [{"type": "Text", "text": "x"}], "NOT_FOUND"),
        (OPPORTUNITY, [{"type": "Mention", "id": "0055g0000009999AAA"}], "INVALID_ID_FIELD"),
        (OPPORTUNITY, [], "MISSING_ARGUMENT"),
        (OPPORTUNITY, [{"type": "Text", "text": "x" * 10001}], "STRING_TOO_LONG"),
    ],
)
def test_feed_item_errors(salesforce, subject, segments, code):
    with pytest.raises(SalesforceApiError, match=code):
        SalesforceHook().post_feed_item(subject, segments)
