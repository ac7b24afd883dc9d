"""The SKU reconciliation job (``ps_sku_reconciliation``), one module per step:

- ``sources``: read services.yml (GitLab or a local file) and Zuora's catalog;
- ``job``: reconcile (``domain.sku_reconciliation``) and the run's story;
- ``files``: the CSV, XLSX and manifest export;
- ``finance_issue``: the one finance issue in GitLab;
- ``finance_mail``: finance's mail, at most once per version;
- ``ports``: the Protocols of what the job needs; ``config``: its settings.
"""

from ps_integrations.jobs.sku_reconciliation.config import ReconciliationConfig
from ps_integrations.jobs.sku_reconciliation.files import (
    FIELDS,
    MAX_ATTACHMENT_BYTES,
    attachable,
    build_files,
    reconciliation_csv,
)
from ps_integrations.jobs.sku_reconciliation.job import SkuReconciliation
from ps_integrations.jobs.sku_reconciliation.sources import ZOQL, fetch_zuora

__all__ = [
    "FIELDS",
    "MAX_ATTACHMENT_BYTES",
    "ZOQL",
    "ReconciliationConfig",
    "SkuReconciliation",
    "attachable",
    "build_files",
    "fetch_zuora",
    "reconciliation_csv",
]
