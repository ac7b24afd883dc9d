DELETE FROM sku_reconciliation_problems WHERE as_of = :as_of
