"""Issue #19 through real DAG runs: Salesforce's price book as the third system and the services.yml
merge request, against the Zuora, Salesforce and GitLab stand-ins."""

from __future__ import annotations

import json

import pytest

from tests.dags.test_sku_reconciliation import finance_issues, last_summary, rows, run

pytestmark = pytest.mark.airflow

CATALOG = "professional-services/services-catalog"
PATH = "data/services.yml"
BRANCH = "ps-integrations/services-yml-follows-zuora"
USER = {"username": "integration@ps.example.com", "password": "sandbox-password", "security_token": "SANDBOXTOKEN"}
CONFIG = {
    "finance_recipients": "finance@example.com",
    "salesforce": True,
    "salesforce_price_book": "Professional Services",
    "services_yml_merge_request": True,
}
SMALL_YML = """# PS services (a small catalog for the merge request tests)
- id: svc-a
  name:     Service A   # spaced as people write it
  price: 100
  sku: SVC-A

- id: svc-b
  name: Service B
  price: $1,500
  sku: SVC-B
"""


@pytest.fixture
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_sku_reconciliation")


@pytest.fixture
def price_book(product_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps(CONFIG))
    return product_env


def _zuora(sandbox, prices):
    """Zuora's catalog: one product per SKU with one USD rate plan at the price."""
    records = {"Product": [], "ProductRatePlan": [], "ProductRatePlanCharge": [], "ProductRatePlanChargeTier": []}
    for sku, (name, price) in prices.items():
        key = sku.lower()
        records["Product"].append(
            {
                "Id": f"p-{key}",
                "Name": name,
                "SKU": sku,
                "EffectiveStartDate": "2020-01-01",
                "EffectiveEndDate": "2099-12-31",
            }
        )
        records["ProductRatePlan"].append(
            {
                "Id": f"rp-{key}",
                "ProductId": f"p-{key}",
                "EffectiveStartDate": "2020-01-01",
                "EffectiveEndDate": "2099-12-31",
            }
        )
        records["ProductRatePlanCharge"].append({"Id": f"c-{key}", "ProductRatePlanId": f"rp-{key}"})
        records["ProductRatePlanChargeTier"].append(
            {"Id": f"t-{key}", "ProductRatePlanChargeId": f"c-{key}", "Currency": "USD", "Price": price, "Tier": 1}
        )
    sandbox.standin("zuora").load_seed({**sandbox.seed["zuora"], "catalog": "none", "records": records})


def _salesforce(sandbox, prices, multi_currency=True):
    """Salesforce: the products in the standard and the PS price book at the prices."""
    books = [
        {"Id": "01s000000000001AAA", "Name": "Standard Price Book", "IsActive": True, "IsStandard": True},
        {"Id": "01s000000000002AAA", "Name": "Professional Services", "IsActive": True, "IsStandard": False},
    ]
    products, entries = [], []
    for number, (sku, (name, price)) in enumerate(prices.items(), 1):
        product_id = f"01t00000000000{number}AAA"
        products.append({"Id": product_id, "Name": name, "ProductCode": sku, "Family": "Consulting", "IsActive": True})
        for book in books:
            entries.append(
                {
                    "Product2Id": product_id,
                    "Pricebook2Id": book["Id"],
                    "UnitPrice": float(price),
                    "IsActive": True,
                    "UseStandardPrice": False,
                    "CurrencyIsoCode": "USD",
                }
            )
    seed = {"users": [USER], "multi_currency": multi_currency}
    seed["records"] = {"Product2": products, "Pricebook2": books, "PricebookEntry": entries}
    sandbox.standin("salesforce").load_seed(seed)


def _services_yml(sandbox, text=SMALL_YML):
    backend = sandbox.standin("gitlab").backend
    project = backend.project(CATALOG)
    backend.commit_files(
        project, "main", "A small catalog", backend.user_by_username("head-of-ps"), {PATH: text.encode()}
    )


AGREED = {"SVC-A": ("Service A", "100"), "SVC-B": ("Service B", "1500")}


def request_host(sandbox) -> str:
    return sandbox.standin("gitlab").backend.base_url.split("://", 1)[1]


def _merge_requests(sandbox, state=None):
    backend = sandbox.standin("gitlab").backend
    project = backend.project(CATALOG)
    found = [mr for mr in backend.merge_requests.values() if mr.project_id == project.id]
    return [mr for mr in found if state is None or mr.state == state]


