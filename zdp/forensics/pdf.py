"""The auditor's copy: the HTML report printed to PDF by headless Chromium.

The page is self-contained (inline style and SVG, no network), so Chromium prints exactly what
a browser shows. Chromium is Debian's `chromium` package (`.ci/run` installs it), or the binary
named by ZDP_CHROMIUM; without it the command says so in one line and writes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from zdp.errors import ZdpError
from zdp.fsutil import write_file_atomic
from zdp.settings import settings

CHROMIUM_ENV = "ZDP_CHROMIUM"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_TIMEOUT_S = 120.0


def find_chromium() -> str:
    """The Chromium binary: $ZDP_CHROMIUM, else the first of the usual names on PATH."""
    configured = settings().CHROMIUM
    explicit = str(configured) if configured is not None else ""
    if explicit:
        if shutil.which(explicit) is None:
            raise ZdpError(f"{CHROMIUM_ENV}={explicit} is not an executable")
        return explicit
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise ZdpError(
        "a PDF needs headless Chromium (Debian package `chromium`, or set ZDP_CHROMIUM); "
        "`--format html` writes the same report for any browser to print"
    )


def chromium_args(binary: str, profile: Path) -> list[str]:
    """Headless, no first-run or extensions, a throw-away profile; no sandbox as root (the
    sandbox cannot start without user namespaces, and a root process is not sandboxed)."""
    args = [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


def html_to_pdf(html: str, output: Path) -> int:
    """Print `html` to `output` as PDF; the number of bytes written. The file appears only
    once Chromium has written a whole PDF."""
    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="zdp-pdf-") as work:
        folder = Path(work)
        page = folder / "report.html"
        page.write_text(html, encoding="utf-8")
        printed = folder / "report.pdf"
        args = [
            *chromium_args(binary, folder / "profile"),
            "--no-pdf-header-footer",
            f"--print-to-pdf={printed}",
            page.as_uri(),
        ]
        try:
            run = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=PRINT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ZdpError(
                f"Chromium did not print the report within {PRINT_TIMEOUT_S:.0f} s"
            ) from None
        except OSError as err:
            raise ZdpError(f"cannot run {binary}: {err.strerror}") from None
        data = printed.read_bytes() if printed.exists() else b""
        if run.returncode != 0 or not data.startswith(b"%PDF-"):
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise ZdpError(f"Chromium could not print the report (exit {run.returncode}): {last}")
    try:
        write_file_atomic(output, data)
    except OSError as err:
        raise ZdpError(f"cannot write {output}: {err.strerror}") from None
    return len(data)
