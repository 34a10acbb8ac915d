"""The filter stage: fastText language ID, then the linguistic rule families of the document's language.

One output part per input part (the previous stage's Parquet). Each document gets `lang` and
`lang_score`; it is dropped as `lang_not_kept` (language outside the keep-set; per-language
counts in the `lang_dropped:<code>` counters), `lang_low_score` (below the language's threshold)
or `<family>:<reason>` (the first failing rule, e.g. `gopher_quality:gopher_short_doc`), else kept.
A row without `text` or `id` (a foreign part's null) is quarantined as `no_text` / `no_id`, with
its part and row.

Run it: `crawlmill filter out/ingest --output out/filter [--config configs/filters.yaml]`.
"""

from __future__ import annotations

from typing import Any


from crawlmill.files import AnyPath, as_path, parquet_file, read_json, sha256_file

from ..output_folder import TASKS_FILE
from ..parts import DROPPED_DIR, PartSink, input_parts
from ..stage import PartStage, PartTask
from .config import FilterConfig
from .langid import FastTextLanguageId
from .rules import RuleChain

BATCH_ROWS = 1024


class FilterStage(PartStage):
    name = "filter"

    def __init__(self, config: FilterConfig) -> None:
        super().__init__(config)
        self.keep_dropped = config.keep_dropped
        self._unrecorded_dropped = False
        self.parts = [part for folder in config.inputs for part in input_parts(folder)]
        self._lid: FastTextLanguageId | None = None
        self._chains: dict[str, RuleChain] = {}
        config.check()  # bad rule settings fail now, not in a worker

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, path) for i, path in enumerate(self.parts)]

    def fingerprint(self) -> dict[str, Any]:
        lid = self.config.language_id
        return {
            "model_sha256": sha256_file(FastTextLanguageId.resolve_path(lid.model_path)),
            "keep": lid.keep,
            "rules": {lang: self.config.rules_for(lang) for lang in sorted(lid.keep)},
            # _dropped/ is output too: a finished folder rerun with it asked for is refused, not
            # skipped without it. Recorded only when set, so folders made without it stay done.
            **({"keep_dropped": True} if self.keep_dropped and not self._unrecorded_dropped else {}),
        }

    def plan(self, output: AnyPath) -> None:
        # A folder an earlier version made with --keep-dropped: its record lacks the setting, its
        # _dropped/ shows it. Rerun with it, it is the same output (done, or resumed).
        record = as_path(output) / TASKS_FILE
        self._unrecorded_dropped = bool(
            self.keep_dropped and record.exists() and (as_path(output) / DROPPED_DIR).exists()
            and "keep_dropped" not in (read_json(record).get("settings") or {})
        )  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lid": None, "_chains": {}}

    def chain(self, lang: str) -> RuleChain:
        if lang not in self._chains:
            self._chains[lang] = RuleChain(lang, self.config.rules_for(lang))
        return self._chains[lang]

    def process(self, task: PartTask, sink: PartSink) -> None:
        if self._lid is None:
            self._lid = FastTextLanguageId(self.config.language_id.model_path)
        keep = self.config.language_id.keep
        batches = parquet_file(task.source).iter_batches(batch_size=BATCH_ROWS)
        for offset, row in enumerate(row for batch in batches for row in batch.to_pylist()):
            if sink.quarantine_incomplete(row, offset):  # a foreign part's row without its text or id
                continue
            lang, score = self._lid.predict(row["text"])
            row["lang"], row["lang_score"] = lang, round(score, 4)
            if lang not in keep:
                sink.count(f"lang_dropped:{lang}")
                sink.drop("lang_not_kept", row)
            elif score < keep[lang]:
                sink.drop("lang_low_score", row)
            elif reason := self.chain(lang).first_failure(row["text"]):
                sink.drop(reason, row)
            else:
                sink.count(f"lang_kept:{lang}")
                sink.keep(row)
