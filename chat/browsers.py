"""A visitor's browser as an agent wants to read it: "Chrome 126 on Windows", not a User-Agent."""

from __future__ import annotations

import re

# First match wins, so browsers that also claim to be Chrome or Safari come first.
BROWSERS = [
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"(?:OPR|Opera)/(\d+)")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS|HeadlessChrome)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)(?:\.\d+)*(?: Mobile/\w+)? Safari/")),
]
SYSTEMS = [
    ("iPadOS", re.compile(r"iPad")),
    ("iOS", re.compile(r"iPhone|iPod")),
    ("Android", re.compile(r"Android")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Macintosh|Mac OS X")),
    ("Linux", re.compile(r"Linux")),
]


def describe(user_agent: str) -> str:
    """"Browser N on System", as far as the User-Agent tells; else the raw string."""
    browser = next((f"{name} {match.group(1)}" for name, pattern in BROWSERS
                    if (match := pattern.search(user_agent))), None)
    system = next((name for name, pattern in SYSTEMS if pattern.search(user_agent)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or user_agent
