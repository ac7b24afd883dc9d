INSERT INTO csat_surveys (
    survey_id, engagement_url, engagement_title, issue_iid, opportunity_id, account, engagement_type,
    sku_category, project_manager, closed_at, contact_id, contact_name, email, window_at, status, created_run_id,
    engagement_name, company, reply_to
) VALUES (
    :survey_id, :engagement_url, :engagement_title, :issue_iid, :opportunity_id, :account, :engagement_type,
    :sku_category, :project_manager, :closed_at, :contact_id, :contact_name, :email, :window_at, 'pending', :run_id,
    :engagement_name, :company, :reply_to
)
ON CONFLICT (engagement_url, contact_id) DO NOTHING
