"""Screenshot a Hub folder's model card as a page, to look at before a push.

    python scripts/preview_card.py hub/ card.png

The Hub shows a card's YAML metadata as tags beside the text, not as text; this page does the same, then
renders the Markdown (tables, code, the grid) with python-markdown, which MkDocs installs (dcgan[docs]).
The screenshot uses Debian's chromium in headless mode; an existing file is never written over.
"""

from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import markdown
import yaml

STYLE = """body{font-family:system-ui,sans-serif;max-width:820px;margin:24px auto;color:#1f2328}
.tags span{display:inline-block;background:#eef1f5;border-radius:6px;padding:2px 8px;margin:2px;font-size:13px}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:4px 10px;font-size:14px}
pre{background:#f6f8fa;padding:10px;border-radius:6px;font-size:13px}img{max-width:300px}"""


def page(folder: Path) -> str:
    text = (folder / "README.md").read_text()
    _, meta, body = text.split("---\n", 2)
    tags = [
        f"{key}: {v}"
        for key, value in yaml.safe_load(meta).items()
        for v in (value if isinstance(value, list) else [value])
    ]
    chips = "".join(f"<span>{html.escape(t)}</span>" for t in tags)
    rendered = markdown.markdown(body, extensions=["tables", "fenced_code"])
    return f"<!doctype html><meta charset=utf-8><style>{STYLE}</style><div class=tags>{chips}</div>{rendered}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder written by dcgan export RUN --hub-folder DIR")
    parser.add_argument("png", type=Path, help="the screenshot to write (a new file)")
    args = parser.parse_args(argv)
    if args.png.exists():
        print(f"error: {args.png} exists; choose a new name", file=sys.stderr)
        return 2
    if not (args.folder / "README.md").is_file():
        print(f"error: {args.folder} has no README.md; make it with dcgan export RUN --hub-folder DIR", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        # the page sits in a copy of the folder so that the card's relative image links (grid.png) resolve
        copy = Path(tmp) / "card"
        shutil.copytree(args.folder, copy, ignore=shutil.ignore_patterns("*.safetensors"))
        (copy / "preview.html").write_text(page(copy))
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={args.png.resolve()}",
                "--window-size=900,1500",
                (copy / "preview.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
