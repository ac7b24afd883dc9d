"""Excel files with identical bytes for identical data.

openpyxl stamps ``modified`` with the wall clock at save time and zip entries with the current
time; both are rewritten here to a fixed moment so a re-run produces the same file.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def workbook_bytes(
    sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]], moment: datetime, title: str
) -> bytes:
    """Sheets of (name, header, rows) -> xlsx bytes stamped with ``moment``."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, header, rows in sheets:
        sheet = workbook.create_sheet(title=name[:31])
        sheet.append(list(header))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append(list(row))
        sheet.freeze_panes = "A2"
        for index, column in enumerate(header, start=1):
            width = max([len(str(column)), *(len(str(row[index - 1])) for row in rows[:200])], default=10)
            sheet.column_dimensions[sheet.cell(row=1, column=index).column_letter].width = min(max(width + 2, 8), 60)
    workbook.properties.creator = "ps-integrations"
    workbook.properties.lastModifiedBy = "ps-integrations"
    workbook.properties.title = title
    workbook.properties.created = moment
    buffer = io.BytesIO()
    workbook.save(buffer)
    return normalise(buffer.getvalue(), moment)


def normalise(data: bytes, moment: datetime) -> bytes:
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    source = zipfile.ZipFile(io.BytesIO(data))
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = content.decode("utf-8")
                text = re.sub(r"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rf"\g<1>{stamp}\g<2>", text)
                text = re.sub(r"(<dcterms:created[^>]*>)[^<]*(</dcterms:created>)", rf"\g<1>{stamp}\g<2>", text)
                content = text.encode("utf-8")
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, content)
    return output.getvalue()
