"""A toy stage for the tests that add a stage to a copy of the pipeline list (tests/pipeline/
test_definition.py, tests/dags): it drops documents shorter than `min_chars` and keeps the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from crawlmill.pipeline.definition import PIPELINE, Pipeline, StageSpec
from crawlmill.pipeline.parts import PartSink, input_parts
from crawlmill.pipeline.stage import PartStage, PartTask


@dataclass
class ToyConfig:
    inputs: list[str] = field(default_factory=list, metadata={"path": True})
    min_chars: int = 0

    def __post_init__(self) -> None:
        if self.min_chars < 0:
            raise ValueError(f"min_chars {self.min_chars}: must be >= 0")


class ToyStage(PartStage):
    name = "toy"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.parts = [part for folder in config.inputs for part in input_parts(folder)]

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, part) for i, part in enumerate(self.parts)]

    def fingerprint(self) -> dict:
        return {"min_chars": self.config.min_chars}

    def process(self, task: PartTask, sink: PartSink) -> None:
        for row in pq.read_table(task.source).to_pylist():
            if len(row["text"]) < self.config.min_chars:
                sink.drop("toy_short")
            else:
                sink.keep(row)


TOY = StageSpec("toy", ToyConfig, "tests.pipeline.toy_stage:ToyStage", "drops short documents (a test stage)", "(none)", reads=("filter",))


def pipeline_with_toy() -> Pipeline:
    """A copy of the pipeline with the toy stage after filter (dedup still reads filter)."""
    return PIPELINE.with_stage(TOY, after="filter")
