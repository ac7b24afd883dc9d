"""The sandbox framework: stand-in base class, fault injection, sessions, TLS, admin API, server."""
