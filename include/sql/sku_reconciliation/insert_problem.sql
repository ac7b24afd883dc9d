INSERT INTO sku_reconciliation_problems (as_of, item, currency, problem)
VALUES (:as_of, :item, :currency, :problem)
ON CONFLICT (as_of, item, currency, problem) DO NOTHING
