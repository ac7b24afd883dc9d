"""The CSAT repositories on SQLite and PostgreSQL: typed records in and out, claims that only one run wins."""

from __future__ import annotations

from datetime import date

from ps_integrations.stores.csat import CsatResults, LatestReport, NewSurvey, SurveyLedger


def new_survey(contact_id: str, email: str, window_at: str = "2026-11-23T10:00:00+00:00", **changes) -> NewSurvey:
    fields = dict(
        engagement_url="https://gitlab.example.com/ps/engagements/-/issues/7",
        engagement_title="Acme: Migration",
        issue_iid=7,
        opportunity_id="0065g0000000007AAA",
        account="Acme",
        engagement_name="Acme - Migration",
        company="GitLab",
        reply_to="Amara <amara@example.com>",
        engagement_type="Migration",
        sku_category="Services",
        project_manager="amara.ps1",
        closed_at="2026-11-23T09:10:00+00:00",
        contact_id=contact_id,
        contact_name=f"Contact {contact_id}",
        email=email,
        window_at=window_at,
    )
    return NewSurvey(**{**fields, **changes})


def answer(store, survey_id: str, score: int, comment: str = "") -> None:
    now = "2026-11-24T08:00:00+00:00"
    store.execute("csat/service_first_answer", {"survey_id": survey_id, "score": score, "comment": comment, "now": now})


def test_a_survey_is_added_once_claimed_once_and_sent(store):
    store.apply_schema()
    ledger = SurveyLedger(store, "run-1")
    survey_id = ledger.add(new_survey("003A", "pat@acme.example.com"))
    ledger.add(new_survey("003A", "pat@acme.example.com"))  # a re-run: the same engagement and contact

    [pending] = ledger.pending()
    assert (pending.survey_id, pending.email, pending.reply_to, pending.customer_engagement_name) == (
        survey_id,
        "pat@acme.example.com",
        "Amara <amara@example.com>",
        "Acme - Migration",
    )
    assert ledger.contacts_surveyed_for(pending.engagement_url) == {"003A"}
    assert ledger.claim(survey_id) and not ledger.claim(survey_id)
    assert ledger.interrupted_sends() == [survey_id]
    ledger.mark_sent(survey_id)
    assert ledger.pending() == [] and ledger.interrupted_sends() == []
    assert ledger.surveyed_between("2026-11-01", "2026-12-01") == {"pat@acme.example.com"}
    assert ledger.surveyed_between("2026-11-23T10:00:00+00:00", "2026-12-01") == set()  # strictly between


def test_reminders_are_due_after_the_window_and_not_after_an_answer_or_opt_out(store):
    store.apply_schema()
    ledger = SurveyLedger(store, "run-1")
    ids = [ledger.add(new_survey(f"003{n}", f"c{n}@acme.example.com")) for n in range(3)]
    for survey_id in ids:
        ledger.claim(survey_id)
        ledger.mark_sent(survey_id)
    answer(store, ids[0], 5)
    store.execute("csat/service_opt_out", {"survey_id": ids[1], "now": "2026-11-24T00:00:00+00:00", "source": "link"})

    assert ledger.reminders_due("2026-11-23T09:00:00+00:00") == []
    [due] = ledger.reminders_due("2026-11-28T10:00:00+00:00")
    assert due.survey_id == ids[2] and ledger.opted_out() == {"c1@acme.example.com"}
    assert ledger.claim_reminder(ids[2]) and not ledger.claim_reminder(ids[2])
    assert ledger.interrupted_sends() == [ids[2]]
    assert ledger.release_reminder(ids[2]) and ledger.claim_reminder(ids[2])
    ledger.mark_reminder_sent(ids[2])
    assert ledger.reminders_due("2026-11-28T10:00:00+00:00") == [] and ledger.interrupted_sends() == []


def test_low_scores_wait_for_their_follow_up_and_an_interrupted_one_is_flagged(store):
    store.apply_schema()
    ledger = SurveyLedger(store, "run-1")
    low, high = (ledger.add(new_survey(f"003{n}", f"c{n}@acme.example.com")) for n in range(2))
    answer(store, low, 2, "late")
    answer(store, high, 4)

    [due] = ledger.low_scores_without_followup()
    assert (due.survey_id, due.score, due.comment, due.account, due.interrupted) == (low, 2, "late", "Acme", False)
    ledger.followup_creating(low)
    assert ledger.low_scores_without_followup()[0].interrupted
    ledger.followup_created(low, "https://gitlab.example.com/ps/engagements/-/issues/8")
    assert ledger.low_scores_without_followup() == []


def test_results_are_outcomes_and_the_page_keeps_the_newest_quarter(store):
    store.apply_schema()
    ledger = SurveyLedger(store, "run-1")
    survey_id = ledger.add(new_survey("003A", "pat@acme.example.com"))
    ledger.add(new_survey("003B", "sam@acme.example.com"))  # never sent: not an outcome
    ledger.claim(survey_id)
    ledger.mark_sent(survey_id)
    answer(store, survey_id, 5, "thanks")
    results = CsatResults(store)

    [sent] = results.outcomes()
    assert (sent.survey_id, sent.closed_on, sent.score, sent.comment, sent.engagement_name) == (
        survey_id,
        date(2026, 11, 23),
        5,
        "thanks",
        "Acme - Migration",
    )
    assert results.latest() is None
    results.keep_latest(LatestReport("FY2027-Q4", "<p>Q4</p>", "cG5n"))
    results.keep_latest(LatestReport("FY2027-Q3", "<p>Q3</p>", "cG5n"))  # an older quarter rebuilt on demand
    assert results.latest() == LatestReport("FY2027-Q4", "<p>Q4</p>", "cG5n")


def test_the_response_service_answers_only_from_the_current_version(store):
    from ps_integrations.stores.csat import SurveyAnswers

    store.apply_schema()
    survey_id = SurveyLedger(store, "run-1").add(new_survey("003A", "pat@acme.example.com", company=""))
    answers = SurveyAnswers(store)

    fresh = answers.survey(survey_id)
    assert (fresh.score, fresh.version, fresh.team, fresh.engagement) == (
        None,
        0,
        "Professional Services",
        "Acme - Migration",
    )
    assert answers.record(survey_id, 0, 3, "ok") and not answers.record(survey_id, 0, 5, "replayed first form")
    assert answers.record(survey_id, 1, 5, "better") and not answers.record(survey_id, 1, 3, "stale form")
    now = answers.survey(survey_id)
    assert (now.score, now.comment, now.version) == (5, "better", 2)
    answers.opt_out(survey_id, "one-click")
    answers.opt_out(survey_id, "confirm-page")  # once per address
    assert SurveyLedger(store, "run-2").opted_out() == {"pat@acme.example.com"}
    assert answers.survey("f" * 32) is None
