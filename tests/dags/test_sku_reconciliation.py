"""The SKU reconciliation through real DAG runs against the Zuora and GitLab stand-ins."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
import requests

from ps_integrations.exports import ExportStore
from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow

AS_OF = "2026-11-21"
FOLDER = f"sku_reconciliation/{AS_OF}"
DEFAULTS = {"as_of": AS_OF, "services_yml_ref": None}


@pytest.fixture
def recon(product_env, monkeypatch, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps({"finance_recipients": "finance@example.com"})
    )
    return product_env


@pytest.fixture
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_sku_reconciliation")


def run(dag, **conf):
    return dag.test(run_conf={**DEFAULTS, **conf})


def exports() -> ExportStore:
    return ExportStore.from_variables()


def rows(folder=FOLDER) -> list[dict]:
    return list(csv.DictReader(io.StringIO(exports().read_bytes(folder, "reconciliation.csv").decode("utf-8"))))


def finance_issues(sandbox):
    backend = sandbox.standin("gitlab").backend
    project = backend.project("professional-services/finance")
    return [i for i in backend.issues.values() if i.project_id == project.id and "sku-reconciliation" in i.description]


def last_summary() -> str:
    return StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_sku_reconciliation"})[0]["summary"]


def admin(sandbox, method, path, **kwargs):
    response = requests.request(method, sandbox.admin_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def test_reconciles_the_seeded_drift_with_the_real_services_yml(dag, recon):
    from airflow.utils.state import DagRunState

    assert run(dag).state == DagRunState.SUCCESS

    by_status = {}
    for row in rows():
        by_status.setdefault(row["status"], []).append(row)
    assert set(by_status) == {
        "duplicate_sku",
        "no_sku",
        "missing_in_zuora",
        "missing_in_services_yml",
        "retired_in_zuora",
        "not_yet_effective",
        "price_mismatch",
        "name_mismatch",
        "match",
    }
    assert {row["services_yml_id"] for row in by_status["no_sku"]} == {
        "training_sessions_admin",
        "health-check",
        "CTP-Student-Kits",
        "CTP-Certification-Packets",
    }
    assert [row["sku"] for row in by_status["missing_in_services_yml"]] == ["PS-ZUORA-ONLY"]
    assert by_status["retired_in_zuora"][0]["zuora_effective_end"] == "2025-06-30"
    assert all(row["currency"] for row in rows())
    names = exports().list_folder(FOLDER)
    assert names == ["README.md", "manifest.json", "reconciliation.csv", "reconciliation.xlsx"]
    manifest = json.loads(exports().read_bytes(FOLDER, "manifest.json"))
    csv_bytes = exports().read_bytes(FOLDER, "reconciliation.csv")
    assert manifest["files"]["reconciliation.csv"]["sha256"] == hashlib.sha256(csv_bytes).hexdigest()
    assert manifest["services_yml"]["ref"] == "main" and len(manifest["services_yml"]["blob_id"]) == 40
    assert manifest["rows"] == len(rows())
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(exports().read_bytes(FOLDER, "reconciliation.xlsx")))
    assert workbook.sheetnames == ["Summary", "Problems", "All rows"]
    assert workbook["All rows"].max_row == len(rows()) + 1
    [mail] = recon.smtp.store.all()
    assert mail["rcpt_tos"] == ["finance@example.com"] and AS_OF in mail["subject"]
    assert "reconciliation.xlsx" in mail["html"]
    [issue] = finance_issues(recon)
    assert issue.state == "opened" and "PS\\-ZUORA\\-ONLY" in issue.description


def test_rerun_gives_identical_bytes_and_no_second_mail_or_issue(dag, recon):
    run(dag)
    first = {name: exports().read_bytes(FOLDER, name) for name in ("reconciliation.csv", "reconciliation.xlsx")}
    run(dag)
    second = {name: exports().read_bytes(FOLDER, name) for name in ("reconciliation.csv", "reconciliation.xlsx")}

    assert first == second
    assert len(recon.smtp.store.all()) == 1
    assert len(finance_issues(recon)) == 1
    assert "finance issue #1 unchanged" in last_summary()


def test_services_yml_ref_and_drift_between_as_of_dates(dag, recon):
    run(dag, as_of="2026-11-20", services_yml_ref="catalog-2026-10")
    migration = [row for row in rows("sku_reconciliation/2026-11-20") if row["sku"] == "MIG+"]
    assert [row["status"] for row in migration] == ["match"]

    run(dag, as_of="2026-11-21", services_yml_ref="main")  # main raised the Migration+ price
    [row] = [row for row in rows() if row["sku"] == "MIG+"]
    assert row["status"] == "price_mismatch" and row["services_yml_price"] == "37500.00"
    assert "since the previous as_of: 1 new problem(s), 0 resolved" in last_summary()


def _small_catalog(tmp_path, monkeypatch, sandbox, price="100"):
    path = tmp_path / "services.yml"
    path.write_text("- id: svc-a\n  name: Service A\n  sku: SVC-A\n  price: 100\n", encoding="utf-8")
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG",
        json.dumps({"services_yml_local_path": str(path), "finance_recipients": "finance@example.com"}),
    )
    zuora = sandbox.standin("zuora")  # reload Zuora only: GitLab keeps the finance issue
    zuora.load_seed(
        {**sandbox.seed["zuora"], "catalog": "none", "records": _zuora_product("SVC-A", "Service A", price)}
    )


def _zuora_product(sku, name, price):
    return {
        "Product": [
            {"Id": "p1", "Name": name, "SKU": sku, "EffectiveStartDate": "2020-01-01", "EffectiveEndDate": "2099-12-31"}
        ],
        "ProductRatePlan": [
            {"Id": "rp1", "ProductId": "p1", "EffectiveStartDate": "2020-01-01", "EffectiveEndDate": "2099-12-31"}
        ],
        "ProductRatePlanCharge": [{"Id": "c1", "ProductRatePlanId": "rp1"}],
        "ProductRatePlanChargeTier": [
            {"Id": "t1", "ProductRatePlanChargeId": "c1", "Currency": "USD", "Price": price, "Tier": 1}
        ],
    }


def test_finance_issue_lifecycle(dag, recon, tmp_path, monkeypatch):
    run(dag)  # the seeded drift opens the issue
    [issue] = finance_issues(recon)
    assert issue.state == "opened"

    _small_catalog(tmp_path, monkeypatch, recon, price="100")
    run(dag, as_of="2026-11-22")
    [issue] = finance_issues(recon)
    assert issue.state == "closed"
    notes = [n.body for n in recon.standin("gitlab").backend.notes.values() if n.issue_id == issue.id]
    assert any("Everything is reconciled as of 2026-11-22" in body for body in notes)

    _small_catalog(tmp_path, monkeypatch, recon, price="150")
    run(dag, as_of="2026-11-23")
    [issue] = finance_issues(recon)
    assert issue.state == "opened" and "SVC\\-A" in issue.description
    assert any(
        "Drift is back" in n.body for n in recon.standin("gitlab").backend.notes.values() if n.issue_id == issue.id
    )


def test_yaml_syntax_error_fails_the_run_naming_line_and_column(dag, recon, tmp_path, monkeypatch):
    from airflow.utils.state import DagRunState

    path = tmp_path / "services.yml"
    path.write_text("- id: a\n  name: [unclosed\n- id: b\n", encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps({"services_yml_local_path": str(path)}))

    assert run(dag).state == DagRunState.FAILED
    [mail] = recon.smtp.store.all()
    assert "failed" in mail["subject"]
    assert f"{path}: YAML syntax error at line 3, column 5" in mail["html"]


def test_bad_entries_are_reported_and_the_rest_exported(dag, recon, tmp_path, monkeypatch):
    from airflow.utils.state import DagRunState

    path = tmp_path / "services.yml"
    path.write_text(
        "- id: svc-a\n  name: Service A\n  sku: SVC-A\n  price: 100\n- id: broken\n  price: lots\n", encoding="utf-8"
    )
    monkeypatch.setenv("AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps({"services_yml_local_path": str(path)}))

    assert run(dag).state == DagRunState.FAILED
    assert [row["sku"] for row in rows() if row["services_yml_id"] == "svc-a"] == ["SVC-A"]
    assert (
        "services.yml entry broken field line 5: price 'lots' is not an amount" in last_summary()
        or "failed 1" in last_summary()
    )
    manifest = json.loads(exports().read_bytes(FOLDER, "manifest.json"))
    assert manifest["invalid_services_yml_entries"] == [
        "services.yml entry broken (line 5): price 'lots' is not an amount"
    ]


def test_zuora_paging_session_expiry_and_429_change_nothing(dag, recon, monkeypatch):
    run(dag)
    expected = exports().read_bytes(FOLDER, "reconciliation.csv")
    monkeypatch.setenv("AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps({"zuora_batch_size": 10}))
    admin(recon, "PUT", "/zuora/faults", json={"retry_after_scale": 0.001})
    admin(recon, "POST", "/zuora/faults/script", json={"endpoint": "queryMore", "kind": "session_expired", "count": 1})
    admin(recon, "POST", "/zuora/faults/script", json={"endpoint": "query", "kind": "rate_limited", "count": 1})
    recon.standin("zuora").clear_call_counts()

    run(dag)

    assert exports().read_bytes(FOLDER, "reconciliation.csv") == expected
    counts = recon.standin("zuora").call_counts()
    assert counts["login"] == 2 and counts["queryMore"] > 4


def test_export_to_s3_through_moto_server(dag, recon, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_BASE", "s3://ps-exports/finance")
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_CONN_ID", "aws_sandbox")
    run(dag)
    keys = {item["key"] for item in recon.s3.state()["buckets"]["ps-exports"]}
    assert {
        f"finance/{FOLDER}/{name}"
        for name in ("README.md", "manifest.json", "reconciliation.csv", "reconciliation.xlsx")
    } <= keys
