"""The SKU reconciliation's settings (the ``ps_sku_reconciliation_config`` variable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ps_integrations.exceptions import ConfigurationError

CONFIG_VARIABLE = "ps_sku_reconciliation_config"
MAX_ZUORA_BATCH_SIZE = 2000  # Zuora's QueryOptions.batchSize ceiling


@dataclass(frozen=True)
class ReconciliationConfig:
    services_yml_project: str = "professional-services/services-catalog"
    services_yml_path: str = "data/services.yml"
    services_yml_ref: str = "main"
    services_yml_local_path: str | None = None
    finance_project: str = "professional-services/finance"
    finance_recipients: str = "finance@example.com"
    zuora_batch_size: int = MAX_ZUORA_BATCH_SIZE
    # where finance opens the export folder in a browser; "{folder}" is replaced, e.g.
    # "https://s3.console.aws.amazon.com/s3/buckets/ps-exports?prefix=finance/{folder}/"
    exports_browse_url: str = ""

    def __post_init__(self) -> None:
        texts = ("services_yml_project", "services_yml_path", "services_yml_ref", "finance_project")
        for name in (*texts, "finance_recipients"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"{CONFIG_VARIABLE}: {name} must be a non-empty text, not {value!r}")
        if self.services_yml_local_path is not None and not isinstance(self.services_yml_local_path, str):
            raise ConfigurationError(f"{CONFIG_VARIABLE}: services_yml_local_path must be a path")
        if not isinstance(self.exports_browse_url, str):
            raise ConfigurationError(f"{CONFIG_VARIABLE}: exports_browse_url must be a text")
        size = self.zuora_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_ZUORA_BATCH_SIZE:
            raise ConfigurationError(
                f"{CONFIG_VARIABLE}: zuora_batch_size must be a whole number from 0 to {MAX_ZUORA_BATCH_SIZE} "
                f"(0 means {MAX_ZUORA_BATCH_SIZE}), not {size!r}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> ReconciliationConfig:
        from ps_integrations.settings import settings_from_mapping

        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{CONFIG_VARIABLE} must be a JSON object, not {type(data).__name__}")
        try:
            return settings_from_mapping(cls, data, CONFIG_VARIABLE)
        except ValueError as error:  # unknown keys
            raise ConfigurationError(str(error)) from None
