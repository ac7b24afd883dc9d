"""The business rules kept in YAML under ``include/``, read in one place: the timesheet roll-up's
rules (roles, rate card, hours per SKU) and the close-out's cost rates. A file that does not parse or
fails validation is a :class:`ConfigurationError` naming it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ps_integrations.domain.engagement_closeout import CostRates
from ps_integrations.domain.timesheets import RollupRules
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.paths import INCLUDE_DIR

ROLLUP_RULES_FILE = INCLUDE_DIR / "ps_timesheet_rollup" / "rules.yml"
COST_RATES_FILE = INCLUDE_DIR / "ps_engagement_closeout" / "cost_rates.yml"
T = TypeVar("T")


def load_yaml_rules(path: Path, parse: Callable[[Mapping[str, Any]], T]) -> T:
    """``parse`` applied to the YAML mapping in ``path``; every problem named with the file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(f"{path}: cannot be read: {error}") from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{path}: not a mapping")
    try:
        return parse(data)
    except (ConfigurationError, TypeError, ValueError) as error:
        raise ConfigurationError(f"{path}: {error}") from None


def load_rollup_rules(path: Path | None = None) -> RollupRules:
    """The timesheet roll-up's rules (``include/ps_timesheet_rollup/rules.yml`` unless given)."""
    return load_yaml_rules(path or ROLLUP_RULES_FILE, RollupRules.from_mapping)


def load_cost_rates(path: Path | None = None) -> CostRates:
    """The close-out's hourly cost per role (``include/ps_engagement_closeout/cost_rates.yml`` unless given)."""
    return load_yaml_rules(path or COST_RATES_FILE, CostRates.from_mapping)
