"""The code in the README and the self-contained docs pages runs as written.

Blocks fenced as ```python run, in order, as one program per page; blocks fenced as
```py are illustrations that need something a test machine lacks (a Dask cluster).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "docs/getting-started.md",
    "docs/howto/vmap-seeds.md",
    "docs/howto/equinox-model.md",
    "docs/howto/long-searches.md",
    "docs/howto/host-objectives.md",
    "docs/howto/sharding.md",
    "docs/howto/look.md",
    "docs/howto/multi-fidelity.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert blocks, f"{page} has no python code"
    monkeypatch.chdir(tmp_path)  # checkpoints and files land here
    exec(compile("\n".join(blocks), page, "exec"), {"__name__": "__docs__"})
