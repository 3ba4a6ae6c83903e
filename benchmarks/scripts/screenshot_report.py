"""Render a reproduce report.html in headless Chromium and save a PNG of it, to look at.

    python benchmarks/scripts/screenshot_report.py RESULT_DIR/report.html [--out report.png]

Checks that the report renders without a network and that its figures and
tables are legible. Needs Chromium (Debian: ``apt-get install chromium``).
The page is rendered at 1200 px wide and as tall as ``--height`` (default
tall enough for a whole quick report).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """The first Chromium-like browser on the PATH."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def screenshot(page: Path, out: Path, *, width: int = 1200, height: int = 9000,
               timeout_s: float = 120.0) -> Path:
    """Save a PNG of ``page`` as headless Chromium draws it; raises RuntimeError if it cannot."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no Chromium found (tried {', '.join(BROWSERS)}); on Debian: "
                           f"apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="asgdbench-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                   "--hide-scrollbars", f"--user-data-dir={profile}",
                   "--no-first-run", "--disable-extensions", "--disable-background-networking",
                   f"--window-size={width},{height}", f"--screenshot={out.resolve()}",
                   page.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a report.html")
    parser.add_argument("--out", type=Path, help="PNG to write (default: next to the page)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=9000)
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"screenshot_report: error: {args.page} does not exist", file=sys.stderr)
        return 2
    out = args.out or args.page.with_suffix(".png")
    try:
        screenshot(args.page, out, width=args.width, height=args.height)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"screenshot_report: error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
