"""Every Python package folder of the repository is installed (pyproject lists them by hand because
pipeline/, tokenizer/, shards/, training/ and corpora/ install under the crawlmill namespace)."""

import tomllib

from tests.conftest import REPO


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, top in config["package-dir"].items():
        for init in (REPO / top).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / top).parts
            found.add(".".join((name, *relative)))
    assert {"crawlmill.pipeline", "crawlmill.shards", "crawlmill.tokenizer"} <= found
    assert found == listed