def _diff_lines(sandbox):
    import difflib

    backend = sandbox.standin("gitlab").backend
    project = backend.project(CATALOG)
    main = backend.branch_head(project, "main").files[PATH].decode()
    branch = backend.branch_head(project, BRANCH).files[PATH].decode()
    return [
        line
        for line in difflib.unified_diff(main.splitlines(), branch.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_the_seeded_org_shows_each_salesforce_status_and_opens_the_merge_request(dag, price_book):
    from airflow.utils.state import DagRunState

    assert run(dag).state == DagRunState.SUCCESS
    found = {(row["sku"], row["currency"]): row for row in rows()}
    statuses = {row["salesforce_status"] for row in found.values()}
    assert {
        "inactive_in_salesforce",
        "not_sellable_in_salesforce",
        "sellable_but_retired_in_zuora",
        "price_differs_in_salesforce",
        "not_compared",
        "match",
    } <= statuses
    assert found["GL-RR-COM", "USD"]["salesforce_status"] == "inactive_in_salesforce"
    assert found["GL-RR-SELF", "USD"]["salesforce_sellable"] == "no"
    assert found["GL-ENGR-3", "USD"]["salesforce_status"] == "not_sellable_in_salesforce"  # not in the PS book
    migration = found["MIG+", "USD"]
    assert (migration["salesforce_status"], migration["salesforce_price"], migration["zuora_price"]) == (
        "price_differs_in_salesforce",
        "33000.00",
        "35000.00",
    )
    assert migration["sku_process_step"].startswith("2. Product in the Salesforce catalog and the price book")
    assert found["GL-PM", "USD"]["salesforce_status"] == "sellable_but_retired_in_zuora"
    assert found["GL-BAS", "USD"]["salesforce_price_book"] == "Professional Services"

    [request] = _merge_requests(price_book, "opened")
    assert request.source_branch == BRANCH and request.target_branch == "main"
    for text in ("`training_sessions_pm` (line 98): removed", "`migration-plus`", "`ps-zuora-only` added"):
        assert text in request.description
    assert "services.yml merge request !1 opened: 5 change(s)" in last_summary()

    [issue] = finance_issues(price_book)
    assert "### What services.yml cannot fix" in issue.description
    assert "1. SKU request: finance creates the product and its price in Zuora" in issue.description
    assert "| GL-RR-COM | USD | inactive_in_salesforce | Sales operations (Salesforce): activate" in issue.description
    # the merge request is linked; "!1" is escaped so GitLab shows it as text, not as a reference
    assert "**services.yml merge request:** services.yml merge request \\!1 opened: 5 change(s)" in issue.description
    assert f"(https://{request_host(price_book)}/professional-services/services-catalog/-/merge_requests/1)" in (
        issue.description
    )


def test_a_zuora_price_change_is_one_merge_request_until_it_is_resolved(dag, price_book):
    _services_yml(price_book)
    _salesforce(price_book, AGREED)
    _zuora(price_book, AGREED)
    run(dag, as_of="2026-11-20")
    assert _merge_requests(price_book) == []  # all agree: nothing to change, no finance issue
    assert finance_issues(price_book) == []

    _zuora(price_book, {**AGREED, "SVC-A": ("Service A", "120")})
    run(dag, as_of="2026-11-21")
    [request] = _merge_requests(price_book, "opened")
    assert _diff_lines(price_book) == ["-  price: 100", "+  price: 120"]  # that line only
    assert "`svc-a` (line 2): USD price 100.00 -> 120.00" in request.description
    rows_a = [row for row in rows() if row["sku"] == "SVC-A"]
    assert [row["salesforce_status"] for row in rows_a] == ["price_differs_in_salesforce"]

    run(dag, as_of="2026-11-21")  # a re-run: the same merge request, no second commit
    assert [mr.iid for mr in _merge_requests(price_book)] == [request.iid]
    assert "unchanged" in last_summary()

    _zuora(price_book, {"SVC-A": ("Service A", "120"), "SVC-B": ("Service B", "1600")})
    run(dag, as_of="2026-11-22")
    assert [mr.iid for mr in _merge_requests(price_book)] == [request.iid]
    assert _diff_lines(price_book) == ["-  price: 100", "+  price: 120", "-  price: $1,500", "+  price: $1,600"]
    assert f"services.yml merge request !{request.iid} updated: 2 change(s)" in last_summary()

    _zuora(price_book, AGREED)  # Zuora back where services.yml is: nothing left
    run(dag, as_of="2026-11-23")
    [closed] = _merge_requests(price_book)
    assert closed.state == "closed" and closed.iid == request.iid
    assert any("Nothing is left to change" in note.body for note in closed.notes)
    backend = price_book.standin("gitlab").backend
    assert BRANCH not in backend.branches[backend.project(CATALOG).id]
    assert b"  price: 100\n" in backend.branch_head(backend.project(CATALOG), "main").files[PATH]  # never merged


def test_a_hand_edit_on_the_branch_is_left_alone(dag, price_book):
    _services_yml(price_book)
    _salesforce(price_book, AGREED)
    _zuora(price_book, {**AGREED, "SVC-A": ("Service A", "120")})
    run(dag, as_of="2026-11-21")
    backend = price_book.standin("gitlab").backend
    project = backend.project(CATALOG)
    edited = backend.branch_head(project, BRANCH).files[PATH].replace(b"price: 120", b"price: 125")
    backend.commit_files(project, BRANCH, "125 after all", backend.user_by_username("head-of-ps"), {PATH: edited})
    head = backend.branch_head(project, BRANCH).id

    _zuora(price_book, {"SVC-A": ("Service A", "120"), "SVC-B": ("Service B", "1600")})
    run(dag, as_of="2026-11-22")
    assert backend.branch_head(project, BRANCH).id == head  # the person's commit is not overwritten
    summary = last_summary()
    assert "a person committed to ps-integrations/services-yml-follows-zuora" in summary and "Morgan Head" in summary
    [issue] = finance_issues(price_book)
    assert "leaves it alone" in issue.description


def test_a_single_currency_org(dag, price_book):
    from airflow.utils.state import DagRunState

    _services_yml(price_book)
    _salesforce(price_book, {**AGREED, "SVC-B": ("Service B", "1400")}, multi_currency=False)
    _zuora(price_book, AGREED)
    assert run(dag).state == DagRunState.SUCCESS
    found = {row["sku"]: row for row in rows()}
    assert found["SVC-A"]["salesforce_status"] == "match" and found["SVC-A"]["salesforce_price"] == "100.00"
    assert found["SVC-B"]["salesforce_status"] == "price_differs_in_salesforce"
    assert "Salesforce has no multi-currency: its prices are USD" in last_summary()
    assert _merge_requests(price_book) == []  # services.yml already follows Zuora
