"""Links in message text: escaped like all text, with web addresses made clickable."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# Matched in already-escaped text, so ``<`` and quotes cannot occur inside (they are entities).
URL = re.compile(r"\bhttps?://[^\s<>]+", re.IGNORECASE)
TRAILING = ".,;:!?'\")]}"  # punctuation that ends a sentence rather than the address


def linkify(text: str) -> Markup:
    """``text`` as HTML: escaped, with every http(s) address a link that opens in a new tab."""

    def link(match: re.Match[str]) -> str:
        url = match.group(0)
        trimmed = url.rstrip(TRAILING)
        while trimmed.endswith("&#34") or trimmed.endswith("&#39"):  # an escaped closing quote
            trimmed = trimmed[:-4]
        rest = url[len(trimmed):]
        if trimmed.count("(") > trimmed.count(")") and rest.startswith(")"):
            trimmed, rest = trimmed + ")", rest[1:]  # https://en.wikipedia.org/wiki/X_(Y)
        return (f'<a href="{trimmed}" target="_blank" rel="noopener noreferrer nofollow">'
                f"{trimmed}</a>{rest}")

    return Markup(URL.sub(link, str(escape(text))))
