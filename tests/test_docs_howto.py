"""The code in the how-to pages runs as written (as in `test_docs.py`)."""

import pytest
from helpers import run_page_code

PAGES = [
    "docs/howto/host-objectives.md",
    "docs/howto/sharding.md",
    "docs/howto/look.md",
    "docs/howto/multi-fidelity.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    run_page_code(page, tmp_path, monkeypatch)
