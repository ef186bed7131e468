"""Where the non-Python files (SQL, templates, static files, the widget loader) live.

In a checkout they sit beside the package; a built wheel carries them inside it.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The directory ``name`` (``sql``, ``templates``, ``static``, ``widget``)."""
    bundled = PACKAGE_DIR / name
    return bundled if bundled.is_dir() else PACKAGE_DIR.parent / name
