"""MkDocs hooks of the documentation site (mkdocs.yml `hooks:`).

The docstrings cross-reference in Sphinx's inline roles (``:class:`~ov_explain.core.model.Classifier```), which
mkdocstrings leaves as text: the API page would read ":class: Classifier". This turns each role into the code it
names, shortened as Sphinx shows a ``~`` target (to its last component).

mkdocs-click 0.9 prints the default of an option that has none as click 8.3's marker for it,
``Sentinel.UNSET`` (mkdocs/mkdocs-click pull request 95, not released): the CLI page shows "none" there.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|mod|attr|meth|func|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _code(match: re.Match) -> str:
    shorten, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if shorten else target}</code>"


def on_page_content(html: str, **_: object) -> str:
    return _ROLE.sub(_code, html).replace("<code>Sentinel.UNSET</code>", "none")
