SELECT as_of FROM sku_reconciliation_runs WHERE as_of < :as_of ORDER BY as_of DESC LIMIT 1
