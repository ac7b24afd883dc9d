"""Contract tests: the Salesforce hook and simple-salesforce against the Salesforce stand-in."""

from __future__ import annotations

import json

import pytest
import requests

from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.hooks.salesforce import SalesforceHook

USER = {
    "username": "integration@ps.example.com",
    "password": "sandbox-password",
    "security_token": "SANDBOXTOKEN",
}


def _seed(sandbox, **salesforce):
    seed = dict(sandbox.seed)
    seed["salesforce"] = {"users": [USER], **salesforce}
    sandbox.load_seed(seed)


def _connection(monkeypatch, sandbox, **extra_overrides):
    definition = sandbox.airflow_connections()["salesforce_default"]
    definition["extra"].update(extra_overrides)
    for key in [key for key, value in extra_overrides.items() if value is None]:
        definition["extra"].pop(key)
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(definition))
    return definition


@pytest.fixture
def salesforce(sandbox, monkeypatch):
    _connection(monkeypatch, sandbox)
    return sandbox.standin("salesforce")


def admin(sandbox, method, path, **kwargs):
    response = requests.request(method, sandbox.admin_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def _paged_seed(parents=5, children=99):
    records = {
        "Account": [{"Id": "001000000000001AAA", "Name": "Paging Co"}],
        "Opportunity": [],
        "OpportunityLineItem": [],
    }
    for number in range(parents):
        opportunity_id = f"006000000000{number:03d}AAA"
        records["Opportunity"].append(
            {
                "Id": opportunity_id,
                "Name": f"Deal {number}",
                "AccountId": "001000000000001AAA",
                "StageName": "Closed Won",
            }
        )
        for line in range(children):
            records["OpportunityLineItem"].append(
                {
                    "Id": f"00k00{number:03d}000{line:04d}AAA",
                    "OpportunityId": opportunity_id,
                    "Quantity": 1.0,
                    "UnitPrice": 10.0,
                }
            )
    return records


def test_soap_login_and_query_return_real_field_values(salesforce):
    hook = SalesforceHook()
    records = list(
        hook.query_records(
            "SELECT Id, Name, Amount, Account.Name, RecordType.Name FROM Opportunity "
            "WHERE RecordType.Name = 'Professional Services Only' AND IsWon = true ORDER BY SystemModstamp, Id LIMIT 3"
        )
    )

    assert len(records) == 3
    assert all(record["attributes"]["type"] == "Opportunity" for record in records)
    assert all(record["RecordType"]["Name"] == "Professional Services Only" for record in records)
    assert all(isinstance(record["Amount"], float) and record["Account"]["Name"] for record in records)
    assert hook.logins == 1
    assert salesforce.call_counts() == {"soap_login": 1, "query": 1}


def test_bad_password_is_refused_with_invalid_login(salesforce, sandbox, monkeypatch):
    _connection(monkeypatch, sandbox, security_token="WRONG")
    with pytest.raises(SalesforceApiError, match="INVALID_LOGIN") as raised:
        SalesforceHook().get_conn()
    assert raised.value.code == "INVALID_LOGIN"

    raw = requests.post(
        sandbox.url("salesforce") + "/services/Soap/u/59.0",
        data="<x/>",
        headers={"Content-Type": "text/xml", "SOAPAction": "login"},
        verify=sandbox.info()["ca_bundle"],
        timeout=10,
    )
    assert raw.status_code == 500
    assert "<faultcode>sf:INVALID_LOGIN</faultcode>" in raw.text
    assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in raw.text


def test_oauth_password_grant(salesforce, sandbox, monkeypatch):
    _connection(monkeypatch, sandbox, consumer_key="sandbox-consumer-key", consumer_secret="sandbox-consumer-secret")
    hook = SalesforceHook()
    assert [record["Name"] for record in hook.query_records("SELECT Name FROM RecordType ORDER BY Name LIMIT 1")] == [
        "Add-On Business"
    ]
    assert salesforce.call_counts()["oauth_token"] == 1

    _connection(monkeypatch, sandbox, consumer_key="sandbox-consumer-key", consumer_secret="wrong")
    with pytest.raises(SalesforceApiError, match="invalid_client_id"):
        SalesforceHook().get_conn()


def test_jwt_bearer_grant(sandbox, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    _seed(
        sandbox,
        connected_apps=[{"consumer_key": "jwt-app", "public_key_pem": public_pem}],
        generate={"opportunities": 5},
    )
    _connection(monkeypatch, sandbox, consumer_key="jwt-app", private_key=private_pem, security_token=None)

    hook = SalesforceHook()
    assert len(list(hook.query_records("SELECT Id FROM Opportunity"))) == 5

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    _connection(monkeypatch, sandbox, consumer_key="jwt-app", private_key=wrong_pem, security_token=None)
    with pytest.raises(SalesforceApiError, match="invalid assertion"):
        SalesforceHook().get_conn()


def test_paging_across_three_pages_counts_child_records(salesforce, sandbox):
    _seed(sandbox, records=_paged_seed(parents=5, children=99))
    hook = SalesforceHook()

    records = list(
        hook.query_records(
            "SELECT Id, Name, (SELECT Id, Quantity FROM OpportunityLineItems) FROM Opportunity ORDER BY Name",
            batch_size=200,
        )
    )

    assert [record["Name"] for record in records] == [f"Deal {number}" for number in range(5)]
    assert all(record["OpportunityLineItems"]["totalSize"] == 99 for record in records)
    assert hook.pages == 3  # 100 records per parent (1 + 99 children): two parents per 200-record page
    assert salesforce.call_counts() == {"soap_login": 1, "query": 1, "query_more": 2}


def test_next_records_url_is_root_relative_and_expires(salesforce, sandbox):
    _seed(sandbox, records=_paged_seed(parents=3, children=199), locator_ttl_seconds=0.2)
    client = SalesforceHook().get_conn()
    first = client.query(
        "SELECT Id, (SELECT Id FROM OpportunityLineItems) FROM Opportunity",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )

    assert first["done"] is False
    assert first["totalSize"] == 3
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-1")
    import time

    time.sleep(0.3)
    with pytest.raises(Exception) as raised:
        client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert raised.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY"),
        ("SELECT Id, Nonsense__c FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = '2026-01-01'", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Id, (SELECT Id FROM Widgets) FROM Opportunity", "INVALID_TYPE"),
        ("SELECT COUNT() FROM Opportunity", "MALFORMED_QUERY"),
    ],
)
def test_query_errors_carry_the_salesforce_code_and_name_the_query(salesforce, soql, code):
    with pytest.raises(SalesforceApiError) as raised:
        list(SalesforceHook().query_records(soql))
    assert raised.value.code == code
    assert soql in raised.value.message


def test_error_shape_on_the_wire(salesforce, sandbox):
    client = SalesforceHook().get_conn()
    response = client.session.get(
        client.base_url + "query/", params={"q": "SELECT FROM"}, headers=client.headers, timeout=10
    )
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body, list) and body[0]["errorCode"] == "MALFORMED_QUERY"
    assert body[0]["message"].startswith("\nSELECT FROM")
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")

    missing = client.session.get(
        client.base_url + "sobjects/Opportunity/006000000000999AAA", headers=client.headers, timeout=10
    )
    assert (missing.status_code, missing.json()[0]["errorCode"]) == (404, "NOT_FOUND")


