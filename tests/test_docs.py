"""The code in the README and the getting-started pages runs as written.

Blocks fenced as ```python run, in order, as one program per page; blocks fenced as
```py are illustrations that need something a test machine lacks (a Dask cluster).
The how-to pages are in `test_docs_howto.py`: two files, so that the two test workers
share the pages.
"""

import pytest
from helpers import run_page_code

PAGES = [
    "README.md",
    "docs/getting-started.md",
    "docs/howto/vmap-seeds.md",
    "docs/howto/equinox-model.md",
    "docs/howto/long-searches.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    run_page_code(page, tmp_path, monkeypatch)
