"""Contract tests: zeep on the real WSDL and the Zuora hook against the Zuora stand-in."""

from __future__ import annotations

import json

import pytest
import requests
import zeep
from zeep.transports import Transport

from ps_integrations.exceptions import ZuoraFault
from ps_integrations.hooks.zuora import WSDL, ZuoraHook
from sandbox.reference import services


@pytest.fixture
def zuora(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", json.dumps(sandbox.airflow_connections()["zuora_default"]))
    return sandbox.standin("zuora")


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def hook(**kwargs):
    return ZuoraHook(sleep=kwargs.pop("sleep", Sleeps()), **kwargs)


def admin(sandbox, method, path, **kwargs):
    response = requests.request(method, sandbox.admin_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def _seed(sandbox, **zuora):
    seed = dict(sandbox.seed)
    seed["zuora"] = {
        "users": [{"username": "integration@ps.example.com", "password": "sandbox-zuora-password"}],
        **zuora,
    }
    sandbox.load_seed(seed)


def test_wsdl_is_served_with_the_stand_in_address(zuora, sandbox):
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox.info()["ca_bundle"]
    client = zeep.Client(sandbox.url("zuora") + "/apps/services/a/78.0?wsdl", transport=Transport(session=session))
    ports = [port for service in client.wsdl.services.values() for port in service.ports.values()]
    assert [port.binding_options["address"] for port in ports] == [sandbox.url("zuora") + "/apps/services/a/78.0"]
    assert b"https://www.zuora.com/apps/services/a/78.0" in WSDL.read_bytes()  # the project's copy is the real WSDL


def test_login_good_and_bad(zuora, sandbox, monkeypatch):
    zuora_hook = hook()
    session = zuora_hook.login()
    assert session and zuora_hook._server_url == sandbox.url("zuora") + "/apps/services/a/78.0"

    definition = sandbox.airflow_connections()["zuora_default"]
    definition["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", json.dumps(definition))
    with pytest.raises(ZuoraFault) as raised:
        hook().login()
    assert raised.value.code == "INVALID_VALUE"
    assert "Invalid login" in raised.value.message


def test_products_carry_the_real_services_yml_skus(zuora):
    products = list(hook().query("select Id, Name, SKU, Category, EffectiveStartDate, EffectiveEndDate from Product"))
    skus = {entry["sku"] for entry in services() if entry.get("sku")}

    zuora_skus = {product["SKU"].casefold() for product in products}  # one SKU is spelled in lower case there
    assert len({sku.casefold() for sku in skus} - zuora_skus) == 1  # one SKU never set up in Zuora
    assert all(len(product["Id"]) == 32 for product in products)
    assert "PS-ZUORA-ONLY" in {product["SKU"] for product in products}
    assert str(products[0]["EffectiveStartDate"]) >= "2020-01-01"


@pytest.mark.parametrize(
    ("batch_size", "products", "calls"),
    [
        (0, 1400, {"query": 1, "queryMore": 2}),  # 0 means 2000: 4200 plans in pages of 2000, 2000, 200
        (100, 100, {"query": 1, "queryMore": 2}),  # 300 plans in pages of 100
        (2000, 1400, {"query": 1, "queryMore": 2}),
    ],
)
def test_paging_across_three_pages_for_each_batch_size(zuora, sandbox, batch_size, products, calls):
    _seed(sandbox, catalog="none", generate_products=products)  # 3 rate plans per product
    zuora_hook = hook()
    plans = list(zuora_hook.query("select Id, Name, ProductId from ProductRatePlan", batch_size=batch_size))

    assert len(plans) == len({plan["Id"] for plan in plans}) == 3 * products
    assert {key: value for key, value in zuora.call_counts().items() if key != "login"} == calls
    assert zuora_hook.calls == {"login": 1, **calls}


def test_filters_typed_values_and_decimal_prices(zuora):
    tiers = list(
        hook().query(
            "select Id, Price, Currency, ProductRatePlanChargeId from ProductRatePlanChargeTier where Currency = 'EUR'"
        )
    )
    assert tiers and all(tier["Currency"] == "EUR" for tier in tiers)
    from decimal import Decimal

    assert all(isinstance(tier["Price"], Decimal) for tier in tiers)
    retired = list(hook().query("select Id, SKU from Product where EffectiveEndDate < '2026-01-01'"))
    assert len(retired) == 1


def test_session_expiry_in_the_middle_of_paging_relogs_and_restarts(zuora, sandbox):
    _seed(sandbox, catalog="none", generate_products=100)
    admin(
        sandbox, "POST", "/zuora/faults/script", json={"endpoint": "queryMore", "kind": "session_expired", "count": 1}
    )
    zuora_hook = hook()
    plans = list(zuora_hook.query("select Id from ProductRatePlan", batch_size=100))

    assert len(plans) == len({plan["Id"] for plan in plans}) == 300  # nothing lost, nothing twice
    assert zuora_hook.logins == 2
    assert zuora.call_counts() == {"login": 2, "query": 2, "queryMore": 3}


def test_repeated_session_expiry_fails_instead_of_looping(zuora, sandbox):
    admin(sandbox, "POST", "/zuora/faults/script", json={"endpoint": "query", "kind": "session_expired", "count": 5})
    with pytest.raises(ZuoraFault) as raised:
        list(hook().query("select Id from Product"))
    assert raised.value.code == "INVALID_SESSION"
    assert zuora.call_counts() == {"login": 2, "query": 2}


def test_expired_locator_restarts_the_query_once(zuora, sandbox):
    _seed(sandbox, catalog="none", generate_products=100, locator_ttl_seconds=0.3)
    zuora_hook = hook()
    pages = zuora_hook.query("select Id from ProductRatePlan", batch_size=100)
    first = [next(pages) for _ in range(100)]
    import time

    time.sleep(0.4)
    rest = list(pages)
    assert len({record["Id"] for record in first + rest}) == 300
    assert zuora.call_counts()["query"] == 2


def test_malformed_query_names_the_query(zuora):
    for zoql in (
        "SELECT Id FROM Product",
        "select * from Product",
        "select Id from Product order by Id",
        "select Bogus from Product",
    ):
        with pytest.raises(ZuoraFault) as raised:
            list(hook().query(zoql))
        assert raised.value.code == "MALFORMED_QUERY"
        assert f"(query: {zoql})" in raised.value.message


def test_429_retry_after_is_obeyed_and_capped(zuora, sandbox):
    admin(sandbox, "PUT", "/zuora/faults", json={"retry_after_scale": 0.05})
    admin(sandbox, "POST", "/zuora/faults/script", json={"endpoint": "query", "kind": "rate_limited", "count": 2})
    sleeps = Sleeps()
    zuora_hook = ZuoraHook(sleep=sleeps)
    assert list(zuora_hook.query("select Id from Product where SKU = 'GL-BAS'"))
    assert sleeps == [6.0, 6.0]  # Retry-After 120 s scaled by 0.05
    assert zuora.call_counts() == {"login": 1, "query": 3}

    raw = requests.post(
        sandbox.url("zuora") + "/apps/services/a/78.0",
        data="<x/>",
        verify=sandbox.info()["ca_bundle"],
        timeout=10,
    )
    assert raw.status_code == 500 and "UNKNOWN_ERROR" in raw.text

    admin(sandbox, "PUT", "/zuora/faults", json={"retry_after_scale": 1})
    admin(sandbox, "POST", "/zuora/faults/script", json={"endpoint": "query", "kind": "rate_limited", "count": 10})
    with pytest.raises(ZuoraFault) as raised:
        list(ZuoraHook(sleep=Sleeps()).query("select Id from Product"))
    assert raised.value.code == "REQUEST_EXCEEDED_LIMIT"
    assert "max_wait_seconds=300" in raised.value.message


def test_429_on_the_wire_is_zuoras(zuora, sandbox):
    admin(sandbox, "POST", "/zuora/faults/script", json={"endpoint": "query", "kind": "rate_limited", "count": 1})
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:api="http://api.zuora.com/">'
        "<soapenv:Body><api:query><api:queryString>select Id from Product</api:queryString></api:query></soapenv:Body>"
        "</soapenv:Envelope>"
    )
    response = requests.post(
        sandbox.url("zuora") + "/apps/services/a/78.0", data=body, verify=sandbox.info()["ca_bundle"], timeout=10
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "120"
    assert "<faultcode>fns:REQUEST_EXCEEDED_LIMIT</faultcode>" in response.text
    assert (
        "REQUEST_EXCEEDED_LIMIT</ns0:FaultCode>" in response.text
        or "REQUEST_EXCEEDED_LIMIT</fns:FaultCode>" in response.text
    )


def test_transient_unknown_error_is_retried(zuora, sandbox):
    admin(
        sandbox,
        "POST",
        "/zuora/faults/script",
        json={"endpoint": "query", "kind": "server_error", "count": 2, "status": 500},
    )
    assert list(hook().query("select Id from Product where SKU = 'GL-BAS'"))
    assert zuora.call_counts()["query"] == 3


def test_a_query_the_product_never_sends(zuora):
    records = list(
        hook().query(
            "select Id, Name from Product where Category = 'education' and SKU like 'GL-%' "
            "or Name = 'Legacy Advisory Retainer'"
        )
    )
    names = {record["Name"] for record in records}
    assert "Legacy Advisory Retainer" in names
    assert any("Training" in name for name in names)


def test_concurrency_limit_answers_429(zuora, sandbox):
    _seed(sandbox, concurrency_limit=1)
    admin(sandbox, "PUT", "/zuora/faults", json={"latency_ms": 300})
    import threading

    statuses = []

    def call():
        response = requests.get(
            sandbox.url("zuora") + "/apps/services/a/78.0?wsdl", verify=sandbox.info()["ca_bundle"], timeout=10
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 429, 429]


def test_test_connection(zuora):
    assert hook().test_connection() == (True, "Connection successfully tested")


def test_records_read_as_plain_dicts_equal_zeeps_own_serialisation():
    """The fast record reader gives exactly what ``serialize_object`` gave (#18 fetch CPU)."""
    from datetime import date
    from decimal import Decimal

    from zeep.helpers import serialize_object

    from ps_integrations.hooks.zuora import _plain_record

    client = zeep.Client(str(WSDL))
    product = client.get_type("{http://object.api.zuora.com/}Product")(
        Id="p1", Name="Café Rollout", SKU="SKU-1", EffectiveStartDate=date(2020, 1, 1), fieldsToNull=["Category"]
    )
    tier = client.get_type("{http://object.api.zuora.com/}ProductRatePlanChargeTier")(
        Id="t1", Price=Decimal("12.50"), Currency="EUR", Tier=1
    )
    for record in (product, tier):
        slow = {k: v for k, v in serialize_object(record, dict).items() if v is not None and k != "fieldsToNull"}
        assert _plain_record(record) == slow and list(_plain_record(record)) == list(slow)
    assert _plain_record(product) == {
        "Id": "p1",
        "EffectiveStartDate": date(2020, 1, 1),
        "Name": "Café Rollout",
        "SKU": "SKU-1",
    }
