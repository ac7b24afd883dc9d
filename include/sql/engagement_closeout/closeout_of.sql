SELECT engagement_url, closed_at, issue_iid, opportunity_id, status, reason, tag, export_folder,
       content_document_id, content_version_id, feed_element_id, margin_pct, percent_complete
FROM engagement_closeouts
WHERE engagement_url = :engagement_url AND closed_at = :closed_at
