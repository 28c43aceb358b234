"""`make audit`: pip-audit over the locked set (uv.lock exported as hashed requirements, every group and every
transitive pin), or over the virtual environment when no requirements file is given.

Exit status: 1 when any package has a known vulnerability (always). When the vulnerability service cannot
answer for some packages (no network, or an index without PyPI's per-version JSON API), they are listed as
NOT AUDITED in a loud warning; that fails the run (status 2) only with AUDIT_STRICT=1, so a missing service
never turns CI red by chance, and never passes silently either. See docs/security.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def verdict(report: dict[str, Any] | None, *, strict: bool) -> tuple[int, str]:
    """The exit status and the text to print for one pip-audit JSON report (None: no report at all)."""
    if report is None:
        text = "pip-audit: WARNING: NOT AUDITED: pip-audit could not run or reach its vulnerability service."
        return (2 if strict else 0), text
    dependencies = report.get("dependencies", [])
    found = [
        f"  {d['name']} {d.get('version', '?')}: {v['id']}"
        + (f" (fixed in {', '.join(v['fix_versions'])})" if v.get("fix_versions") else " (no fix yet)")
        for d in dependencies
        for v in d.get("vulns") or []
    ]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    lines = []
    if found:
        lines += ["pip-audit: KNOWN VULNERABILITIES (raise the pins in pyproject.toml, then `uv lock`):", *found]
    if skipped:
        lines.append(
            f"pip-audit: WARNING: {len(skipped)} of {len(dependencies)} packages NOT AUDITED; "
            f"the vulnerability service did not answer for them (first: {skipped[0]['skip_reason']})."
            + ("" if strict else " Set AUDIT_STRICT=1 to fail on this.")
        )
    if not found and not skipped:
        lines.append(f"pip-audit: {len(dependencies)} packages audited, no known vulnerabilities.")
    elif not found:
        lines.append(
            f"pip-audit: {len(dependencies) - len(skipped)} packages audited, no known vulnerabilities."
        )
    status = 1 if found else (2 if strict and skipped else 0)
    return status, "\n".join(lines)


def main(argv: list[str]) -> int:
    strict = os.environ.get("AUDIT_STRICT") == "1"
    # A hashed requirements file is audited as it stands, without installing or resolving anything.
    source = ["--requirement", argv[0], "--require-hashes", "--disable-pip"] if argv else ["--skip-editable"]
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "audit.json"
        run = subprocess.run(  # noqa: S603 - our own interpreter and a fixed argument list
            [
                sys.executable,
                "-m",
                "pip_audit",
                "--progress-spinner",
                "off",
                "--desc",
                "off",
                *source,
                "--format",
                "json",
                "--output",
                str(output),
            ],
            check=False,
            timeout=600,
            capture_output=True,
            text=True,
        )
        report = json.loads(output.read_text()) if output.exists() and output.stat().st_size else None
    if report is None:
        print(run.stderr[-3000:], file=sys.stderr)
    status, text = verdict(report, strict=strict)
    print(text, file=sys.stderr if status or "WARNING" in text else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
