INSERT INTO sku_reconciliation_runs (as_of, services_yml_ref, services_yml_blob_id, counts_json, export_folder, run_id, updated_at)
VALUES (:as_of, :services_yml_ref, :services_yml_blob_id, :counts_json, :export_folder, :run_id, :updated_at)
ON CONFLICT (as_of) DO UPDATE SET
    services_yml_ref = excluded.services_yml_ref,
    services_yml_blob_id = excluded.services_yml_blob_id,
    counts_json = excluded.counts_json,
    export_folder = excluded.export_folder,
    run_id = excluded.run_id,
    updated_at = excluded.updated_at
