"""Reading the KEY=VALUE settings files of dev/ (dev.env, token-routes.env)."""

from __future__ import annotations

from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    """Every KEY=VALUE line (blank lines and `#` comments skipped), both sides trimmed."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env