def test_not_found_record(salesforce):
    with pytest.raises(SalesforceApiError) as raised:
        SalesforceHook().get_record("Opportunity", "006000000000999AAA")
    assert raised.value.code == "NOT_FOUND"


def test_relogin_after_session_expiry(salesforce, sandbox):
    hook = SalesforceHook()
    assert list(hook.query_records("SELECT Id FROM User LIMIT 1"))
    admin(sandbox, "POST", "/salesforce/sessions/expire")

    assert list(hook.query_records("SELECT Id FROM User LIMIT 1"))
    assert (hook.logins, hook.relogins) == (2, 1)
    assert salesforce.call_counts() == {"soap_login": 2, "query": 3}


def test_repeated_expiry_fails_after_one_relogin_instead_of_looping(salesforce, sandbox):
    hook = SalesforceHook()
    hook.get_conn()
    admin(
        sandbox,
        "POST",
        "/salesforce/faults/script",
        json={"endpoint": "query", "kind": "session_expired", "count": 10},
    )

    with pytest.raises(SalesforceApiError) as raised:
        list(hook.query_records("SELECT Id FROM User"))
    assert raised.value.code == "INVALID_SESSION_ID"
    assert salesforce.call_counts() == {"soap_login": 2, "query": 2}


def test_session_expiry_in_the_middle_of_paging_loses_nothing(salesforce, sandbox):
    _seed(sandbox, records=_paged_seed(parents=5, children=99))
    hook = SalesforceHook()
    admin(
        sandbox,
        "POST",
        "/salesforce/faults/script",
        json={"endpoint": "query_more", "kind": "session_expired", "count": 1},
    )

    records = list(
        hook.query_records("SELECT Id, (SELECT Id FROM OpportunityLineItems) FROM Opportunity", batch_size=200)
    )

    assert len(records) == 5
    assert salesforce.call_counts() == {"soap_login": 2, "query": 1, "query_more": 3}


