"""The slice of the Salesforce data model the stand-in serves: objects, fields, relationships."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str  # id reference string textarea email url picklist boolean date datetime currency double int
    updateable: bool = True
    reference_to: str | None = None
    relationship_name: str | None = None
    createable: bool | None = None  # None: as updateable (create-only fields: True with updateable False)

    @property
    def can_create(self) -> bool:
        return self.updateable if self.createable is None else self.createable


@dataclass(frozen=True)
class ObjectDef:
    name: str
    key_prefix: str
    fields: dict[str, FieldDef]
    # child relationship name -> (child object, foreign key field on the child)
    children: dict[str, tuple[str, str]] = field(default_factory=dict)

    def field(self, name: str) -> FieldDef | None:
        return self._lower.get(name.lower())

    def parent(self, relationship: str) -> FieldDef | None:
        return self._relationships.get(relationship.lower())

    def child(self, relationship: str) -> tuple[str, tuple[str, str]] | None:
        for name, target in self.children.items():
            if name.lower() == relationship.lower():
                return name, target
        return None

    @property
    def _lower(self) -> dict[str, FieldDef]:
        return {name.lower(): definition for name, definition in self.fields.items()}

    @property
    def _relationships(self) -> dict[str, FieldDef]:
        return {
            definition.relationship_name.lower(): definition
            for definition in self.fields.values()
            if definition.relationship_name
        }


def _fields(*definitions: FieldDef) -> dict[str, FieldDef]:
    system = (
        FieldDef("Id", "id", updateable=False),
        FieldDef("IsDeleted", "boolean", updateable=False),
        FieldDef("CreatedDate", "datetime", updateable=False),
        FieldDef("LastModifiedDate", "datetime", updateable=False),
        FieldDef("SystemModstamp", "datetime", updateable=False),
    )
    return {definition.name: definition for definition in (*system, *definitions)}


def _ref(name: str, target: str, relationship: str) -> FieldDef:
    return FieldDef(name, "reference", reference_to=target, relationship_name=relationship)


OBJECTS: dict[str, ObjectDef] = {
    definition.name: definition
    for definition in (
        ObjectDef(
            "User",
            "005",
            _fields(
                FieldDef("Username", "string"),
                FieldDef("Name", "string", updateable=False),
                FieldDef("FirstName", "string"),
                FieldDef("LastName", "string"),
                FieldDef("Email", "email"),
                FieldDef("IsActive", "boolean"),
                FieldDef("Title", "string"),
            ),
        ),
        ObjectDef(
            "RecordType",
            "012",
            _fields(
                FieldDef("Name", "string"),
                FieldDef("DeveloperName", "string"),
                FieldDef("SobjectType", "picklist"),
                FieldDef("IsActive", "boolean"),
            ),
        ),
        ObjectDef(
            "Account",
            "001",
            _fields(
                FieldDef("Name", "string"),
                FieldDef("Industry", "picklist"),
                FieldDef("BillingCountry", "string"),
                FieldDef("Website", "url"),
                _ref("OwnerId", "User", "Owner"),
            ),
            children={"Contacts": ("Contact", "AccountId"), "Opportunities": ("Opportunity", "AccountId")},
        ),
        ObjectDef(
            "Contact",
            "003",
            _fields(
                _ref("AccountId", "Account", "Account"),
                FieldDef("FirstName", "string"),
                FieldDef("LastName", "string"),
                FieldDef("Name", "string", updateable=False),
                FieldDef("Email", "email"),
                FieldDef("Title", "string"),
                FieldDef("HasOptedOutOfEmail", "boolean"),
            ),
        ),
        ObjectDef(
            "Product2",
            "01t",
            _fields(
                FieldDef("Name", "string"),
                FieldDef("ProductCode", "string"),
                FieldDef("Family", "picklist"),
                FieldDef("IsActive", "boolean"),
            ),
            children={"PricebookEntries": ("PricebookEntry", "Product2Id")},
        ),
        # Price books (issue #19): every org has one standard price book (IsStandard, read-only);
        # the others are custom price books.
        ObjectDef(
            "Pricebook2",
            "01s",
            _fields(
                FieldDef("Name", "string"),
                FieldDef("IsActive", "boolean"),
                FieldDef("IsStandard", "boolean", updateable=False),
                FieldDef("Description", "string"),
            ),
            children={"PricebookEntries": ("PricebookEntry", "Pricebook2Id")},
        ),
        # A product's list price in one price book (and currency, with multi-currency). Product2Id and
        # Pricebook2Id are set on create only; Name and ProductCode are the product's, read-only.
        ObjectDef(
            "PricebookEntry",
            "01u",
            _fields(
                FieldDef(
                    "Pricebook2Id",
                    "reference",
                    updateable=False,
                    createable=True,
                    reference_to="Pricebook2",
                    relationship_name="Pricebook2",
                ),
                FieldDef(
                    "Product2Id",
                    "reference",
                    updateable=False,
                    createable=True,
                    reference_to="Product2",
                    relationship_name="Product2",
                ),
                FieldDef("Name", "string", updateable=False),
                FieldDef("ProductCode", "string", updateable=False),
                FieldDef("UnitPrice", "currency"),
                FieldDef("IsActive", "boolean"),
                FieldDef("UseStandardPrice", "boolean"),
                FieldDef("CurrencyIsoCode", "picklist", updateable=False, createable=True),
            ),
        ),
        ObjectDef(
            "Opportunity",
            "006",
            _fields(
                FieldDef("Name", "string"),
                _ref("AccountId", "Account", "Account"),
                _ref("OwnerId", "User", "Owner"),
                _ref("RecordTypeId", "RecordType", "RecordType"),
                FieldDef("StageName", "picklist"),
                FieldDef("IsWon", "boolean", updateable=False),
                FieldDef("IsClosed", "boolean", updateable=False),
                FieldDef("CloseDate", "date"),
                FieldDef("Amount", "currency"),
                FieldDef("CurrencyIsoCode", "picklist"),
                FieldDef("Type", "picklist"),
                FieldDef("Description", "textarea"),
                FieldDef("GitLab_Issue_URL__c", "url"),
                FieldDef("Budgeted_Hours__c", "double"),
            ),
            children={
                "OpportunityLineItems": ("OpportunityLineItem", "OpportunityId"),
                "OpportunityContactRoles": ("OpportunityContactRole", "OpportunityId"),
            },
        ),
        ObjectDef(
            "OpportunityLineItem",
            "00k",
            _fields(
                _ref("OpportunityId", "Opportunity", "Opportunity"),
                _ref("Product2Id", "Product2", "Product2"),
                FieldDef("Name", "string", updateable=False),
                FieldDef("ProductCode", "string", updateable=False),
                FieldDef("Quantity", "double"),
                FieldDef("UnitPrice", "currency"),
                FieldDef("TotalPrice", "currency", updateable=False),
                FieldDef("CurrencyIsoCode", "picklist"),
            ),
        ),
        ObjectDef(
            "OpportunityContactRole",
            "00K",
            _fields(
                _ref("OpportunityId", "Opportunity", "Opportunity"),
                _ref("ContactId", "Contact", "Contact"),
                FieldDef("Role", "picklist"),
                FieldDef("IsPrimary", "boolean"),
            ),
        ),
        # Salesforce Files (issue #22): a document, its versions and the records it is shared with.
        ObjectDef(
            "ContentDocument",
            "069",
            _fields(
                FieldDef("Title", "string"),
                FieldDef("OwnerId", "reference", updateable=False, reference_to="User", relationship_name="Owner"),
                FieldDef(
                    "LatestPublishedVersionId",
                    "reference",
                    updateable=False,
                    reference_to="ContentVersion",
                    relationship_name="LatestPublishedVersion",
                ),
                FieldDef("FileExtension", "string", updateable=False),
                FieldDef("ContentSize", "int", updateable=False),
            ),
            children={
                "ContentVersions": ("ContentVersion", "ContentDocumentId"),
                "ContentDocumentLinks": ("ContentDocumentLink", "ContentDocumentId"),
            },
        ),
        ObjectDef(
            "ContentVersion",
            "068",
            _fields(
                FieldDef("Title", "string"),
                FieldDef("PathOnClient", "string", updateable=False, createable=True),
                FieldDef("VersionData", "base64", updateable=False, createable=True),
                FieldDef("Description", "textarea"),
                FieldDef("ReasonForChange", "string", updateable=False, createable=True),
                FieldDef(
                    "ContentDocumentId",
                    "reference",
                    updateable=False,
                    createable=True,
                    reference_to="ContentDocument",
                    relationship_name="ContentDocument",
                ),
                FieldDef(
                    "FirstPublishLocationId", "reference", updateable=False, createable=True, reference_to="Opportunity"
                ),
                FieldDef("OwnerId", "reference", updateable=False, reference_to="User", relationship_name="Owner"),
                FieldDef("IsLatest", "boolean", updateable=False),
                FieldDef("VersionNumber", "string", updateable=False),
                FieldDef("ContentSize", "int", updateable=False),
                FieldDef("FileExtension", "string", updateable=False),
                FieldDef("FileType", "string", updateable=False),
                FieldDef("Checksum", "string", updateable=False),
            ),
        ),
        ObjectDef(
            "ContentDocumentLink",
            "06A",
            _fields(
                FieldDef(
                    "ContentDocumentId",
                    "reference",
                    updateable=False,
                    createable=True,
                    reference_to="ContentDocument",
                    relationship_name="ContentDocument",
                ),
                FieldDef("LinkedEntityId", "reference", updateable=False, createable=True, reference_to="Opportunity"),
                FieldDef("ShareType", "picklist"),
                FieldDef("Visibility", "picklist"),
            ),
        ),
        # Chatter posts as the FeedItem sObject (SOQL); the Connect REST API serves the same posts.
        ObjectDef(
            "FeedItem",
            "0D5",
            _fields(
                FieldDef("ParentId", "reference", updateable=False, createable=True, reference_to="Opportunity"),
                FieldDef("Body", "textarea"),
                FieldDef("Type", "picklist", updateable=False),
                FieldDef("IsRichText", "boolean"),
                FieldDef(
                    "CreatedById", "reference", updateable=False, reference_to="User", relationship_name="CreatedBy"
                ),
            ),
        ),
    )
}

# StageName -> (IsClosed, IsWon), as the org's opportunity stage settings define them.
STAGES: dict[str, tuple[bool, bool]] = {
    "Prospecting": (False, False),
    "Qualification": (False, False),
    "Needs Analysis": (False, False),
    "Proposal/Price Quote": (False, False),
    "Negotiation/Review": (False, False),
    "Closed Won": (True, True),
    "Closed Lost": (True, False),
}


def find_object(name: str) -> ObjectDef | None:
    for object_name, definition in OBJECTS.items():
        if object_name.lower() == name.lower():
            return definition
    return None
