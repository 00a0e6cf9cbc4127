"""What every report shares: the jinja2 environment over templates/report/, the small value
formatters both templates use, and writing a report's files into its directory."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import jinja2

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "report"


def env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                              trim_blocks=True, lstrip_blocks=True)


def render(template: str, **values: Any) -> str:
    return env().get_template(template).render(md=md_cell, **values)


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_cell(text: Any) -> str:
    """A value safe inside a Markdown table cell: one line, HTML special characters as
    entities and Markdown punctuation escaped, so a URI from a log (`/<img onerror=…>`,
    `[x](javascript:…)`, a `|`) shows as text and never as markup or a link."""
    one_line = str(text).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def when(t: Optional[float]) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def num(v: Optional[float], digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f} %"


def write_files(directory: Union[str, Path], texts: Mapping[str, str]) -> list[Path]:
    """Write each name -> text into `directory` (created); the paths, in the given order."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
