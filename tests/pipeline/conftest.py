"""Fixtures of the pipeline's tests."""

import pytest


@pytest.fixture
def sources(tmp_path):
    """Five text files of 20 documents and a comment line each (tests.pipeline.lines_stage.LinesStage)."""
    paths = []
    for i in range(5):
        p = tmp_path / f"in{i}.txt"
        p.write_text("\n".join([f"doc {i}.{j}" for j in range(20)] + ["# comment"]))
        paths.append(str(p))
    return paths
