"""The exports store on both back-ends: local files and S3 (moto's server, reached through s3fs)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from ps_integrations.exports import Column, ExportStore, csv_file, format_value, json_file

COLUMNS = (
    Column("engagement", "Engagement issue URL"),
    Column("closed_on", "Date the engagement closed"),
    Column("amount", "Amount invoiced"),
    Column("currency", "ISO 4217 currency of `amount`"),
    Column("billable", "Whether the hours bill"),
)
ROWS = [
    {
        "engagement": "https://gitlab.example/ps/1",
        "closed_on": date(2026, 3, 1),
        "amount": Decimal("14400.00"),
        "currency": "USD",
        "billable": True,
    },
    {
        "engagement": 'Zürich rollout, "phase 2"',
        "closed_on": None,
        "amount": Decimal("-0.5"),
        "currency": "EUR",
        "billable": False,
    },
]


@pytest.fixture(params=["file", "s3"])
def exports(request, tmp_path, monkeypatch):
    if request.param == "file":
        return ExportStore((tmp_path / "exports").as_uri())
    sandbox = request.getfixturevalue("sandbox")
    definition = sandbox.airflow_connections()["aws_sandbox"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_SANDBOX", json.dumps(definition))
    return ExportStore("s3://ps-exports/finance", conn_id="aws_sandbox")


def test_folder_is_written_with_a_data_dictionary(exports):
    table = csv_file("rows.csv", "Engagements closed in the period.", COLUMNS, ROWS)
    written = exports.write_folder("timesheets/2026-W09", "Timesheet export", [table])

    assert [url.rsplit("/", 1)[1] for url in written] == ["rows.csv", "README.md"]
    assert exports.list_folder("timesheets/2026-W09") == ["README.md", "rows.csv"]
    csv_text = exports.read_bytes("timesheets/2026-W09", "rows.csv").decode("utf-8")
    assert csv_text == (
        "engagement,closed_on,amount,currency,billable\n"
        "https://gitlab.example/ps/1,2026-03-01,14400.00,USD,true\n"
        '"Zürich rollout, ""phase 2""",,-0.5,EUR,false\n'
    )
    readme = exports.read_bytes("timesheets/2026-W09", "README.md").decode("utf-8")
    for column in COLUMNS:
        assert f"- `{column.name}`: {column.description}" in readme
    assert "Engagements closed in the period." in readme


def test_rewriting_a_folder_gives_identical_bytes(exports):
    files = [
        csv_file("rows.csv", "d", COLUMNS, ROWS),
        json_file("manifest.json", "m", {"b": 1, "a": [Decimal("1.10")]}),
    ]
    exports.write_folder("same", "Same", files)
    first = {name: exports.read_bytes("same", name) for name in exports.list_folder("same")}
    exports.write_folder("same", "Same", files)
    second = {name: exports.read_bytes("same", name) for name in exports.list_folder("same")}

    assert first == second
    assert json.loads(first["manifest.json"]) == {"a": ["1.10"], "b": 1}


def test_s3_export_lands_in_the_bucket(request, tmp_path, monkeypatch):
    sandbox = request.getfixturevalue("sandbox")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_SANDBOX", json.dumps(sandbox.airflow_connections()["aws_sandbox"]))
    written = ExportStore("s3://ps-exports/x", conn_id="aws_sandbox").write_folder(
        "p", "t", [csv_file("a.csv", "d", COLUMNS, ROWS)]
    )

    keys = {item["key"]: item["size"] for item in sandbox.s3.state()["buckets"]["ps-exports"]}
    assert written == ["s3://ps-exports/x/p/a.csv", "s3://ps-exports/x/p/README.md"]
    assert set(keys) == {"x/p/a.csv", "x/p/README.md"}
    assert keys["x/p/a.csv"] > 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (date(2026, 2, 1), "2026-02-01"),
        (datetime(2026, 2, 1, 23, 59, 30, tzinfo=UTC), "2026-02-01T23:59:30Z"),
        (Decimal("1E+3"), "1000"),
        (0.1, "0.1"),
        (12, "12"),
    ],
)
def test_cell_format(value, expected):
    assert format_value(value) == expected


def test_prerendered_csv_lines_match_the_csv_writer_byte_for_byte():
    from ps_integrations.exports import Column, csv_field, csv_file, csv_lines_file

    columns = (Column("a", "first"), Column("b", "second"), Column("c", "third"))
    rows = [
        {"a": "plain", "b": 'say "hi"', "c": "x,y"},
        {"a": "line\nbreak", "b": "", "c": "carriage\rreturn"},
        {"a": " spaced ", "b": "é ü ✓", "c": "'single'"},
    ]
    expected = csv_file("t.csv", "d", columns, rows)
    lines = [",".join(csv_field(row[column.name]) for column in columns) for row in rows]
    assert csv_lines_file("t.csv", "d", columns, lines).content == expected.content
