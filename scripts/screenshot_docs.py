"""The first screen of README.md and RESULTS.md as a reader sees them: each rendered to HTML
(mistune, as nbconvert uses it) and shot by headless Chromium at 1280 x 1000, into
benchmarks/results/<doc>_first_screen.png; and the page of a run (notebooks/executed/<profile>/
index.html, after `bash reproduce.sh <profile>`) where one exists. Needs Debian's chromium
(`apt-get install chromium`).

    python scripts/screenshot_docs.py [profile ...]       # default: tiny
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mistune

ROOT = Path(__file__).resolve().parent.parent
CSS = ("body{font-family:sans-serif;max-width:980px;margin:24px auto;line-height:1.45;font-size:15px}"
       "img{max-width:100%}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px}"
       "pre{background:#f4f4f4;padding:8px;overflow:auto}blockquote{border-left:4px solid #ccc;margin:0;padding-left:12px}")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1000"]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("screenshot_docs: no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    for doc in ("README.md", "RESULTS.md"):
        page = ROOT / f".{doc[:-3].lower()}_render.html"          # beside the doc, so its image links resolve
        page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body>"
                        f"{mistune.html((ROOT / doc).read_text())}</body></html>")
        out = ROOT / "benchmarks" / "results" / f"{doc[:-3]}_first_screen.png"
        try:
            shoot(chromium, page, out)
        finally:
            page.unlink()
        print(out.relative_to(ROOT))
    for profile in sys.argv[1:] or ["tiny"]:
        page = ROOT / "notebooks" / "executed" / profile / "index.html"
        if page.is_file():
            out = ROOT / "benchmarks" / "results" / f"run_page_{profile}_first_screen.png"
            shoot(chromium, page, out)
            print(out.relative_to(ROOT))
    return 0


def shoot(chromium: str, page: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    raise SystemExit(main())