def test_daily_limit_and_usage_reporting(salesforce, sandbox):
    _seed(sandbox, daily_api_limit=5, api_usage=3, generate={"opportunities": 3})
    hook = SalesforceHook()
    list(hook.query_records("SELECT Id FROM Opportunity"))
    assert hook.api_usage is not None
    assert (hook.api_usage.used, hook.api_usage.limit) == (4, 5)
    assert hook.api_usage.describe() == "Salesforce API usage 4/5 (80%)"
    list(hook.query_records("SELECT Id FROM Opportunity"))

    with pytest.raises(SalesforceApiError) as raised:
        list(hook.query_records("SELECT Id FROM Opportunity"))
    assert raised.value.code == "REQUEST_LIMIT_EXCEEDED"


def test_updates_are_visible_in_later_queries_and_bump_the_modstamp(salesforce):
    hook = SalesforceHook()
    [before] = hook.query_records(
        "SELECT Id, SystemModstamp, GitLab_Issue_URL__c FROM Opportunity WHERE IsWon = true ORDER BY Id LIMIT 1"
    )
    hook.update_record("Opportunity", before["Id"], {"GitLab_Issue_URL__c": "https://gitlab.example/ps/issues/7"})
    [after] = hook.query_records(
        f"SELECT Id, SystemModstamp, GitLab_Issue_URL__c FROM Opportunity WHERE Id = '{before['Id']}'"
    )

    assert after["GitLab_Issue_URL__c"] == "https://gitlab.example/ps/issues/7"
    assert after["SystemModstamp"] > before["SystemModstamp"]
    [later] = hook.query_records(
        f"SELECT Id FROM Opportunity WHERE SystemModstamp > {before['SystemModstamp'][:19]}Z AND Id = '{before['Id']}'"
    )
    assert later["Id"] == before["Id"]


def test_collection_update_reports_each_record(salesforce):
    hook = SalesforceHook()
    ids = [record["Id"] for record in hook.query_records("SELECT Id FROM Opportunity ORDER BY Id LIMIT 2")]

    results = hook.update_records(
        "Opportunity",
        {
            ids[0]: {"Description": "synced"},
            ids[1]: {"IsWon": True},
            "006000000000999AAA": {"Description": "x"},
        },
    )

    assert results[ids[0]] is None
    assert results[ids[1]].startswith("INVALID_FIELD_FOR_INSERT_UPDATE: Unable to create/update fields: IsWon")
    assert results["006000000000999AAA"].startswith("NOT_FOUND")
    assert hook.get_record("Opportunity", ids[0])["Description"] == "synced"


def test_read_only_and_unknown_fields_are_refused(salesforce):
    hook = SalesforceHook()
    [record] = hook.query_records("SELECT Id FROM Opportunity LIMIT 1")
    with pytest.raises(SalesforceApiError) as raised:
        hook.update_record("Opportunity", record["Id"], {"Bogus__c": 1})
    assert raised.value.code == "INVALID_FIELD"


