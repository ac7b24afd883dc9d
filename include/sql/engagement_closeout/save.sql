INSERT INTO engagement_closeouts (
    engagement_url, closed_at, issue_iid, opportunity_id, status, reason, tag, export_folder,
    content_document_id, content_version_id, feed_element_id, margin_pct, percent_complete, run_id, updated_at
) VALUES (
    :engagement_url, :closed_at, :issue_iid, :opportunity_id, :status, :reason, :tag, :export_folder,
    :content_document_id, :content_version_id, :feed_element_id, :margin_pct, :percent_complete, :run_id, :updated_at
)
ON CONFLICT (engagement_url, closed_at) DO UPDATE SET
    issue_iid = excluded.issue_iid,
    opportunity_id = excluded.opportunity_id,
    status = excluded.status,
    reason = excluded.reason,
    tag = excluded.tag,
    export_folder = excluded.export_folder,
    content_document_id = excluded.content_document_id,
    content_version_id = excluded.content_version_id,
    feed_element_id = excluded.feed_element_id,
    margin_pct = excluded.margin_pct,
    percent_complete = excluded.percent_complete,
    run_id = excluded.run_id,
    updated_at = excluded.updated_at
