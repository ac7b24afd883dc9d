"""Excel files with identical bytes for identical data.

XlsxWriter (faster than openpyxl for writing) stamps zip entries with a fixed date; the document's
created date is set from the data (the ``as_of`` of an export), never the wall clock, so a re-run
produces the same file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def workbook_bytes(
    sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]], moment: datetime, title: str
) -> bytes:
    """Sheets of (name, header, rows) -> xlsx bytes. Strings and numbers only; empty strings stay empty."""
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
    for name, header, rows in sheets:
        sheet = workbook.add_worksheet(name[:31])
        # widths from the header and the first rows; set before any row is streamed
        widths = [len(str(column)) for column in header]
        for row in rows[:200]:
            for column, value in enumerate(row):
                widths[column] = max(widths[column], len(str(value)))
        for column, width in enumerate(widths):
            sheet.set_column(column, column, min(max(width + 2, 8), 60))
        sheet.freeze_panes(1, 0)
        sheet.write_row(0, 0, list(header), bold)
        write_string, write_number = sheet.write_string, sheet.write_number
        for row_number, row in enumerate(rows, start=1):
            for column, value in enumerate(row):
                if isinstance(value, str):
                    if value:
                        write_string(row_number, column, value)
                elif value is not None:
                    write_number(row_number, column, value)
    workbook.close()
    return buffer.getvalue()
