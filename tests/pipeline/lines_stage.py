"""A part stage for the runner's tests (tests/pipeline/test_runner*.py, test_folder_lock.py): each
source a text file, each line a document; `#` lines are dropped. Its `sources` fixture: conftest.py."""

from pathlib import Path

from crawlmill.pipeline.parts import PartSink
from crawlmill.pipeline.schema import document_id
from crawlmill.pipeline.stage import PartStage, PartTask


class LinesStage(PartStage):
    """Each source is a text file; each line a document; lines starting with '#' are dropped."""

    name = "lines"

    def __init__(self, files: list[str]) -> None:
        super().__init__(files)
        self.files = files

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, s) for i, s in enumerate(self.files)]

    def process(self, task: PartTask, sink: PartSink) -> None:
        for n, line in enumerate(Path(task.source).read_text().splitlines()):
            if line.startswith("#"):
                sink.drop("comment")
            elif line == "BOOM":
                raise ValueError(f"bad line {n}")
            else:
                sink.keep({"id": document_id(f"{task.source}:{n}"), "text": line})


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
