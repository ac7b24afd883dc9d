"""Real reference data (copied from ../shared/reference): GitLab's services.yml."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# The project keeps one copy of the real file, in include/ (the product reads it too).
SERVICES_YML = Path(__file__).resolve().parents[2] / "include" / "reference" / "services.yml"


@cache
def services() -> list[dict[str, Any]]:
    """The entries of the real services.yml, as YAML reads them."""
    return list(yaml.safe_load(SERVICES_YML.read_text(encoding="utf-8")))


def price_of(entry: dict[str, Any]) -> int | None:
    """The entry's price as a number (the file has both ``35000`` and ``"$14,400"``)."""
    price = entry.get("price")
    if isinstance(price, int | float):
        return int(price)
    if isinstance(price, str):
        digits = re.sub(r"[^0-9.]", "", price)
        return int(float(digits)) if digits else None
    return None
