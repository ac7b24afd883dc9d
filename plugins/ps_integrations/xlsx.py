"""Excel files with identical bytes for identical data.

XlsxWriter (faster than openpyxl for writing) stamps zip entries with a fixed date; the document's
created date is set from the data (the ``as_of`` of an export), never the wall clock, so a re-run
produces the same file. Money is written as numbers with the currency's number format (the cell
keeps the exact value; the format shows two decimals), dates as dates, text as text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# Excel number formats per ISO currency; others show the code: "[$CHF] #,##0.00"
CURRENCY_FORMATS = {
    "USD": "[$$-409]#,##0.00",
    "EUR": "[$€-2] #,##0.00",
    "GBP": "[$£-809]#,##0.00",
    "JPY": "[$¥-411]#,##0",
}
DATE_FORMAT = "yyyy-mm-dd"


def currency_format(currency: str) -> str:
    if currency in CURRENCY_FORMATS:
        return CURRENCY_FORMATS[currency]
    if currency.isalpha() and len(currency) == 3:
        return f"[${currency.upper()}] #,##0.00"
    return "#,##0.00"


@dataclass(frozen=True)
class Money:
    """A cell holding an amount shown in its currency's format."""

    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Sheet:
    """One worksheet. ``table``: bold frozen header row with an autofilter over the rows.
    ``bold_rows``: row numbers (0 = header) written bold, for sheets laid out as sections."""

    name: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    table: bool = True
    bold_rows: frozenset[int] = field(default_factory=frozenset)
    widths: Sequence[int] | None = None


def workbook_bytes(sheets: Sequence[Sheet], moment: datetime, title: str) -> bytes:
    """Sheets -> xlsx bytes. Cells: str, int, Decimal/float, date, ``Money``; None and "" stay empty."""
    import xlsxwriter

    buffer = io.BytesIO()
    # constant_memory streams each row to a temporary file: less memory and faster for big sheets
    workbook = xlsxwriter.Workbook(
        buffer, {"constant_memory": True, "in_memory": False, "strings_to_numbers": False, "strings_to_urls": False}
    )
    workbook.set_properties(
        {"title": title, "author": "ps-integrations", "company": "ps-integrations", "created": moment}
    )
    bold = workbook.add_format({"bold": True})
    wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
    date_format = workbook.add_format({"num_format": DATE_FORMAT})
    money_formats: dict[str, Any] = {}

    def money_format(currency: str) -> Any:
        if currency not in money_formats:
            money_formats[currency] = workbook.add_format({"num_format": currency_format(currency)})
        return money_formats[currency]

    for sheet_spec in sheets:
        sheet = workbook.add_worksheet(sheet_spec.name[:31])
        header, rows = list(sheet_spec.header), sheet_spec.rows
        widths = list(sheet_spec.widths or [])
        if not widths:
            # widths from the header and the first rows; set before any row is streamed
            widths = [len(str(column)) for column in header]
            for row in rows[:200]:
                for column, value in enumerate(row):
                    if column >= len(widths):
                        widths.append(0)
                    widths[column] = max(widths[column], len(_shown(value)))
        for column, width in enumerate(widths):
            sheet.set_column(column, column, min(max(width + 2, 8), 60), None if sheet_spec.table else wrap)
        if sheet_spec.table:
            sheet.freeze_panes(1, 0)
            sheet.autofilter(0, 0, max(len(rows), 1), max(len(header) - 1, 0))
        sheet.write_row(0, 0, header, bold)
        write_string, write_number, write_datetime = sheet.write_string, sheet.write_number, sheet.write_datetime
        for row_number, row in enumerate(rows, start=1):
            emphasis = bold if row_number in sheet_spec.bold_rows else None
            for column, value in enumerate(row):
                kind = type(value)
                if kind is str:
                    if value:
                        write_string(row_number, column, value, emphasis)
                elif kind is Money:
                    write_number(row_number, column, float(value.amount), money_format(value.currency))
                elif value is None:
                    continue
                elif kind is date:
                    write_datetime(row_number, column, datetime(value.year, value.month, value.day), date_format)
                elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
                    write_number(row_number, column, float(value), emphasis)
                else:
                    write_string(row_number, column, str(value), emphasis)
    workbook.close()
    return buffer.getvalue()


def _shown(value: Any) -> str:
    if isinstance(value, Money):
        return f"{value.currency} {value.amount:,.2f}"
    return "" if value is None else str(value)
