"""Filing one close in Salesforce: the report as a file on the opportunity, then one Chatter post.
Each is looked up by the close's tag before it is written, so a crash between a write and its record,
or a re-run, never files twice."""

from __future__ import annotations

from dataclasses import replace

from ps_integrations.domain.engagement_closeout import Analysis
from ps_integrations.exports import ExportFile
from ps_integrations.jobs.engagement_closeout.config import ClosedIssue, Opportunity
from ps_integrations.jobs.engagement_closeout.ports import CloseoutStore, OpportunityFiles
from ps_integrations.jobs.engagement_closeout.report import post_segments
from ps_integrations.stores.engagement_closeout import CloseoutRecord

TAG = "[ps-integrations close-out {reference} closed {closed_at}]"
TAG_PREFIX = "[ps-integrations close-out {reference} "


class Filing:
    def __init__(self, salesforce: OpportunityFiles, ledger: CloseoutStore) -> None:
        self.salesforce = salesforce
        self.ledger = ledger

    def attach(
        self,
        issue: ClosedIssue,
        opportunity: Opportunity,
        report: ExportFile,
        record: CloseoutRecord,
        reference: str,
        previous: CloseoutRecord | None,
    ) -> tuple[CloseoutRecord, bool]:
        """The report as a file on the opportunity: a new document at the first close, a new version
        of it after a reopen. Looked up by its tag (the version's Description) before uploading.

        :return: the record with the document and version ids, and whether an earlier close of the
            engagement was filed before (then the post is a short update).
        """
        prefix = TAG_PREFIX.format(reference=reference)
        document_id = previous.content_document_id if previous else ""
        if not document_id:  # the state store may not know (first close, or its record was lost)
            mine = [
                version
                for version in self.salesforce.content_versions(location_id=opportunity.id)
                if str(version.get("Description") or "").startswith(prefix)
            ]
            document_id = str(mine[0]["ContentDocumentId"]) if mine else ""
        versions = self.salesforce.content_versions(document_id=document_id) if document_id else []
        follow_up = previous is not None or any(
            str(v.get("Description") or "").startswith(prefix) and v.get("Description") != record.tag for v in versions
        )
        done = next((version for version in versions if version.get("Description") == record.tag), None)
        if done is None:
            self.ledger.save(replace(record, status="attaching"))
            version_id = self.salesforce.create_content_version(
                f"Cost-vs-actual {issue.title}"[:255],
                f"closeout-{issue.iid}.html",
                report.content,
                first_publish_location_id=None if document_id else opportunity.id,
                content_document_id=document_id or None,
                description=record.tag,
                reason_for_change=f"engagement closed again {issue.closed_at}" if document_id else None,
            )
            if not document_id:
                document_id = str(self.salesforce.get_record("ContentVersion", version_id)["ContentDocumentId"])
        else:
            version_id = str(done["Id"])
        attached = replace(record, content_document_id=document_id, content_version_id=version_id, status="attached")
        self.ledger.save(attached)
        return attached, follow_up

    def post(
        self,
        issue: ClosedIssue,
        opportunity_id: str,
        analysis: Analysis,
        record: CloseoutRecord,
        mentions: dict[str, str],
        previous: CloseoutRecord | None,
        follow_up: bool,
    ) -> CloseoutRecord:
        """One Chatter post per close, looked up by its tag in the opportunity's feed before posting."""
        existing = next(
            (
                element
                for element in self.salesforce.record_feed(opportunity_id)
                if record.tag in str((element.get("body") or {}).get("text") or "")
            ),
            None,
        )
        if existing is None:
            self.ledger.save(replace(record, status="posting"))
            segments = post_segments(issue, analysis, record.tag, mentions, previous, follow_up)
            existing = self.salesforce.post_feed_item(opportunity_id, segments)
        posted = replace(record, feed_element_id=str(existing["id"]), status="posted")
        self.ledger.save(posted)
        return posted
