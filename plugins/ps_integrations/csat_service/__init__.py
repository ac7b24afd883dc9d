"""The CSAT response service: customers' answers to survey mails (its own process)."""
