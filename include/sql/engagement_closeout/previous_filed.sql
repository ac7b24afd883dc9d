SELECT engagement_url, closed_at, content_document_id, margin_pct, percent_complete
FROM engagement_closeouts
WHERE engagement_url = :engagement_url AND closed_at < :closed_at AND status = 'posted'
ORDER BY closed_at DESC
LIMIT 1
