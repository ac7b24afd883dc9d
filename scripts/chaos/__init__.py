"""The chaos harness: every DAG under seeded random faults and kills (see __main__.py)."""
