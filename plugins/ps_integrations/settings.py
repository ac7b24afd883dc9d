"""Job settings from an Airflow variable (JSON) into a frozen dataclass, refusing unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def settings_from_mapping(cls: type[T], data: Mapping[str, Any], source: str) -> T:
    """``cls(**data)`` after checking every key is a field; JSON lists become tuples.

    :param source: what the data came from (the variable's name), for the error message.
    """
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{source}: unknown settings {sorted(unknown)} (known: {sorted(known)})")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
    return cls(**values)
