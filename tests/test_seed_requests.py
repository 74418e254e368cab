"""The example bodies the end-to-end tests send are the seed document's own, verbatim: both are read from the
copy of the IntelePeer document kept in docs/seeds/, so the check needs nothing outside the repository."""

from __future__ import annotations

import json
import re

from tests.seed_requests import REQUEST_1, REQUEST_2
from tests.service import ROOT

SEED = ROOT / "docs" / "seeds" / "003_0b8d0e32c2ab91e8.txt"


def _request_body(title: str) -> object:
    """The JSON body printed after `title` and its Content-Type line, up to its Response."""
    text = SEED.read_text()
    section = text[text.index(f"\n{title}\n") :]
    match = re.search(r"Content-Type: application/json\n(\{.*?\n\})\nResponse", section, flags=re.DOTALL)
    assert match, f"no body after {title}"
    return json.loads(match.group(1))


def test_request_1_is_the_seed_documents():
    assert _request_body("Request 1") == REQUEST_1


def test_request_2_is_the_seed_documents():
    assert _request_body("Request 2") == REQUEST_2
