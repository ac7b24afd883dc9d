"""The SKU reconciliation through real DAG runs against the Zuora and GitLab stand-ins."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

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
    """The CSV's rows keyed by the export's field keys (the file itself has plain headers)."""
    from ps_integrations.jobs.sku_reconciliation import FIELDS

    content = exports().read_bytes(folder, "reconciliation.csv")
    assert content.startswith("\ufeff".encode())  # UTF-8 byte order mark: Excel reads the file as UTF-8
    reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig")))
    return [{field.key: row[field.header] for field in FIELDS} for row in reader]


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
        "sku_spelling_differs",
        "duplicate_services_yml_id",
        "duplicate_sku",
        "no_sku",
        "incomplete_in_zuora",
        "missing_in_zuora",
        "missing_in_services_yml",
        "retired_in_zuora",
        "not_yet_effective",
        "no_price_in_zuora",
        "price_mismatch",
        "name_mismatch",
        "not_compared",
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
    # a live product without any rate plan has no price in Zuora (not a price mismatch)
    assert [row["sku"] for row in by_status["no_price_in_zuora"]] == ["GL-DOF"]
    # EUR prices only Zuora states are not compared, and say so (they used to count as matches)
    assert {row["currency"] for row in by_status["not_compared"]} == {"EUR"}
    assert all("services.yml's price is in USD, not EUR" in row["details"] for row in by_status["not_compared"])
    # the services.yml id used twice in the real file is reported on both entries' rows
    assert {row["sku"] for row in by_status["duplicate_services_yml_id"]} == {"GL-ENGR-12", "GL-ENGR-CLEARED-12"}
    # two Zuora products on one SKU: one row each, each with its own price
    assert sorted(row["zuora_price"] for row in by_status["duplicate_sku"]) == ["500.00", "525.00"]
    names = exports().list_folder(FOLDER)
    assert names == ["README.md", "manifest.json", "reconciliation.csv", "reconciliation.xlsx"]
    manifest = json.loads(exports().read_bytes(FOLDER, "manifest.json"))
    csv_bytes = exports().read_bytes(FOLDER, "reconciliation.csv")
    assert manifest["files"]["reconciliation.csv"]["sha256"] == hashlib.sha256(csv_bytes).hexdigest()
    assert manifest["services_yml"]["ref"] == "main" and len(manifest["services_yml"]["blob_id"]) == 40
    assert manifest["rows"] == len(rows())
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(exports().read_bytes(FOLDER, "reconciliation.xlsx")))
    assert workbook.sheetnames == ["Summary", "Needs action", "All rows"]
    assert workbook["All rows"].max_row == len(rows()) + 1
    [mail] = recon.smtp.store.all()
    assert mail["rcpt_tos"] == ["finance@example.com"] and AS_OF in mail["subject"]
    assert "reconciliation.xlsx" in mail["html"]
    [issue] = finance_issues(recon)
    assert issue.state == "opened" and "| PS-ZUORA-ONLY |" in issue.description


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
    assert row["zuora_price"] == "35000.00" and row["difference"] == "2500.00"
    assert row["action"] == (
        "services.yml: change the USD price of entry migration-plus (line 484) from 37500.00 to 35000.00 "
        "(Zuora's price)"
    )
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
    assert issue.state == "opened" and "| SVC-A |" in issue.description
    assert any(
        "Drift is back" in n.body for n in recon.standin("gitlab").backend.notes.values() if n.issue_id == issue.id
    )


def test_yaml_syntax_error_fails_the_run_naming_line_and_column(dag, recon, tmp_path, monkeypatch):
    from airflow.utils.state import DagRunState

    path = tmp_path / "services.yml"
    path.write_text("- id: a\n  name: [unclosed\n- id: b\n", encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps({"services_yml_local_path": str(path)}))

    assert run(dag).state == DagRunState.FAILED
    [finance, ops] = sorted(recon.smtp.store.all(), key=lambda mail: mail["rcpt_tos"])
    assert "failed" in ops["subject"] and ops["rcpt_tos"] == ["ps-ops@example.com"]
    assert f"{path}: YAML syntax error at line 3, column 5" in ops["html"]
    # finance hears it too: nothing was reconciled for this date, and why
    assert finance["rcpt_tos"] == ["finance@example.com"]
    assert finance["subject"] == (
        f"[ps-integrations] SKU reconciliation {AS_OF} could not run: services.yml line 3 is not valid YAML"
    )
    for part in (finance["text"], finance["html"]):
        assert "could not run" in part and "line 3, column 5" in part and "Nothing was reconciled" in part
    assert exports().list_folder(FOLDER) == []

    run(dag)  # the retry of the same broken file does not mail finance again
    assert len([mail for mail in recon.smtp.store.all() if mail["rcpt_tos"] == ["finance@example.com"]]) == 1


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


# --- issue #18: statuses that mean what they say, files finance can act on -------------------------

NOTHING_LEAKS = re.compile(r"\b(nan|none|null|undefined)\b", re.IGNORECASE)


def _local_catalog(tmp_path, monkeypatch, sandbox, text, records, **config):
    path = tmp_path / "services.yml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG",
        json.dumps({"services_yml_local_path": str(path), "finance_recipients": "finance@example.com", **config}),
    )
    merged = {"Product": [], "ProductRatePlan": [], "ProductRatePlanCharge": [], "ProductRatePlanChargeTier": []}
    for product in records:
        for name, items in product.items():
            merged[name].extend(items)
    sandbox.standin("zuora").load_seed({**sandbox.seed["zuora"], "catalog": "none", "records": merged})


def _product(key, sku, name, prices=(("USD", "100"),)):
    """A Zuora product with one rate plan per (currency, price); a None currency or price is left out."""
    records = _zuora_product(sku, name, "0")
    records["Product"][0]["Id"] = f"p-{key}"
    plans, charges, tiers = [], [], []
    for number, (currency, price) in enumerate(prices):
        plan, charge = f"rp-{key}-{number}", f"c-{key}-{number}"
        plans.append(
            {"Id": plan, "ProductId": f"p-{key}", "EffectiveStartDate": "2020-01-01", "EffectiveEndDate": "2099-12-31"}
        )
        charges.append({"Id": charge, "ProductRatePlanId": plan})
        tier = {"Id": f"t-{key}-{number}", "ProductRatePlanChargeId": charge, "Tier": 1}
        if currency is not None:
            tier["Currency"] = currency
        if price is not None:
            tier["Price"] = price
        tiers.append(tier)
    records.update(ProductRatePlan=plans, ProductRatePlanCharge=charges, ProductRatePlanChargeTier=tiers)
    return records


def _workbook(folder=FOLDER):
    import openpyxl

    return openpyxl.load_workbook(io.BytesIO(exports().read_bytes(folder, "reconciliation.xlsx")))


def _every_text(sandbox, folder=FOLDER) -> dict[str, str]:
    """Everything finance reads: the CSV, every workbook cell, the issue, both mail parts."""
    cells = [
        str(cell) for sheet in _workbook(folder) for row in sheet.iter_rows(values_only=True) for cell in row if cell
    ]
    texts = {
        "csv": exports().read_bytes(folder, "reconciliation.csv").decode("utf-8-sig"),
        "xlsx": "\n".join(cells),
        "issue": "\n".join(issue.description for issue in finance_issues(sandbox)),
    }
    for number, mail in enumerate(sandbox.smtp.store.all()):
        texts[f"mail {number} text"] = mail["text"] or ""
        texts[f"mail {number} html"] = mail["html"] or ""
    return texts


def test_incomplete_zuora_records_are_named_and_nothing_writes_nan(dag, recon, tmp_path, monkeypatch):
    from airflow.utils.state import DagRunState

    _local_catalog(
        tmp_path,
        monkeypatch,
        recon,
        "- id: a\n  name: A\n  sku: SVC-A\n  price: 100\n- id: b\n  name: B\n  sku: SVC-B\n  price: 200\n"
        "- id: c\n  name: C\n  sku: SVC-C\n",
        [
            _product("a", "SVC-A", "A", prices=(("USD", None),)),  # a tier without a price
            _product("b", "SVC-B", "B", prices=(("USD", "200"), (None, "180"))),  # a tier without a currency
            _product("c", "SVC-C", "C", prices=(("USD", "300"),)),  # services.yml has no price
        ],
    )
    assert run(dag).state == DagRunState.SUCCESS

    by_sku = {row["sku"]: row for row in rows()}
    assert by_sku["SVC-A"]["status"] == "incomplete_in_zuora"
    assert by_sku["SVC-A"]["details"] == (
        "Zuora ProductRatePlanChargeTier t-a-0 (charge c-a-0, rate plan rp-a-0) has no Price"
    )
    assert by_sku["SVC-A"]["zuora_price"] == "" and by_sku["SVC-A"]["difference"] == ""
    assert by_sku["SVC-B"]["status"] == "incomplete_in_zuora" and by_sku["SVC-B"]["currency"] == "USD"
    assert "t-b-1 (charge c-b-1, rate plan rp-b-1) has no Currency" in by_sku["SVC-B"]["details"]
    assert by_sku["SVC-B"]["zuora_price"] == "200.00"  # the complete tier is still compared
    assert by_sku["SVC-C"]["status"] == "not_compared"
    for where, text in _every_text(recon).items():
        assert not NOTHING_LEAKS.search(text), f"{where}: {NOTHING_LEAKS.search(text)}"
    issue = finance_issues(recon)[0].description
    assert "Finance: complete the price record(s) in Zuora: ProductRatePlanChargeTier t\\-a\\-0" not in issue
    assert "Finance: complete the price record(s) in Zuora: ProductRatePlanChargeTier t-a-0 (no Price)" in issue


QUIRKS_YML = """\
- &base
  id: dup
  name: Base
  sku: GL-BASE
  price: 10
