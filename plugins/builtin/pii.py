"""Built-in PII detection: names, places, contact details, bank and identity numbers, secrets.

The detection engine (Presidio with spaCy's French pipeline, see `plugins.builtin.pii_engine`) is
imported and built on the first text, so commands that store nothing do not pay for it.
"""

from __future__ import annotations

from plugins.hookspecs import hookimpl


@hookimpl
def find_pii(text):
    from plugins.builtin.pii_engine import detect

    return detect(text)
