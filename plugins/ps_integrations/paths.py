"""Where the project's non-code files live (include/, the default exports folder)."""

from __future__ import annotations

import os
from pathlib import Path

# plugins/ps_integrations/paths.py -> project root; the same layout holds in the Docker image.
PROJECT_ROOT = Path(os.environ.get("PS_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
INCLUDE_DIR = Path(os.environ.get("PS_INCLUDE_DIR", PROJECT_ROOT / "include"))
SQL_DIR = INCLUDE_DIR / "sql"
SCHEMA_DIR = SQL_DIR / "schema"
DEFAULT_EXPORTS_BASE = (PROJECT_ROOT / "exports").as_uri()
