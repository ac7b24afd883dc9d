"""The SKU reconciliation's settings (the ``ps_sku_reconciliation_config`` variable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ps_integrations.exceptions import ConfigurationError

CONFIG_VARIABLE = "ps_sku_reconciliation_config"
MAX_ZUORA_BATCH_SIZE = 2000  # Zuora's QueryOptions.batchSize ceiling
# services.yml's categories, which the PS products' Product2.Family follow
PS_FAMILIES = ("Education", "Integration", "Implementation", "Migration", "Consulting")


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
    # issue #19: Salesforce's price book as the third system (off: Zuora against services.yml only)
    salesforce: bool = False
    salesforce_product_families: tuple[str, ...] = PS_FAMILIES  # Product2.Family of PS products
    salesforce_price_book: str | None = None  # the PS price book sold from (None: the standard one)
    salesforce_org_currency: str = "USD"  # the currency of an org without multi-currency
    # issue #19: one merge request that makes services.yml follow Zuora (never merged by the job)
    services_yml_merge_request: bool = False
    services_yml_merge_request_branch: str = "ps-integrations/services-yml-follows-zuora"
    services_yml_merge_request_labels: tuple[str, ...] = ("sku-reconciliation",)

    def __post_init__(self) -> None:
        texts = ("services_yml_project", "services_yml_path", "services_yml_ref", "finance_project")
        for name in (*texts, "finance_recipients"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"{CONFIG_VARIABLE}: {name} must be a non-empty text, not {value!r}")
        if self.services_yml_local_path is not None and not isinstance(self.services_yml_local_path, str):
            raise ConfigurationError(f"{CONFIG_VARIABLE}: services_yml_local_path must be a path")
        for name in ("salesforce", "services_yml_merge_request"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{CONFIG_VARIABLE}: {name} must be true or false, not {getattr(self, name)!r}"
                )
        for name in ("salesforce_product_families", "services_yml_merge_request_labels"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not all(isinstance(v, str) and v.strip() for v in values):
                raise ConfigurationError(f"{CONFIG_VARIABLE}: {name} must be a list of texts, not {values!r}")
        if self.salesforce_price_book is not None and (
            not isinstance(self.salesforce_price_book, str) or not self.salesforce_price_book.strip()
        ):
            raise ConfigurationError(f"{CONFIG_VARIABLE}: salesforce_price_book must be a price book's name")
        currency = self.salesforce_org_currency
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise ConfigurationError(
                f"{CONFIG_VARIABLE}: salesforce_org_currency must be an ISO 4217 code like USD, not {currency!r}"
            )
        branch = self.services_yml_merge_request_branch
        if not isinstance(branch, str) or not branch.strip() or branch == self.services_yml_ref:
            raise ConfigurationError(
                f"{CONFIG_VARIABLE}: services_yml_merge_request_branch must be a branch of its own, not {branch!r}"
            )
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
        return settings_from_mapping(cls, data, CONFIG_VARIABLE)
