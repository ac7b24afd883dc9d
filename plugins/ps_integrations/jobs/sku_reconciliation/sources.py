"""Steps 1 and 2: read services.yml (from GitLab at a ref, or a local file) and Zuora's catalog.

ZOQL has no joins: one query per catalog object, joined in ``domain.zuora_catalog``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from ps_integrations.domain.zuora_catalog import ZuoraProduct, join_zuora_catalog
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.jobs.sku_reconciliation.config import ReconciliationConfig
from ps_integrations.jobs.sku_reconciliation.ports import RepositoryFiles, ZuoraCatalog

ZOQL = {
    "Product": "select Id, Name, SKU, Category, EffectiveStartDate, EffectiveEndDate from Product",
    "ProductRatePlan": "select Id, Name, ProductId, EffectiveStartDate, EffectiveEndDate from ProductRatePlan",
    "ProductRatePlanCharge": "select Id, Name, ProductRatePlanId from ProductRatePlanCharge",
    "ProductRatePlanChargeTier": (
        "select Id, ProductRatePlanChargeId, Currency, Price, Tier from ProductRatePlanChargeTier"
    ),
}


@dataclass(frozen=True)
class CatalogSource:
    """services.yml's text and where it came from."""

    text: str
    source: str
    ref: str | None
    blob_id: str | None
    commit_id: str | None
    project: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class ZuoraCatalogRead:
    """Zuora's products as of a date, with where and how many records were read."""

    products: list[ZuoraProduct]
    endpoint: str
    records: dict[str, int]


@dataclass(frozen=True)
class Sources:
    """Where the data came from, as the summary sheet, issue and mail state it."""

    zuora_endpoint: str
    zuora_records: dict[str, int]
    services_yml: CatalogSource

    def lines(self) -> list[tuple[str, str]]:
        catalog = self.services_yml
        return [
            ("Zuora endpoint", self.zuora_endpoint),
            ("Zuora records read", ", ".join(f"{name} {count}" for name, count in self.zuora_records.items())),
            ("services.yml project", catalog.project or "(local file)"),
            ("services.yml path", catalog.path or catalog.source),
            ("services.yml ref", catalog.ref or ""),
            ("services.yml blob id", catalog.blob_id or ""),
            ("services.yml commit id", catalog.commit_id or ""),
        ]


def git_blob_id(text: str) -> str:
    """The id git gives a file with this content (what GitLab reports as ``blob_id``)."""
    data = text.encode()
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def read_services_yml(gitlab: RepositoryFiles, config: ReconciliationConfig, ref: str | None) -> CatalogSource:
    """services.yml at ``ref`` (default: the configured ref), or the configured local file."""
    if config.services_yml_local_path:
        try:
            with open(config.services_yml_local_path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise ConfigurationError(
                f"services_yml_local_path {config.services_yml_local_path!r} cannot be read: {error.strerror}"
            ) from None
        return CatalogSource(text, config.services_yml_local_path, None, git_blob_id(text), None)
    wanted = ref or config.services_yml_ref
    found = gitlab.get_file(config.services_yml_project, config.services_yml_path, wanted)
    return CatalogSource(
        found.content,
        f"{config.services_yml_project}/{config.services_yml_path}@{wanted}",
        wanted,
        found.blob_id,
        found.commit_id or found.last_commit_id,
        config.services_yml_project,
        config.services_yml_path,
    )


def fetch_zuora(zuora: ZuoraCatalog, batch_size: int) -> dict[str, list[dict[str, Any]]]:
    """Every record of the four catalog objects."""
    return {name: list(zuora.query(zoql, batch_size=batch_size)) for name, zoql in ZOQL.items()}


def read_zuora(zuora: ZuoraCatalog, batch_size: int, as_of: date) -> ZuoraCatalogRead:
    records = fetch_zuora(zuora, batch_size)
    products = join_zuora_catalog(
        records["Product"],
        records["ProductRatePlan"],
        records["ProductRatePlanCharge"],
        records["ProductRatePlanChargeTier"],
        as_of,
    )
    return ZuoraCatalogRead(products, zuora.endpoint, {name: len(items) for name, items in records.items()})
