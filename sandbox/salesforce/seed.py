"""The Salesforce part of a seed: explicit records plus a deterministic, realistic generated org.

Seed section (all keys optional)::

    salesforce:
      users:            # login users; each also becomes a User record
        - {username, password, security_token, first_name, last_name, email}
      connected_apps:   # for the OAuth token endpoint
        - {consumer_key, consumer_secret, public_key_pem?}   # public key: JWT bearer grant
      daily_api_limit: 15000
      page_size: 2000           # records per query page (child records count)
      locator_ttl_seconds: 900
      multi_currency: true      # false: no CurrencyIsoCode anywhere, one USD price per product and book
      generate: {opportunities: 320, random_seed: 7, end_date: "2026-11-01"}
      records:          # explicit records by sObject type, stored as given
        Account: [{Id: ..., Name: ...}]

The generated org: record types ("Professional Services Only" and others), account executives,
accounts, contacts (some opted out of e-mail), products whose codes are the SKUs of the real
services.yml plus a custom-SOW product and a legacy SKU found nowhere else, the standard price book
and the PS price book (``Professional Services``) with the gaps listed at ``NOT_IN_PRICE_BOOK`` and
below, two subscription products (not PS), and opportunities over
two years ending at ``end_date`` in every stage, a few reopened after being won and a few deleted,
and the finance users the engagement close-out mentions in Chatter (``FINANCE_USERS``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sandbox.reference import price_of, services
from sandbox.salesforce.models import format_datetime, make_id
from sandbox.salesforce.schema import OBJECTS

PS_RECORD_TYPE = "Professional Services Only"
FINANCE_USERS = [
    ("controller@ps.example.com", "Carla", "Controller", "Controller"),
    ("fbp.sales@ps.example.com", "Felix", "Partner", "Finance Business Partner (Sales)"),
]
RECORD_TYPES = [
    (PS_RECORD_TYPE, "Professional_Services_Only"),
    ("Standard", "Standard"),
    ("Add-On Business", "Add_On_Business"),
    ("Renewal", "Renewal"),
]
OPEN_STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review"]
ROLES = ["Decision Maker", "Technical Buyer", "Economic Buyer", "Evaluator", "Executive Sponsor"]
COMPANY_WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Wayne",
    "Stark",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Massive",
    "Dynamic",
    "Aperture",
    "Black",
    "Mesa",
    "Nakatomi",
    "Virtucon",
    "Monarch",
    "Zorg",
    "Buy",
    "n",
    "Large",
    "Prestige",
    "Sterling",
    "Cooper",
    "Dunder",
    "Mifflin",
    "Pied",
    "Piper",
    "Bluth",
    "Blue",
    "Sun",
    "Weyland",
    "Yutani",
    "Ollivander",
    "Duff",
    "Krusty",
]
SUFFIXES = ["Inc.", "GmbH", "Ltd", "S.A.", "Group", "Corp", "AG", "LLC", "BV", "Holdings"]
COUNTRIES = [
    "United States",
    "Germany",
    "United Kingdom",
    "France",
    "Netherlands",
    "Japan",
    "Canada",
    "Brazil",
]
FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Radia",
    "Guido",
    "Frances",
    "Edsger",
    "Hedy",
    "Tim",
    "Katherine",
    "Donald",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Perlman",
    "Rossum",
    "Allen",
    "Dijkstra",
    "Lamarr",
    "Berners-Lee",
    "Johnson",
    "Knuth",
]
CURRENCIES = ["USD"] * 8 + ["EUR", "GBP"]
# Accounts whose names try to act inside GitLab when copied into an issue.
# Price books (issue #19). The standard price book holds every product's list price; the PS team's
# custom price book is what PS quotes are built from.
STANDARD_PRICE_BOOK = "Standard Price Book"
PS_PRICE_BOOK = "Professional Services"
ORG_CURRENCY = "USD"
# Gaps between Zuora's catalog (sandbox/zuora/seed.py, same services.yml order) and the price book,
# by position among the services.yml entries with a SKU. Zuora retires the 4th SKU (GL-PM) in 2025;
# Salesforce still sells it. Zuora's PS-ZUORA-ONLY never reached Salesforce.
NOT_IN_PRICE_BOOK = 14  # a Product2 nobody gave a price book entry
INACTIVE_PRODUCT = 15  # deactivated in Salesforce, active in Zuora
PRICE_DIFFERS = 16  # the standard price lags Zuora's by 2,000
NOT_IN_PS_PRICE_BOOK = 17  # standard price only: missing from the PS price book
INACTIVE_EUR_ENTRY = 18  # the EUR entry is switched off
NON_PS_PRODUCTS = [("GitLab Premium (SaaS)", "GL-PREMIUM-SAAS", 348), ("GitLab Ultimate (SaaS)", "GL-ULT-SAAS", 1188)]
HOSTILE_ACCOUNTS = [
    "Initech <b>EMEA</b> | Ops | ![x](http://evil.example/x.png)",
    "Globex /close @all #1 ~urgent",
]


def build_records(seed: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in OBJECTS}
    if seed.get("generate"):
        for sobject, rows in generate(**seed["generate"]).items():
            records[sobject].extend(rows)
    for user in seed.get("users", []):
        records["User"].append(
            {
                "Username": user["username"],
                "FirstName": user.get("first_name", "Integration"),
                "LastName": user.get("last_name", "User"),
                "Email": user.get("email", user["username"]),
                "IsActive": True,
                "Title": "Integration user",
            }
        )
    for sobject, rows in (seed.get("records") or {}).items():
        records[sobject].extend(dict(row) for row in rows)
    if not seed.get("multi_currency", True):
        # a single-currency org has one price per product and price book, in the org's currency
        records["PricebookEntry"] = [
            row for row in records["PricebookEntry"] if row.get("CurrencyIsoCode") in (None, ORG_CURRENCY)
        ]
    # parents before children so derived fields (product names on line items) resolve
    order = [
        "User",
        "RecordType",
        "Account",
        "Contact",
        "Product2",
        "Pricebook2",
        "PricebookEntry",
        "Opportunity",
        "OpportunityLineItem",
        "OpportunityContactRole",
    ]
    return {name: records[name] for name in order}


class _Ids:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def next(self, sobject: str) -> str:
        self.counters[sobject] = self.counters.get(sobject, 0) + 1
        return make_id(OBJECTS[sobject].key_prefix, self.counters[sobject])


def _stamp(moment: datetime) -> str:
    return format_datetime(moment)


def generate(
    opportunities: int = 320, random_seed: int = 7, end_date: str = "2026-11-01"
) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(random_seed)
    ids = _Ids()
    end = datetime.combine(date.fromisoformat(end_date), datetime.min.time(), UTC)
    start = end - timedelta(days=730)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in OBJECTS}
    created = _stamp(start - timedelta(days=30))

    def base(sobject: str, **fields: Any) -> dict[str, Any]:
        row = {
            "Id": ids.next(sobject),
            "CreatedDate": created,
            "LastModifiedDate": created,
            "SystemModstamp": created,
        }
        row.update(fields)
        out[sobject].append(row)
        return row

    record_types = {
        name: base("RecordType", Name=name, DeveloperName=developer, SobjectType="Opportunity", IsActive=True)
        for name, developer in RECORD_TYPES
    }
    owners = [
        base(
            "User",
            Username=f"{first.lower()}.{last.lower()}@ps.example.com",
            FirstName=first,
            LastName=last,
            Email=f"{first.lower()}.{last.lower()}@ps.example.com",
            IsActive=index != 7,
            Title="Account Executive",
        )
        for index, (first, last) in enumerate(zip(FIRST[:8], LAST[:8], strict=True))
    ]
    # finance people the engagement close-out mentions in Chatter (issue #22)
    for username, first, last, title in FINANCE_USERS:
        base("User", Username=username, FirstName=first, LastName=last, Email=username, IsActive=True, Title=title)

    accounts: list[str] = []
    names: set[str] = set()
    while len(accounts) < 60 - len(HOSTILE_ACCOUNTS):
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_WORDS)} {rng.choice(SUFFIXES)}"
        if name in names:
            continue
        names.add(name)
        accounts.append(name)
    account_rows = []
    for name in [*accounts, *HOSTILE_ACCOUNTS]:
        domain = "".join(char for char in name.split()[0].lower() if char.isalnum()) or "example"
        account = base(
            "Account",
            Name=name,
            Industry=rng.choice(["Technology", "Finance", "Healthcare", "Retail", "Government", "Manufacturing"]),
            BillingCountry=rng.choice(COUNTRIES),
            Website=f"https://{domain}.example.com",
            OwnerId=rng.choice(owners)["Id"],
        )
        contacts = []
        for _ in range(rng.randint(1, 3)):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            contacts.append(
                base(
                    "Contact",
                    AccountId=account["Id"],
                    FirstName=first,
                    LastName=last,
                    Email=f"{first.lower()}.{last.lower().replace('-', '')}@{domain}.example.com",
                    Title=rng.choice(["CTO", "VP Engineering", "DevOps Lead", "Procurement", "Platform Owner"]),
                    HasOptedOutOfEmail=rng.random() < 0.12,
                )
            )
        account_rows.append((account, contacts))

    catalog = [entry for entry in services() if entry.get("sku")]
    products = [
        base(
            "Product2",
            Name=entry["name"],
            ProductCode=entry["sku"],
            Family=entry.get("category"),
            IsActive=True,
        )
        for entry in catalog
    ]
    prices = {product["Id"]: price_of(entry) or 10000 for product, entry in zip(products, catalog, strict=True)}
    custom_sow = base("Product2", Name="Custom Statement of Work", ProductCode=None, Family="Consulting", IsActive=True)
    legacy = base(
        "Product2",
        Name="Legacy Migration Package",
        ProductCode="PS-LEGACY-MIG",
        Family="Migration",
        IsActive=False,
    )
    prices[custom_sow["Id"]] = 25000
    prices[legacy["Id"]] = 18000

    span = (end - start).total_seconds()
    for number in range(opportunities):
        account, contacts = rng.choice(account_rows)
        is_ps = rng.random() < 0.6
        record_type = record_types[PS_RECORD_TYPE] if is_ps else record_types[rng.choice(RECORD_TYPES[1:])[0]]
        close = start + timedelta(seconds=rng.random() * span)
        roll = rng.random()
        stage = "Closed Won" if roll < 0.5 else "Closed Lost" if roll < 0.7 else rng.choice(OPEN_STAGES)
        modified = min(
            close + timedelta(hours=rng.randint(1, 72), minutes=rng.randint(0, 59)),
            end - timedelta(minutes=5),
        )
        currency = rng.choice(CURRENCIES)
        title = rng.choice(["Implementation", "Migration", "Training", "Advisory", "Rollout", "Health Check"])
        opportunity = base(
            "Opportunity",
            Name=f"{account['Name'].split(' <')[0]} - {title} FY{close.year % 100 + (1 if close.month >= 2 else 0)}",
            AccountId=account["Id"],
            OwnerId=account["OwnerId"],
            RecordTypeId=record_type["Id"],
            StageName=stage,
            CloseDate=close.date().isoformat(),
            CurrencyIsoCode=currency,
            Type="New Business" if is_ps else "Existing Business",
            CreatedDate=_stamp(close - timedelta(days=rng.randint(20, 120))),
            LastModifiedDate=_stamp(modified),
            SystemModstamp=_stamp(modified),
        )
        if number % 41 == 5:
            opportunity["Name"] += " /assign @root"
        if is_ps and rng.random() < 0.08:
            chosen = [custom_sow]
        elif is_ps and rng.random() < 0.03:
            chosen = [legacy]
        else:
            chosen = rng.sample(products, rng.randint(1, 3))
        amount = 0.0
        for product in chosen:
            quantity = float(rng.choice([1, 1, 1, 2, 3, 5]))
            unit_price = float(prices[product["Id"]])
            amount += quantity * unit_price
            base(
                "OpportunityLineItem",
                OpportunityId=opportunity["Id"],
                Product2Id=product["Id"],
                Quantity=quantity,
                UnitPrice=unit_price,
                CurrencyIsoCode=currency,
                CreatedDate=opportunity["CreatedDate"],
                LastModifiedDate=opportunity["CreatedDate"],
                SystemModstamp=opportunity["CreatedDate"],
            )
        opportunity["Amount"] = round(amount, 2)
        if is_ps and number % 2 == 0:
            # sales filled in the budget on some deals; the roll-up falls back to per-SKU hours
            opportunity["Budgeted_Hours__c"] = float(40 * (1 + number % 7))
        for index, contact in enumerate(rng.sample(contacts, rng.randint(1, len(contacts)))):
            base(
                "OpportunityContactRole",
                OpportunityId=opportunity["Id"],
                ContactId=contact["Id"],
                Role=rng.choice(ROLES),
                IsPrimary=index == 0,
            )
        if stage == "Closed Won" and is_ps and number % 37 == 3:
            # won, then reopened by sales a few days later
            reopened = min(modified + timedelta(days=rng.randint(2, 10)), end - timedelta(minutes=1))
            opportunity.update(
                StageName="Negotiation/Review",
                LastModifiedDate=_stamp(reopened),
                SystemModstamp=_stamp(reopened),
            )
        if number % 53 == 7:
            deleted = min(modified + timedelta(days=rng.randint(1, 5)), end - timedelta(minutes=1))
            opportunity.update(IsDeleted=True, LastModifiedDate=_stamp(deleted), SystemModstamp=_stamp(deleted))
    _price_books(base, products, catalog, legacy)
    return out


def _price_books(
    base: Callable[..., dict[str, Any]],
    products: list[dict[str, Any]],
    catalog: list[dict[str, Any]],
    legacy: dict[str, Any],
) -> None:
    """The standard and the PS price book, matching Zuora's catalog with a few realistic gaps."""
    standard = base("Pricebook2", Name=STANDARD_PRICE_BOOK, IsActive=True, IsStandard=True)
    ps_book = base(
        "Pricebook2",
        Name=PS_PRICE_BOOK,
        IsActive=True,
        IsStandard=False,
        Description="Professional Services and Training",
    )
    for index, (product, entry) in enumerate(zip(products, catalog, strict=True)):
        if index == NOT_IN_PRICE_BOOK:
            continue
        if index == INACTIVE_PRODUCT:
            product["IsActive"] = False
        usd = Decimal(price_of(entry) or 10000)
        prices = {ORG_CURRENCY: usd - 2000 if index == PRICE_DIFFERS else usd}
        if index % 3 == 0:  # Zuora prices every third product in EUR too
            prices["EUR"] = (usd * Decimal("0.92")).quantize(Decimal("1"))
        for currency, price in prices.items():
            active = not (index == INACTIVE_EUR_ENTRY and currency == "EUR")
            common = {"Product2Id": product["Id"], "CurrencyIsoCode": currency, "IsActive": active}
            common["UnitPrice"] = float(price)
            base("PricebookEntry", Pricebook2Id=standard["Id"], UseStandardPrice=False, **common)
            if index != NOT_IN_PS_PRICE_BOOK:
                base("PricebookEntry", Pricebook2Id=ps_book["Id"], UseStandardPrice=True, **common)
    # the retired legacy package keeps its (inactive) list price; subscriptions are not PS products
    base(
        "PricebookEntry",
        Pricebook2Id=standard["Id"],
        Product2Id=legacy["Id"],
        UnitPrice=18000.0,
        CurrencyIsoCode=ORG_CURRENCY,
        IsActive=False,
        UseStandardPrice=False,
    )
    for name, code, list_price in NON_PS_PRODUCTS:
        product = base("Product2", Name=name, ProductCode=code, Family="Subscription", IsActive=True)
        base(
            "PricebookEntry",
            Pricebook2Id=standard["Id"],
            Product2Id=product["Id"],
            UnitPrice=float(list_price),
            CurrencyIsoCode=ORG_CURRENCY,
            IsActive=True,
            UseStandardPrice=False,
        )
