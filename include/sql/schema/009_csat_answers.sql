-- CSAT (issue #21). An answer's version: a form may change the answer only when it was made from the
-- current version, so a replayed or stale form never sets an older answer back.
ALTER TABLE csat_responses ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
-- What the customer sees: the engagement's customer-facing name, the company asking, and where a
-- reply to the survey mail goes.
ALTER TABLE csat_surveys ADD COLUMN engagement_name TEXT NOT NULL DEFAULT '';
ALTER TABLE csat_surveys ADD COLUMN company TEXT NOT NULL DEFAULT '';
ALTER TABLE csat_surveys ADD COLUMN reply_to TEXT NOT NULL DEFAULT '';
