"""The engagement close-out's orchestration against in-memory fakes of its Protocols (GitLab,
Salesforce, its ledger, the exports store): a close is filed once (file + post), a kill between the
Chatter post and its record files nothing twice, bad input is named, progress labels move."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ps_integrations.domain.engagement_closeout import Adjustment
from ps_integrations.domain.opportunity_sync import marker
from ps_integrations.exceptions import GitLabNotFoundError
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabMember, GitLabUser
from ps_integrations.jobs.engagement_closeout import CloseoutConfig, EngagementCloseout, closeout_window
from ps_integrations.run_window import RunWindow
from ps_integrations.stores.engagement_closeout import CloseoutRecord, ExportedEntry

PROJECT = "professional-services/engagements"
OPPORTUNITY = "0065g0000000001AAA"
WINDOW = RunWindow(datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 23, 10, tzinfo=UTC), "data interval")
CONFIG = CloseoutConfig(engagements_project=PROJECT, controller="ctl@example.com", finance_business_partner="fbp")


class Killed(BaseException):
    """The task process dies (not an error the job could catch)."""


def issue(iid=1, *, closed_at="2026-11-23T09:30:00.000Z", labels=("Custom SOW",), linked=True, spent=36000):
    url = f"https://gitlab/{PROJECT}/-/issues/{iid}"
    description = f"Engagement\n\n{marker(OPPORTUNITY)}\n" if linked else "Engagement"
    return GitLabIssue(
        PROJECT, iid, iid, "Acme: Rollout", description, "closed" if closed_at else "opened", labels, url,
        "", "", closed_at, None, (), None, False, 0, spent,
    )  # fmt: skip


class FakeGitLab:
    def __init__(self, *issues):
        self.issues = {issue.iid: issue for issue in issues}

    def list_issues(self, project, *, state="all", updated_after=None, order_by="created_at"):
        wanted = {"all": ("opened", "closed"), "opened": ("opened",), "closed": ("closed",)}[state]
        return iter([issue for issue in self.issues.values() if issue.state in wanted])

    def get_issue(self, project, iid):
        if iid not in self.issues:
            raise GitLabNotFoundError(404, f"GET /projects/{project}/issues/{iid}", "404 Not found")
        return self.issues[iid]

    def update_issue(self, project, iid, *, add_labels=(), remove_labels=()):
        current = self.issues[iid]
        labels = tuple(label for label in (*current.labels, *add_labels) if label not in remove_labels)
        self.issues[iid] = replace(current, labels=labels)
        return self.issues[iid]

    def group_members_with_titles(self, group):
        titles = {"ada": "Professional Services Engineer", "pat": "Project Manager"}
        return [GitLabMember(GitLabUser(number, name), title) for number, (name, title) in enumerate(titles.items(), 1)]


class FakeSalesforce:
    def __init__(self, budget_hours=40):
        self.opportunity = {
            "Id": OPPORTUNITY,
            "Name": "Rollout",
            "Amount": 10000.0,
            "Account": {"Name": "Acme"},
            "Budgeted_Hours__c": budget_hours,
            "CurrencyIsoCode": "USD",
            "OpportunityLineItems": {"records": []},
        }
        self.versions: list[dict] = []
        self.feed: list[dict] = []
        self.kill_after_post = False
        self.kill_after_upload = False

    def query_records(self, soql):
        return iter([self.opportunity] if OPPORTUNITY in soql else [])

    def find_users(self, identifiers):
        return {i.lower(): {"Id": f"005{n}", "IsActive": True} for n, i in enumerate(identifiers)}

    def content_versions(self, document_id=None, location_id=None):
        return [v for v in self.versions if document_id in (None, v["ContentDocumentId"])]

    def create_content_version(self, title, path_on_client, data, **fields):
        document = fields.get("content_document_id") or f"069{len(self.versions)}"
        version_id = f"068{len(self.versions)}"
        version = {"Id": version_id, "ContentDocumentId": document, "Description": fields["description"]}
        self.versions.append({**version, "data": data})
        if self.kill_after_upload:
            raise Killed("after Salesforce took the file")
        return version["Id"]

    def get_record(self, sobject, record_id):
        return next(v for v in self.versions if v["Id"] == record_id)

    def record_feed(self, record_id):
        return iter(reversed(self.feed))

    def post_feed_item(self, subject_id, segments):
        element = {"id": f"0D5{len(self.feed)}", "body": {"text": "".join(s.get("text", "@") for s in segments)}}
        self.feed.append({**element, "segments": segments})
        if self.kill_after_post:
            raise Killed("after Salesforce took the post")
        return element


class FakeLedger:
    def __init__(self, entries=(), adjustments=()):
        self.records: dict[tuple[str, str], CloseoutRecord] = {}
        self.entries = list(entries)
        self.adjusted = list(adjustments)
        self.audited: list[tuple[str, str]] = []

    def closeout_of(self, engagement_url, closed_at):
        return self.records.get((engagement_url, closed_at))

    def previous_filed(self, engagement_url, closed_at):
        earlier = [r for (url, at), r in self.records.items() if url == engagement_url and at < closed_at]
        return max((r for r in earlier if r.status == "posted"), key=lambda r: r.closed_at, default=None)

    def unfinished(self):
        return [r for r in self.records.values() if r.status not in ("posted", "superseded")]

    def save(self, record):
        self.records[(record.engagement_url, record.closed_at)] = record

    def set_status(self, engagement_url, closed_at, status, reason):
        key = (engagement_url, closed_at)
        self.records[key] = replace(self.records[key], status=status, reason=reason)

    def approved_entries(self, engagement_url):
        return [entry for url, entry in self.entries if url == engagement_url]

    def approved_totals(self):
        totals: dict[str, Decimal] = {}
        for url, entry in self.entries:
            totals[url] = totals.get(url, Decimal(0)) + entry.hours
        return totals

    def adjustments(self, engagement_url=None):
        return [a for a in self.adjusted if engagement_url in (None, a.engagement)]

    def audit(self, record_id, action, detail):
        self.audited.append((record_id, action))


class FakeExports:
    def __init__(self):
        self.folders: dict[str, dict[str, bytes]] = {}

    def write_folder(self, folder, title, files):
        self.folders[folder] = {file.name: file.content for file in files}
        return [f"{folder}/{file.name}" for file in files]


def hours(url, engineer, value, timelog=None):
    return url, ExportedEntry("2026-W47", engineer, timelog or engineer, "Project Work", Decimal(value))


@pytest.fixture
def url():
    return issue().web_url


def closeout(gitlab, salesforce, ledger, exports=None, config=CONFIG):
    job = EngagementCloseout(gitlab, salesforce, ledger, exports or FakeExports(), config)
    return job, job.run(WINDOW, [])


def test_a_closed_engagement_is_analysed_exported_and_filed_once(url):
    gitlab, salesforce, exports = FakeGitLab(issue()), FakeSalesforce(), FakeExports()
    ledger = FakeLedger([hours(url, "ada", 8), hours(url, "pat", 2)], [])

    _, summary = closeout(gitlab, salesforce, ledger, exports)

    assert summary.counts["filed"] == 1 and summary.failures == []
    [folder] = exports.folders
    assert folder == "engagement_closeout/engagements-1/2026-11-23T09-30-00Z"
    csv = exports.folders[folder]["analysis.csv"].decode()
    assert ",10,,1180,1180.00," in csv  # the total row: 8 h x 120 + 2 h x 110
    [version] = salesforce.versions
    assert version["data"] == exports.folders[folder]["report.html"]
    [post] = salesforce.feed
    assert [s["id"] for s in post["segments"] if s["type"] == "Mention"] == ["0050", "0051"]
    assert "gross margin 88.2%" in post["body"]["text"]
    record = ledger.records[(url, "2026-11-23T09:30:00Z")]
    assert (record.status, record.feed_element_id, record.content_document_id) == ("posted", "0D50", "0690")

    _, again = closeout(gitlab, salesforce, ledger)
    assert again.counts["unchanged"] == 1 and len(salesforce.feed) == 1 and len(salesforce.versions) == 1


@pytest.mark.parametrize(("kill", "status"), [("kill_after_upload", "attaching"), ("kill_after_post", "posting")])
def test_a_kill_between_a_salesforce_write_and_its_record_files_nothing_twice(url, kill, status):
    gitlab, salesforce = FakeGitLab(issue()), FakeSalesforce()
    ledger = FakeLedger([hours(url, "ada", 8)])
    setattr(salesforce, kill, True)
    with pytest.raises(Killed):
        closeout(gitlab, salesforce, ledger)
    assert ledger.records[(url, "2026-11-23T09:30:00Z")].status == status
    setattr(salesforce, kill, False)

    retry = EngagementCloseout(gitlab, salesforce, ledger, FakeExports(), CONFIG).run(None, [])  # unfinished only

    assert retry.counts["filed"] == 1 and len(salesforce.feed) == 1 and len(salesforce.versions) == 1
    assert ledger.records[(url, "2026-11-23T09:30:00Z")].status == "posted"


def test_bad_input_is_named_and_a_reopened_close_is_superseded(url):
    unlinked = issue(2, linked=False)
    gitlab, salesforce = FakeGitLab(issue(), unlinked), FakeSalesforce()
    ledger = FakeLedger([hours(url, "ada", 8), hours(unlinked.web_url, "ada", 1)])

    _, summary = closeout(gitlab, salesforce, ledger)

    assert [(f.system, f.field) for f in summary.failures] == [("GitLab", "description")]
    assert summary.counts["filed"] == 1
    assert ledger.records[(unlinked.web_url, "2026-11-23T09:30:00Z")].status == "failed"
    gitlab.issues[2] = replace(unlinked, state="opened", closed_at=None)  # reopened: that close is over
    _, later = closeout(gitlab, salesforce, ledger)
    assert later.failures == []
    assert ledger.records[(unlinked.web_url, "2026-11-23T09:30:00Z")].status == "superseded"


def test_open_engagements_get_the_milestone_reached_once():
    sow, packaged = issue(5, closed_at=None), issue(6, closed_at=None, labels=("Training",))
    gitlab, salesforce = FakeGitLab(sow, packaged), FakeSalesforce(budget_hours=40)
    adjustment = Adjustment("2026-W47", "t1", "ada", "edited", Decimal(-1), sow.web_url)
    ledger = FakeLedger([hours(sow.web_url, "ada", 21, "t1"), hours(packaged.web_url, "ada", 40)], [adjustment])

    _, summary = closeout(gitlab, salesforce, ledger)

    assert gitlab.issues[5].labels == ("Custom SOW", "progress::50")  # 20 of 40 h after the adjustment
    assert gitlab.issues[6].labels == ("Training", "progress::complete")
    assert summary.counts["labels set"] == 2
    _, again = closeout(gitlab, salesforce, ledger)
    assert again.counts["labels set"] == 0


def test_no_analysis_is_filed_without_the_people_to_mention(url):
    gitlab, salesforce = FakeGitLab(issue()), FakeSalesforce()
    config = replace(CONFIG, controller="")

    _, summary = closeout(gitlab, salesforce, FakeLedger([hours(url, "ada", 8)]), config=config)

    assert [(f.system, f.field) for f in summary.failures] == [("Airflow", "ps_engagement_closeout_config.controller")]
    assert salesforce.feed == [] and salesforce.versions == []


def test_the_closes_a_run_reads():
    interval = {"data_interval_start": WINDOW.start, "data_interval_end": WINDOW.end}
    assert closeout_window({**interval, "params": {}}) == replace(WINDOW, source="data interval")
    assert closeout_window({**interval, "params": {"engagement_iids": [3]}}) is None
    manual = closeout_window({"params": {"since": "2026-11-20T00:00:00Z", "until": "2026-11-21T00:00:00Z"}})
    assert manual is not None and manual.end - manual.start == timedelta(days=1)
    last_hour = closeout_window({"params": {}})
    assert last_hour is not None and last_hour.end - last_hour.start == timedelta(hours=1)
