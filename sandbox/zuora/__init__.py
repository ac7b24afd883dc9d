"""Zuora stand-in: SOAP 1.1 on the real WSDL (login, query, queryMore), ZOQL by a real grammar."""
