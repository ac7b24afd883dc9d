"""Salesforce stand-in: SOAP/OAuth login, REST query/queryAll with paging, sObject writes."""
