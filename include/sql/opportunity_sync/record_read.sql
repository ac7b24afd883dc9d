INSERT INTO opportunity_sync_reads (opportunity_id, modstamp)
VALUES (:opportunity_id, :modstamp)
ON CONFLICT (opportunity_id, modstamp) DO NOTHING
