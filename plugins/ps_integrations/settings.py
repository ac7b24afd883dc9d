"""Job settings from an Airflow variable (JSON) into a frozen dataclass, refusing unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from ps_integrations.exceptions import ConfigurationError

T = TypeVar("T")


def settings_from_mapping(cls: type[T], data: Mapping[str, Any], source: str) -> T:
    """``cls(**data)`` after checking every key is a field; JSON lists become tuples.

    :param source: what the data came from (the variable's name), for the error message.
    :raises ConfigurationError: the data is not an object, names an unknown setting, or the settings
        refuse a value (their ``__post_init__`` checks).
    """
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source} must be a JSON object, not {type(data).__name__}")
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ConfigurationError(f"{source}: unknown settings {sorted(unknown)} (known: {sorted(known)})")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"{source}: {error}") from None
