"""Local stand-ins for the external systems ps-integrations talks to.

Each stand-in speaks its system's real wire protocol so the real client libraries can drive it.
Start them all with ``python -m sandbox serve`` (see sandbox/README.md).
"""
