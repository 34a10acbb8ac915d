"""Every Python package folder of the repository is installed (pyproject lists them by hand because
pipeline/, tokenizer/, training/ and corpora/ install under the crawlmill namespace)."""

import tomllib

from tests.conftest import REPO

MAPPED = {
    "crawlmill": "crawlmill", "pipeline": "crawlmill.pipeline", "tokenizer": "crawlmill.tokenizer", "training": "crawlmill.training",
    "corpora": "crawlmill.corpora",
}  # fmt: skip


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, name in MAPPED.items():
        for init in (REPO / top).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / top).parts
            found.add(".".join((name, *relative)))
    assert found == listed