def test_deleted_records_only_through_query_all(salesforce):
    hook = SalesforceHook()
    soql = "SELECT Id, IsDeleted FROM Opportunity WHERE IsDeleted = true"
    assert list(hook.query_records(soql)) == []
    deleted = list(hook.query_records(soql, include_deleted=True))
    assert deleted and all(record["IsDeleted"] for record in deleted)

    [alive] = hook.query_records("SELECT Id FROM Opportunity WHERE IsDeleted = false ORDER BY Id LIMIT 1")
    hook.get_conn().Opportunity.delete(alive["Id"])
    assert alive["Id"] not in {r["Id"] for r in hook.query_records("SELECT Id FROM Opportunity")}
    assert alive["Id"] in {r["Id"] for r in hook.query_records("SELECT Id FROM Opportunity", include_deleted=True)}
    assert list(hook.query_records(f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{alive['Id']}'")) == []


def test_test_connection(salesforce, sandbox, monkeypatch):
    ok, message = SalesforceHook().test_connection()
    assert ok and message.startswith("Connection successfully tested; Salesforce API usage 1/15000")
    _connection(monkeypatch, sandbox, security_token="nope")
    ok, message = SalesforceHook().test_connection()
    assert not ok and "INVALID_LOGIN" in message


def test_existing_session_id_mode(salesforce, sandbox, monkeypatch):
    session = SalesforceHook().get_conn().session_id
    _connection(monkeypatch, sandbox, session_id=session, instance_url=sandbox.url("salesforce"), security_token=None)
    hook = SalesforceHook()
    assert list(hook.query_records("SELECT Id FROM User LIMIT 1"))
    assert hook.logins == 0
    admin(sandbox, "POST", "/salesforce/sessions/expire")
    with pytest.raises(SalesforceApiError) as raised:
        list(hook.query_records("SELECT Id FROM User LIMIT 1"))
    assert raised.value.code == "INVALID_SESSION_ID"  # a given session cannot be renewed: say so


def test_query_records_follows_partial_child_relationships(salesforce, sandbox):
    """#17: a parent's child sub-query comes back partial with its own nextRecordsUrl; the hook reads the rest."""
    _seed(sandbox, child_page_size=10, page_size=200, records=_paged_seed(parents=3, children=25))
    hook = SalesforceHook()
    records = list(
        hook.query_records("SELECT Id, (SELECT Id FROM OpportunityLineItems ORDER BY Id) FROM Opportunity ORDER BY Id")
    )

    assert [len(record["OpportunityLineItems"]["records"]) for record in records] == [25, 25, 25]
    assert all(record["OpportunityLineItems"]["done"] is True for record in records)
    ids = [child["Id"] for child in records[0]["OpportunityLineItems"]["records"]]
    assert ids == sorted(set(ids))  # in order, none twice
    assert hook.child_pages == 3 * 2 and salesforce.call_counts()["query_more"] == 6


def test_describe_fields_tells_a_single_currency_org_apart(salesforce, sandbox):
    _seed(sandbox, multi_currency=False, records=_paged_seed(parents=1, children=1))
    hook = SalesforceHook()
    fields = hook.describe_fields("Opportunity")
    assert "CurrencyIsoCode" not in fields and "Amount" in fields
    hook.describe_fields("Opportunity")
    assert salesforce.call_counts()["describe_sobject"] == 1  # cached for the hook's life (one run)
    with pytest.raises(SalesforceApiError, match="INVALID_FIELD") as raised:
        list(hook.query_records("SELECT Id, CurrencyIsoCode FROM Opportunity"))
    assert raised.value.code == "INVALID_FIELD"

    _seed(sandbox, records=_paged_seed(parents=1, children=1))
    assert "CurrencyIsoCode" in SalesforceHook().describe_fields("Opportunity")


def test_record_url_base_is_the_logged_in_instance(salesforce):
    hook = SalesforceHook()
    base = hook.record_url_base()
    assert base.startswith("https://") and base == f"https://{hook.get_conn().sf_instance}"


# --- CSAT ---
def test_opportunity_contacts_reads_roles_and_products_in_batches_of_200(salesforce, sandbox):
    backend = salesforce.backend
    roles = [role for role in backend.records["OpportunityContactRole"].values() if not role.get("IsDeleted")]
    opportunity_id = roles[0]["OpportunityId"]
    backend.records["Opportunity"][opportunity_id]["Description"] = "  Platform Modernisation  "
    unknown = [f"006{number:012d}AAA" for number in range(200)]  # 201 ids: two queries

    [found] = SalesforceHook().opportunity_contacts([*unknown, opportunity_id], ("Description", "Account.Name"))

    assert found.id == opportunity_id and salesforce.call_counts()["query"] == 2
    expected_contacts = {
        (role["ContactId"], backend.records["Contact"][role["ContactId"]]["Email"], role["Role"], role["IsPrimary"])
        for role in roles
        if role["OpportunityId"] == opportunity_id
    }
    assert {(c.contact_id, c.email, c.role, c.is_primary) for c in found.contact_roles} == expected_contacts
    assert found.fields == {"Description": "Platform Modernisation", "Account.Name": found.account_name}
    assert found.account_name and all(item.product_name for item in found.line_items)


def test_opportunity_contacts_refuses_a_field_name_that_is_not_one(salesforce):
    with pytest.raises(SalesforceApiError, match="INVALID_FIELD"):
        SalesforceHook().opportunity_contacts(["0065g0000000007AAA"], ("Name FROM User --",))
    assert salesforce.call_counts().get("query", 0) == 0