- *base
- id: spaced
  name: Spaced
  sku: "GL-SPACE "
  price: 10
- id: cased
  name: Cased
  sku: gl-case
  price: 10
- id: octal
  name: Octal
  sku: 0755
  price: 10
- id: clock
  name: Clock
  sku: 12:30
  price: 10
- id: norway
  name: Norway
  sku: NO
  price: 10
- id: twice
  name: Twice
  sku: GL-TWICE
  price: 10
"""


def test_sku_spellings_duplicates_aliases_and_yaml_coercion(dag, recon, tmp_path, monkeypatch):
    _local_catalog(
        tmp_path,
        monkeypatch,
        recon,
        QUIRKS_YML,
        [
            _product("base", "GL-BASE", "Base", (("USD", "10"),)),
            _product("space", "GL-SPACE", "Spaced", (("USD", "10"),)),
            _product("case", "GL-CASE", "Cased", (("USD", "10"),)),
            _product("octal", "0755", "Octal", (("USD", "10"),)),
            _product("clock", "12:30", "Clock", (("USD", "10"),)),
            _product("no", "NO", "Norway", (("USD", "10"),)),
            _product("twice1", "GL-TWICE", "Twice", (("USD", "10"),)),
            _product("twice2", "GL-TWICE", "Twice", (("USD", "12"),)),
        ],
    )
    run(dag)

    found = rows()
    by_sku = {}
    for row in found:
        by_sku.setdefault(row["sku"], []).append(row)
    # whitespace and case: their own status, raw strings quoted with where each comes from, not merged
    [spaced] = by_sku["GL-SPACE"]
    assert spaced["status"] == "sku_spelling_differs" and spaced["services_yml_id"] == "spaced"
    assert 'SKU written differently: "GL-SPACE " in services.yml (id spaced, line 9, column 8); ' in spaced["details"]
    assert '"GL-SPACE" in Zuora (product p-space)' in spaced["details"]
    [cased] = by_sku["GL-CASE"]
    assert cased["status"] == "sku_spelling_differs"
    assert cased["action"] == 'services.yml: write the SKU of entry cased (line 11) exactly as Zuora does: "GL-CASE"'
    # unquoted SKUs YAML reads as something else: line and column, matched as written
    coerced = {row["sku"]: row for row in found if row["status"] == "sku_needs_quotes"}
    assert set(coerced) == {"0755", "12:30", "NO"}
    assert coerced["0755"]["details"].startswith(
        "services.yml line 17, column 8: the unquoted SKU 0755 is read by YAML as the number 493"
    )
    assert "read by YAML as the number 750" in coerced["12:30"]["details"]
    assert "read by YAML as the boolean false" in coerced["NO"]["details"]
    assert coerced["NO"]["action"] == 'services.yml: quote the SKU at line 25, column 8: sku: "NO"'
    assert all(row["zuora_product_id"] for row in coerced.values())  # still matched to Zuora by the text
    # two Zuora products on one SKU: both rows, both prices
    twice = by_sku["GL-TWICE"]
    assert [(row["zuora_product_id"], row["zuora_price"], row["difference"]) for row in twice] == [
        ("p-twice1", "10.00", "0.00"),
        ("p-twice2", "12.00", "-2.00"),
    ]
    assert all("10.00 USD" in row["details"] and "12.00 USD" in row["details"] for row in twice)
    # the id used twice (through an alias) in exports, issue and mail, the alias at its own line
    dup = [row for row in found if row["services_yml_id"] == "dup"]
    assert [row["services_yml_line"] for row in dup] == ["1", "6"]
    assert {row["status"] for row in dup} == {"duplicate_services_yml_id"}
    reported = "dup (line 1, line 6 (alias of line 1))"
    manifest = json.loads(exports().read_bytes(FOLDER, "manifest.json"))
    assert manifest["duplicated_services_yml_ids"] == [reported]
    summary = {row[0]: row[1] for row in _workbook()["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["services.yml ids used more than once"] == reported
    assert reported in finance_issues(recon)[0].description
    [mail] = recon.smtp.store.all()
    assert reported in mail["text"] and reported in mail["html"]


def test_output_does_not_depend_on_zuora_record_order(dag, recon):
    zuora = recon.standin("zuora")
    first = [record["Id"] for record in zuora.backend.query("select Id from Product", None)["records"]]
    second = [record["Id"] for record in zuora.backend.query("select Id from Product", None)["records"]]
    assert sorted(first) == sorted(second) and first != second  # the stand-in answers in a random order

    run(dag)
    expected = {name: exports().read_bytes(FOLDER, name) for name in ("reconciliation.csv", "reconciliation.xlsx")}
    for seed in (1, 2):
        zuora.load_seed({**recon.seed["zuora"], "record_order_seed": seed})
        run(dag)
        assert {name: exports().read_bytes(FOLDER, name) for name in expected} == expected


def test_workbook_finance_can_act_on(dag, recon):
    from ps_integrations.domain.sku_reconciliation import GLOSSARY, SEVERITY, sku_key
    from ps_integrations.jobs.sku_reconciliation import FIELDS

    run(dag)
    import zipfile

    from lxml import etree

    content = exports().read_bytes(FOLDER, "reconciliation.xlsx")
    with zipfile.ZipFile(io.BytesIO(content)) as archive:  # every part is well-formed XML
        for name in archive.namelist():
            etree.fromstring(archive.read(name))
        workbook_xml = archive.read("xl/workbook.xml").decode()
    assert "_xlnm._FilterDatabase" in workbook_xml  # Excel's name for a sheet's filter range
    workbook = _workbook()
    assert workbook.sheetnames == ["Summary", "Needs action", "All rows"]
    csv_rows = rows()

    summary = workbook["Summary"]
    labels = {row[0]: row[1:] for row in summary.iter_rows(values_only=True) if row and row[0]}
    assert labels["As of"][0].date().isoformat() == AS_OF
    assert labels["Zuora endpoint"][0] == recon.url("zuora") + "/apps/services/a/78.0"
    assert labels["services.yml project"][0] == "professional-services/services-catalog"
    assert labels["services.yml path"][0] == "data/services.yml" and labels["services.yml ref"][0] == "main"
    assert re.fullmatch(r"[0-9a-f]{40}", labels["services.yml blob id"][0])
    for status, meaning in GLOSSARY.items():
        count = sum(1 for row in csv_rows if row["status"] == status)
        assert labels[status][0] == count and labels[status][2] == meaning
    assert labels["price_mismatch"][1] == "yes" and labels["not_compared"][1] == "no"
    assert labels["Rows needing action"][0] == workbook["Needs action"].max_row - 1

    sheet = workbook["All rows"]
    header = [cell.value for cell in sheet[1]]
    assert header == [field.header for field in FIELDS]
    assert "services.yml price" in header and "Difference (services.yml minus Zuora)" in header
    assert sheet.freeze_panes == "A2"
    from openpyxl.utils import get_column_letter

    # every column filterable: 19 of Zuora and services.yml, 8 of Salesforce's side (issue #19)
    assert (
        sheet.auto_filter.ref
        == f"A1:{get_column_letter(len(FIELDS))}{len(csv_rows) + 1}"
        == f"A1:AA{len(csv_rows) + 1}"
    )
    column = {name: header.index(name) for name in header}
    table = [list(row) for row in sheet.iter_rows(min_row=2)]
    statuses = [row[column["Status"]].value for row in table]
    assert [SEVERITY[status] for status in statuses] == sorted(SEVERITY[status] for status in statuses)
    for status in set(statuses):
        skus = [sku_key(row[column["SKU"]].value or "") for row in table if row[column["Status"]].value == status]
        assert skus == sorted(skus), status
    formats = {"USD": "$", "EUR": "€"}
    priced = 0
    for row in table:
        for name in ("services.yml price", "Zuora price", "Difference (services.yml minus Zuora)"):
            cell = row[column[name]]
            if cell.value is None:
                continue
            priced += 1
            assert cell.data_type == "n" and isinstance(cell.value, int | float)
            assert formats[row[column["Currency"]].value] in cell.number_format and "0.00" in cell.number_format
    assert priced > 50
    [mismatch] = [
        row for row in table if row[column["SKU"]].value == "GL-CICD-R" and row[column["Currency"]].value == "USD"
    ]
    assert [mismatch[column[name]].value for name in ("services.yml price", "Zuora price")] == [5000, 5500]
    assert mismatch[column["Difference (services.yml minus Zuora)"]].value == -500
    assert mismatch[column["Zuora end date"]].is_date
    assert mismatch[column["Action"]].value.startswith("services.yml: change the USD price")
    needs = workbook["Needs action"]
    assert needs.freeze_panes == "A2" and needs.auto_filter.ref
    assert {row[2] for row in needs.iter_rows(min_row=2, values_only=True)}.isdisjoint({"match", "not_compared"})


def test_finance_mail_names_the_skus_the_issue_and_the_files(dag, recon, monkeypatch):
    browse = "https://exports.example.com/browse/{folder}/"
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG",
        json.dumps({"finance_recipients": "finance@example.com", "exports_browse_url": browse}),
    )
    run(dag)

    [mail] = recon.smtp.store.all()
    [issue] = finance_issues(recon)
    issue_url = f"{recon.url('gitlab')}/professional-services/finance/-/issues/{issue.iid}"
    text, body = mail["text"], mail["html"]
    assert "- PS-ZUORA-ONLY USD: services.yml: add an entry for SKU PS-ZUORA-ONLY" in text
    assert "- GL-JIRA USD: Finance: file a SKU request to create GL-JIRA in Zuora" in text
    assert "<td>PS-ZUORA-ONLY</td><td>USD</td><td>missing_in_services_yml</td>" in body
    assert f"Finance issue: {issue_url}" in text and f"<a href='{issue_url}'>" in body
    folder_url = browse.replace("{folder}", FOLDER)
    assert folder_url in text and f"<a href='{folder_url}'>" in body
    assert sorted(item["filename"] for item in mail["attachments"]) == ["reconciliation.csv", "reconciliation.xlsx"]
    for part in (text, body):
        assert "file://" not in part and "/tmp/" not in part
    needing = [row for row in rows() if row["status"] not in ("match", "not_compared")]
    assert f": {len(needing)} row(s) need action" in mail["subject"]
    assert all(row["action"] in text for row in needing)


def test_issue_table_reads_plainly(dag, recon):
    run(dag)
    [issue] = finance_issues(recon)
    [csv_row] = [row for row in rows() if row["sku"] == "GL-CICD-R" and row["currency"] == "USD"]
    [line] = [line for line in issue.description.splitlines() if line.startswith("| GL-CICD-R |")]
    cells = [cell.strip() for cell in line.strip("|").split(" | ")]
    assert cells[:3] == ["GL-CICD-R", "USD", "price_mismatch"]
    assert cells[4:9] == ["5000.00", "5500.00", "-500.00", csv_row["services_yml_id"], csv_row["services_yml_name"]]
    assert cells[9:] == [csv_row["zuora_product_id"], csv_row["zuora_name"]]
    assert "\\" not in "".join(cells[:3] + cells[4:8])
    assert "| MIG+ |" in issue.description or "MIG+" not in issue.description


def test_csv_cells_never_run_as_excel_formulas():
    from datetime import date
    from decimal import Decimal

    from ps_integrations.domain.services_catalog import ServiceEntry
    from ps_integrations.domain.sku_reconciliation import reconcile
    from ps_integrations.jobs.sku_reconciliation import reconciliation_csv

    entry = ServiceEntry(id="x", name='=HYPERLINK("http://evil")', sku="@SUM(1)", price=Decimal(5))
    content = reconciliation_csv(reconcile([entry], [], date(2026, 11, 21))).content.decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(content)))
    assert row["services.yml name"] == '\'=HYPERLINK("http://evil")' and row["SKU"] == "'@SUM(1)"
    assert row["services.yml price"] == "5.00"


def test_mail_attaches_the_workbook_first_and_only_what_fits():
    from ps_integrations.exports import ExportFile
    from ps_integrations.jobs.sku_reconciliation import MAX_ATTACHMENT_BYTES, attachable

    table = ExportFile("reconciliation.csv", b"x" * (MAX_ATTACHMENT_BYTES - 1000), "")
    workbook = ExportFile("reconciliation.xlsx", b"y" * 2000, "")
    assert [f.name for f in attachable([table, workbook])] == ["reconciliation.xlsx"]
    assert [f.name for f in attachable([workbook], 100)] == []


# --- issue #18 open item: a kill between SMTP and the record (found by the chaos harness, #23) ----------


def test_a_sigkill_between_the_smtp_send_and_its_record_never_mails_finance_twice(dag, recon, tmp_path):
    """The SMTP server keeps the finance mail, then the task process is killed before it hears the 250."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from airflow.utils.state import DagRunState

    from ps_integrations import clock

    recon.smtp.set_reply_delay(30)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    log_path = tmp_path / "crash.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [airflow, "dags", "test", "ps_sku_reconciliation", clock.now().isoformat(), "--conf", json.dumps(DEFAULTS)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not recon.smtp.store.all():
            assert process.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    recon.smtp.set_reply_delay(0)
    assert process.returncode == -signal.SIGKILL
    [delivered] = recon.smtp.store.all()
    assert delivered["rcpt_tos"] == ["finance@example.com"]

    assert run(dag).state == DagRunState.SUCCESS  # the next run: not a failure...

    assert recon.smtp.store.all() == [delivered]  # ...and no second mail
    summary = last_summary()
    assert "mails interrupted 1" in summary
    assert f"finance mail of {AS_OF} INTERRUPTED" in summary and "check the mailbox of finance@example.com" in summary
    assert len(finance_issues(recon)) == 1


def test_a_finance_issue_whose_creation_answer_was_lost_gets_no_second_issue_nor_mail(dag, recon, monkeypatch):
    """Chaos finding: GitLab created the finance issue but a proxy answered 504. The run mails finance
    (without the issue) and fails naming the issue; the retry finds the issue by its marker - no second
    issue, and no second mail of the same reconciliation for the link it now knows."""
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_SKU_RECONCILIATION_CONFIG", json.dumps({"finance_recipients": "finance@example.com"})
    )
    admin(
        recon,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "create_issue", "kind": "answer_lost", "count": 1, "status": 504},
    )

    first = run(dag)
    again = run(dag)

    assert (first.state, again.state) == ("failed", "success")
    assert len(finance_issues(recon)) == 1
    reconciliation_mails = [mail for mail in recon.smtp.store.all() if "need action" in mail["subject"]]
    assert len(reconciliation_mails) == 1  # (the failed run's alert is another mail)
