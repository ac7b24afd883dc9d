"""The Salesforce backend without HTTP: SOQL grammar and semantics, ids, writes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from sandbox.salesforce.models import SalesforceBackend, SalesforceError, format_datetime, id_checksum
from sandbox.salesforce.soql import SoqlSyntaxError, parse

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def backend():
    backend = SalesforceBackend()
    backend.clock = lambda: NOW
    backend.load(
        {
            "records": {
                "Account": [
                    {"Id": "001000000000001AAA", "Name": "Acme 100% Corp"},
                    {"Id": "001000000000002AAA", "Name": "acme_labs"},
                    {"Id": "001000000000003AAA", "Name": None},
                ],
                "Opportunity": [
                    {
                        "Id": "006000000000001AAA",
                        "Name": "A",
                        "AccountId": "001000000000001AAA",
                        "StageName": "Closed Won",
                        "Amount": 100.0,
                        "CloseDate": "2026-11-21",
                        "SystemModstamp": "2026-11-20T23:59:59.000+0000",
                    },
                    {
                        "Id": "006000000000002AAA",
                        "Name": "B",
                        "AccountId": "001000000000002AAA",
                        "StageName": "Closed Lost",
                        "Amount": 50.0,
                        "CloseDate": "2026-10-01",
                        "SystemModstamp": "2026-11-21T00:00:00.000+0000",
                    },
                    {
                        "Id": "006000000000003AAA",
                        "Name": "C",
                        "AccountId": None,
                        "StageName": "Prospecting",
                        "Amount": None,
                        "CloseDate": "2025-01-15",
                        "SystemModstamp": "2026-11-21T00:00:00.000+0000",
                    },
                ],
            }
        }
    )
    return backend


def names(backend, soql, include_deleted=False):
    return [record.get("Name") for record in backend.query(soql, include_deleted, None, "59.0")["records"]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'a'", ["A"]),  # string comparisons ignore case
        ("Name != 'A'", ["B", "C"]),
        ("Amount > 60", ["A"]),
        ("Amount = null", ["C"]),
        ("Amount != null AND Amount < 100", ["B"]),
        ("IsWon = true OR IsClosed = false", ["A", "C"]),
        ("NOT IsClosed = true", ["C"]),
        ("(Name = 'A' OR Name = 'B') AND Amount < 75", ["B"]),
        ("Name = 'A' OR Name = 'B' AND Amount < 75", ["A", "B"]),  # AND binds tighter than OR
        ("StageName IN ('Closed Won', 'Prospecting')", ["A", "C"]),
        ("StageName NOT IN ('Closed Won')", ["B", "C"]),
        ("Account.Name LIKE 'acme%'", ["A", "B"]),
        ("Account.Name LIKE 'acme\\_%'", ["B"]),
        ("Account.Name LIKE '%100\\%%'", ["A"]),
        ("Account.Name = null", ["C"]),
        ("CloseDate = TODAY", ["A"]),
        ("CloseDate = LAST_N_DAYS:60", ["A", "B"]),
        ("CloseDate < LAST_N_DAYS:60", ["C"]),
        ("CloseDate > 2026-01-01", ["A", "B"]),
        ("CloseDate = THIS_YEAR", ["A", "B"]),
        ("CloseDate = LAST_YEAR", ["C"]),
        ("SystemModstamp >= 2026-11-21T00:00:00Z", ["B", "C"]),
        ("SystemModstamp < 2026-11-21T01:00:00+01:00", ["A"]),
        ("Id = '006000000000002'", ["B"]),  # 15-character ids match their 18-character form
    ],
)
def test_where_semantics(backend, where, expected):
    assert names(backend, f"SELECT Name FROM Opportunity WHERE {where} ORDER BY Name") == expected


def test_order_by_nulls_and_direction(backend):
    assert names(backend, "SELECT Name FROM Opportunity ORDER BY Amount") == [
        "C",
        "B",
        "A",
    ]  # ASC NULLS FIRST
    assert names(backend, "SELECT Name FROM Opportunity ORDER BY Amount DESC") == [
        "A",
        "B",
        "C",
    ]  # DESC NULLS LAST
    assert names(backend, "SELECT Name FROM Opportunity ORDER BY Amount ASC NULLS LAST") == ["B", "A", "C"]
    assert names(backend, "SELECT Name FROM Opportunity ORDER BY SystemModstamp, Id DESC") == ["A", "C", "B"]
    assert names(backend, "SELECT Name FROM Opportunity ORDER BY Name LIMIT 1 OFFSET 1") == ["B"]


def test_parent_relationship_is_null_when_missing(backend):
    [record] = backend.query("SELECT Name, Account.Name FROM Opportunity WHERE Name = 'C'", False, None, "59.0")[
        "records"
    ]
    assert record["Account"] is None


def test_keywords_are_case_insensitive(backend):
    assert names(backend, "select name from opportunity where name = 'b' order by name asc limit 5") == ["B"]


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT FROM Opportunity",
        'SELECT Id FROM Opportunity WHERE Name = "double quotes"',
        "SELECT Id FROM Opportunity WHERE Name == 'x'",
        "SELECT Id, FROM Opportunity",
        "SELECT Id FROM Opportunity ORDER Name",
        "SELECT Id FROM Opportunity LIMIT -1",
        "SELECT COUNT(Id) FROM Opportunity",
        "SELECT Id FROM Opportunity GROUP BY Name",
        "SELECT Id FROM Opportunity WHERE Id IN (SELECT OpportunityId FROM OpportunityLineItem)",
        "DELETE FROM Opportunity",
    ],
)
def test_invalid_soql_is_malformed(backend, soql):
    with pytest.raises(SalesforceError) as raised:
        backend.query(soql, False, None, "59.0")
    assert (raised.value.status, raised.value.code) == (400, "MALFORMED_QUERY")
    assert "ERROR at Row:1:Column:" in raised.value.message


def test_parser_reads_child_subqueries_and_literals():
    query = parse(
        "SELECT Id, (SELECT Role, Contact.Email FROM OpportunityContactRoles "
        "WHERE IsPrimary = true ORDER BY Role LIMIT 2) "
        "FROM Opportunity WHERE CloseDate = N_DAYS_AGO:3 AND Name = 'it\\'s' LIMIT 10"
    )
    assert query.fields == [("Id",)]
    assert query.subqueries[0].sobject == "OpportunityContactRoles"
    assert query.subqueries[0].fields == [("Role",), ("Contact", "Email")]
    assert query.subqueries[0].limit == 2
    assert query.where.operands[1].value == "it's"
    with pytest.raises(SoqlSyntaxError):
        parse("SELECT Id FROM Opportunity WHERE CloseDate = NEXT_CENTURY")


def test_date_and_boolean_type_errors(backend):
    with pytest.raises(SalesforceError, match="must be of type date"):
        backend.query("SELECT Id FROM Opportunity WHERE CloseDate = 2026-01-01T00:00:00Z", False, None, "59.0")
    with pytest.raises(SalesforceError, match="must be of type boolean"):
        backend.query("SELECT Id FROM Opportunity WHERE IsWon = 'true'", False, None, "59.0")


def test_stage_drives_is_won_and_writes_bump_the_stamp(backend):
    backend.update("Opportunity", "006000000000003AAA", {"StageName": "Closed Won"})
    record = backend.get("Opportunity", "006000000000003AAA")
    assert (record["IsWon"], record["IsClosed"]) == (True, True)
    assert record["SystemModstamp"] == format_datetime(NOW)
    backend.update("Opportunity", "006000000000003AAA", {"Amount": 1.0})
    assert backend.get("Opportunity", "006000000000003AAA")["SystemModstamp"] == format_datetime(
        NOW + timedelta(milliseconds=1)
    )
    with pytest.raises(SalesforceError, match="restricted picklist"):
        backend.update("Opportunity", "006000000000003AAA", {"StageName": "Won-ish"})


def test_id_checksum_matches_salesforce():
    # Salesforce's own example: 001A0000006Vm9r -> 001A0000006Vm9rIAC
    assert id_checksum("001A0000006Vm9r") == "IAC"


def test_default_seed_is_realistic():
    from sandbox.reference import services
    from sandbox.seeds import load_seed_file

    backend = SalesforceBackend()
    backend.load(load_seed_file()["salesforce"])
    record_types = {r["Name"] for r in backend.records["RecordType"].values()}
    opportunities = list(backend.records["Opportunity"].values())
    skus = {entry["sku"] for entry in services() if entry.get("sku")}
    codes = {r["ProductCode"] for r in backend.records["OpportunityLineItem"].values()}

    assert "Professional Services Only" in record_types and len(record_types) >= 3
    assert len(opportunities) >= 300
    assert {"Closed Won", "Closed Lost"} <= {o["StageName"] for o in opportunities}
    assert any(o["IsDeleted"] for o in opportunities)
    assert codes & skus and None in codes and "PS-LEGACY-MIG" in codes
    assert any(c["HasOptedOutOfEmail"] for c in backend.records["Contact"].values())
    dates = sorted(date.fromisoformat(o["CloseDate"]) for o in opportunities)
    assert (dates[-1] - dates[0]).days > 600


def test_datetime_literals_have_whole_seconds_as_in_soql(backend):
    with pytest.raises(SalesforceError) as raised:
        backend.query("SELECT Id FROM Opportunity WHERE SystemModstamp > 2026-11-21T00:00:00.000Z", False, None, "59.0")
    assert raised.value.code == "MALFORMED_QUERY"


# --- issue #17: child sub-query paging and orgs without multi-currency --------------------------------
def _org(**settings):
    backend = SalesforceBackend()
    backend.clock = lambda: NOW
    backend.load(
        {
            **settings,
            "records": {
                "Account": [{"Id": "001000000000001AAA", "Name": "Acme"}],
                "Product2": [{"Id": "01t000000000001AAA", "Name": "Migration+", "ProductCode": "MIG+"}],
                "Opportunity": [
                    {
                        "Id": "006000000000001AAA",
                        "Name": "A",
                        "AccountId": "001000000000001AAA",
                        "StageName": "Closed Won",
                        "CloseDate": "2026-11-21",
                        "Amount": 100.0,
                        "CurrencyIsoCode": "EUR",
                    }
                ],
                "OpportunityLineItem": [
                    {
                        "OpportunityId": "006000000000001AAA",
                        "Product2Id": "01t000000000001AAA",
                        "Quantity": float(n),
                        "UnitPrice": 10.0,
                    }
                    for n in range(1, 6)
                ],
            },
        }
    )
    return backend


def test_a_child_relationship_longer_than_the_child_page_comes_back_partial_with_its_own_locator():
    backend = _org(child_page_size=2)
    soql = "SELECT Id, (SELECT Id, Quantity FROM OpportunityLineItems ORDER BY Quantity) FROM Opportunity"
    [record] = backend.query(soql, False, None, "59.0")["records"]
    children = record["OpportunityLineItems"]
    assert children["done"] is False and children["totalSize"] == 5
    assert [row["Quantity"] for row in children["records"]] == [1.0, 2.0]
    assert children["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    quantities = [row["Quantity"] for row in children["records"]]
    url = children["nextRecordsUrl"]
    while url:
        page = backend.query_more(url.rsplit("/", 1)[1], False, "59.0")
        quantities += [row["Quantity"] for row in page["records"]]
        url = page.get("nextRecordsUrl")
    assert quantities == [1.0, 2.0, 3.0, 4.0, 5.0] and page["done"] is True


def test_children_within_the_child_page_come_whole():
    backend = _org()  # default child page of 200
    record = backend.query("SELECT Id, (SELECT Id FROM OpportunityLineItems) FROM Opportunity", False, None, "59.0")
    children = record["records"][0]["OpportunityLineItems"]
    assert children["done"] is True and len(children["records"]) == 5 and "nextRecordsUrl" not in children


def test_an_org_without_multi_currency_has_no_currency_iso_code():
    backend = _org(multi_currency=False)
    with pytest.raises(SalesforceError) as error:
        backend.query("SELECT Id, CurrencyIsoCode FROM Opportunity", False, None, "59.0")
    assert error.value.code == "INVALID_FIELD" and "No such column 'CurrencyIsoCode'" in error.value.message
    with pytest.raises(SalesforceError, match="CurrencyIsoCode"):
        backend.update("Opportunity", "006000000000001AAA", {"CurrencyIsoCode": "USD"})
    names = {field["name"] for field in backend.describe("Opportunity")["fields"]}
    assert "CurrencyIsoCode" not in names and {"Id", "Amount", "SystemModstamp"} <= names
    assert "CurrencyIsoCode" not in backend.get("Opportunity", "006000000000001AAA")
    assert "CurrencyIsoCode" in {field["name"] for field in _org().describe("Opportunity")["fields"]}
