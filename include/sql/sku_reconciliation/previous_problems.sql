SELECT p.as_of, p.item, p.currency, p.problem
FROM sku_reconciliation_problems p
WHERE p.as_of = (SELECT MAX(r.as_of) FROM sku_reconciliation_runs r WHERE r.as_of < :as_of)
