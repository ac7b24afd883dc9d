"""The DAGs the harness runs: one entry each (its variables, data, run steps and state records).

Adding a DAG is one ``Target`` in ``TARGETS``: what the end state of a run is made of is read the
same way for every DAG (GitLab issues and notes, Salesforce write-backs, mails, export bytes, the
state store's records), so a new entry only says how to run it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ps_integrations.domain.opportunity_sync import find_marker
from sandbox.core.server import SandboxServer

ALERT_RECIPIENT = "ps-ops@example.com"
SURVEY_SECRET = "chaos-csat-signing-secret"  # noqa: S105 - a fixed fake secret: only the sandbox reads the links
WRITEBACK_FIELD = "GitLab_Issue_URL__c"


@dataclass(frozen=True)
class StateRecords:
    """Records of one state-store table: ``key`` and ``name`` (how summaries name a record) columns,
    the columns compared with the reference, and the statuses of a write in flight."""

    sql: str
    in_flight: frozenset[str] = frozenset({"creating", "sending"})


@dataclass(frozen=True)
class Step:
    """One DAG run (with its retries), after ``before`` changed the remote systems."""

    conf: Mapping[str, Any]
    before: Callable[[SandboxServer], None] | None = None


@dataclass(frozen=True)
class Target:
    dag_id: str
    steps: tuple[Step, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)
    connections: Mapping[str, Any] = field(default_factory=dict)
    # the sandbox seed of a fresh data seed (the default seed with its generators reseeded)
    seed: Callable[[dict[str, Any], int], dict[str, Any]] = lambda seed, _data_seed: seed
    # rows the state store holds before the first run (e.g. answered surveys for the summary)
    state_rows: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    records: tuple[StateRecords, ...] = ()


def reseeded(seed: dict[str, Any], data_seed: int) -> dict[str, Any]:
    """The default seed with Salesforce's and GitLab's generators drawn from ``data_seed``."""
    seed = copy.deepcopy(seed)
    for system in ("salesforce", "gitlab"):
        generate = seed.get(system, {}).get("generate")
        if generate is not None:
            generate["random_seed"] = int(generate.get("random_seed", 0)) * 1000 + data_seed
    return seed


# --- ps_opportunity_sync -----------------------------------------------------------------------------
SYNC_PARAMS: dict[str, Any] = {
    "since": "2020-01-01T00:00:00Z",
    "until": None,
    "opportunity_ids": [],
    "dry_run": False,
    "quarantine": [],
    "release": [],
    "reason": None,
}


def sync_seed(seed: dict[str, Any], data_seed: int) -> dict[str, Any]:
    """A smaller org (60 opportunities), no engagement issue synced yet."""
    seed = reseeded(seed, data_seed)
    seed["salesforce"]["generate"]["opportunities"] = 60
    seed["gitlab"]["generate"].pop("engagement_opportunities", None)
    return seed


def change_won_opportunities(sandbox: SandboxServer) -> None:
    """Real changes to a few won opportunities (chosen from Salesforce's data alone, so the same ones
    in every sequence): each synced one must get exactly one note saying what changed."""
    salesforce: Any = sandbox.standin("salesforce")
    records = salesforce.backend.records["Opportunity"]
    won = sorted(rid for rid, opportunity in records.items() if opportunity.get("StageName") == "Closed Won")
    for number, opportunity_id in enumerate(won[:8]):
        opportunity = records[opportunity_id]
        opportunity["Amount"] = float(opportunity.get("Amount") or 0) + 1000.0 * (number + 1)
        if number % 2:
            opportunity["CloseDate"] = "2026-10-15"
        # as Salesforce does on every change (a fixed moment: the note quotes it)
        opportunity["SystemModstamp"] = "2026-11-20T12:00:00.000+0000"


OPPORTUNITY_SYNC = Target(
    dag_id="ps_opportunity_sync",
    steps=(Step(SYNC_PARAMS), Step(SYNC_PARAMS, before=change_won_opportunities)),
    variables={
        "ps_opportunity_sync_config": {
            "writeback_field": WRITEBACK_FIELD,
            "coordinator": "delivery-manager-1",
            "gitlab_requests_per_minute": 6000,
        }
    },
    seed=sync_seed,
    records=(StateRecords("SELECT opportunity_id AS key, opportunity_id AS name, status FROM opportunity_sync"),),
)

# --- ps_sku_reconciliation ---------------------------------------------------------------------------
SKU_RECONCILIATION = Target(
    dag_id="ps_sku_reconciliation",
    steps=(Step({"as_of": "2026-11-21", "services_yml_ref": None}),),
    variables={"ps_sku_reconciliation_config": {"finance_recipients": "finance@example.com"}},
    seed=reseeded,
)

# --- ps_timesheet_rollup -----------------------------------------------------------------------------
TIMESHEET_ROLLUP = Target(
    dag_id="ps_timesheet_rollup",
    steps=(Step({"period": None, "period_start": None, "period_end": None}),),
    seed=reseeded,
    # the finance mail per export (SentMailLedger: "sending:<version>" while in flight; the run
    # names an interrupted one by its folder)
    records=(
        StateRecords(
            "SELECT name AS key, substr(name, 6) AS name, "
            "CASE WHEN value LIKE 'sending:%' THEN 'sending' ELSE 'sent' END AS status "
            "FROM job_values WHERE job = 'ps_timesheet_rollup' AND name LIKE 'mail:%'"
        ),
    ),
)

# --- ps_csat_surveys ---------------------------------------------------------------------------------
CSAT_SURVEYS = Target(
    dag_id="ps_csat_surveys",
    steps=(
        Step(
            {"dry_run": False, "release_surveys": [], "since": "2026-09-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"}
        ),
    ),
    variables={"ps_csat_surveys_config": {"allow_list": ["example.com"]}},
    connections={"ps_csat": {"conn_type": "http", "host": "http://127.0.0.1:9", "password": SURVEY_SECRET}},
    seed=reseeded,
    records=(
        StateRecords(
            "SELECT engagement_url || ' ' || contact_id AS key, survey_id AS name, status, reminder_status "
            "FROM csat_surveys"
        ),
    ),
)

# --- ps_csat_summary ---------------------------------------------------------------------------------
# (closed_at, engagement type, project manager, account, score or None, comment): answered surveys
ANSWERED = (
    ("2026-08-03T10:00:00+00:00", "Migration", "amara.ps1", "Acme", 5, "Smooth cut-over"),
    ("2026-08-20T10:00:00+00:00", "Migration", "amara.ps1", "Acme", 4, ""),
    ("2026-09-14T10:00:00+00:00", "Training", "bjorn.ps2", "Globex", 2, "Trainer was late"),
    ("2026-10-01T10:00:00+00:00", "Training", "bjorn.ps2", "Initech", None, ""),
    ("2026-06-10T10:00:00+00:00", "Migration", "amara.ps1", "Acme", 3, "ok"),
)


def answered_surveys() -> tuple[tuple[str, Mapping[str, Any]], ...]:
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for number, (closed_at, kind, manager, account, score, comment) in enumerate(ANSWERED):
        survey_id = f"{number:032x}"
        rows.append(
            (
                "csat/add_survey",
                {
                    "survey_id": survey_id,
                    "engagement_url": f"https://gitlab.example/ps/engagements/-/issues/{number}",
                    "engagement_title": f"{account}: {kind}",
                    "issue_iid": number,
                    "opportunity_id": "0065g0000000007AAA",
                    "account": account,
                    "engagement_type": kind,
                    "sku_category": "Education" if kind == "Training" else "Migration",
                    "project_manager": manager,
                    "closed_at": closed_at,
                    "contact_id": f"003{number:015d}",
                    "contact_name": "Pat",
                    "email": f"pat{number}@customer.example.com",
                    "window_at": closed_at,
                    "run_id": "seed",
                    "engagement_name": f"{account} - {kind}",
                    "company": "GitLab",
                    "reply_to": "",
                },
            )
        )
        rows.append(("csat/claim", {"survey_id": survey_id}))
        rows.append(("csat/mark_sent", {"survey_id": survey_id, "sent_at": closed_at}))
        if score is not None:
            answered_at = closed_at.replace("10:00", "12:00")
            rows.append(
                (
                    "csat/service_first_answer",
                    {"survey_id": survey_id, "score": score, "comment": comment, "now": answered_at},
                )
            )
    return tuple(rows)


CSAT_SUMMARY = Target(
    dag_id="ps_csat_summary",
    steps=(Step({"period": "FY2027-Q3"}),),
    variables={"ps_csat_summary_config": {"leadership_recipients": "leadership@example.com"}},
    seed=reseeded,
    state_rows=answered_surveys(),
    records=(
        # the leadership mail's ledger entry: "sending:<version>" while (or after a kill during) the send
        StateRecords(
            "SELECT name AS key, 'leadership mail ' || substr(name, 6) AS name, "
            "CASE WHEN value LIKE 'sending:%' THEN 'sending' ELSE 'sent' END AS status "
            "FROM job_values WHERE job = 'ps_csat_summary' AND name LIKE 'mail:%'"
        ),
    ),
)

# --- ps_engagement_closeout -------------------------------------------------------------------------
ENGAGEMENTS_PROJECT = "professional-services/engagements"
# before the pinned "now" of every run; fixed, so the export folders and posts name the same close
ENGAGEMENTS_CLOSED_AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def close_two_engagements(sandbox: SandboxServer) -> None:
    """Close the first two synced engagement issues (chosen from GitLab's data alone: the same ones in
    every sequence): each close must get exactly one report file and one Chatter post on its opportunity."""
    gitlab: Any = sandbox.standin("gitlab").backend
    project = gitlab.project(ENGAGEMENTS_PROJECT)
    bot = next(user for user in gitlab.users.values() if user.bot)
    synced = sorted(
        issue.iid
        for issue in gitlab.issues.values()
        if issue.project_id == project.id and issue.state == "opened" and find_marker(issue.description)
    )
    previous = gitlab.clock
    gitlab.clock = lambda: ENGAGEMENTS_CLOSED_AT
    try:
        for iid in synced[:2]:
            gitlab.update_issue(project, iid, bot, {"state_event": "close"})
    finally:
        gitlab.clock = previous


ENGAGEMENT_CLOSEOUT = Target(
    dag_id="ps_engagement_closeout",
    steps=(
        Step({"engagement_iids": [], "since": "2024-01-01T00:00:00Z", "until": None}, before=close_two_engagements),
    ),
    variables={
        "ps_engagement_closeout_config": {
            "engagements_project": ENGAGEMENTS_PROJECT,
            "controller": "controller@ps.example.com",
            "finance_business_partner": "FBP.Sales@ps.example.com",
            # a deal in another currency than the cost rates is (rightly) a failed record: read every
            # deal as the rates' currency, so the reference run succeeds on any data seed
            "currency_field": "",
        }
    },
    seed=reseeded,
    records=(
        StateRecords(
            "SELECT engagement_url || ' ' || closed_at AS key, engagement_url AS name, status, opportunity_id "
            "FROM engagement_closeouts",
            in_flight=frozenset({"attaching", "posting"}),
        ),
    ),
)

TARGETS: Mapping[str, Target] = {
    target.dag_id: target
    for target in (
        OPPORTUNITY_SYNC,
        SKU_RECONCILIATION,
        TIMESHEET_ROLLUP,
        CSAT_SURVEYS,
        CSAT_SUMMARY,
        ENGAGEMENT_CLOSEOUT,
    )
}
