"""Links in message text: escaped like all text, with web addresses made clickable."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

URL = re.compile(r"\bhttps?://[^\s<>\"]+", re.IGNORECASE)
TRAILING = ".,;:!?')]}"  # punctuation that ends a sentence rather than the address
LINK = Markup('<a href="{0}" target="_blank" rel="noopener noreferrer nofollow">{0}</a>')


def linkify(text: str) -> Markup:
    """``text`` as HTML: escaped, with every http(s) address a link that opens in a new tab."""
    parts: list[Markup] = []
    end = 0
    for match in URL.finditer(text):
        url = match.group(0).rstrip(TRAILING)
        after = match.start() + len(url)
        if url.count("(") > url.count(")") and text.startswith(")", after):
            url, after = url + ")", after + 1  # https://en.wikipedia.org/wiki/X_(Y)
        parts += [escape(text[end:match.start()]), LINK.format(url)]
        end = after
    parts.append(escape(text[end:]))
    return Markup("").join(parts)
