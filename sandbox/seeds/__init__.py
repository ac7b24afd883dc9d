"""Seed files: one section per system (see sandbox/README.md for the format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SEED = Path(__file__).with_name("default.yaml")


def load_seed_file(path: str | Path = DEFAULT_SEED) -> dict[str, Any]:
    """Read a seed from JSON or YAML; ``!include``-free, plain data only."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a seed is a mapping of system name to that system's data")
    return data
