SELECT engagement_url, closed_at, issue_iid, status
FROM engagement_closeouts
WHERE status NOT IN ('posted', 'superseded')
ORDER BY engagement_url, closed_at
