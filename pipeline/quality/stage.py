"""The quality stage: score every document with a fastText classifier (semantic quality, the half of
DeepSeek's filtering the linguistic rules do not cover), bucket the scores, keep by a rule.

    crawlmill quality out/dedup --model models/quality --output out/quality --keep-top 0.3
    crawlmill quality train --positive en=ref/en.jsonl --negative out/dedup --output models/quality

Steps, through the runner:
1. `train_model` (only when the config has `train:` and no `model`): train.py, into `<output>/_model`.
2. `score`, a node step: the model is loaded once per node and the node's CPUs score their parts in
   processes forked from the loader, so a multi-gigabyte model (DCLM's) exists once per node, not once
   per worker; each part's scores go to `_work/scores/`, its per-language histograms to `_work/hist/`.
3. the driver sums the histograms (buckets.py): per language, the byte-weighted percentile boundaries
   of `buckets` buckets, and the cut-off of `keep_top`; `refine` (keep-top only, when the cut-off's
   histogram bin holds more than the share needs) reads that bin's scores again to make it exact.
4. `parts`: every input part again, with `quality_score` and `quality_bucket` (0 worst .. buckets-1
   best; null for a language the model does not score), kept by the rule: the best `keep_top` of each
   language, or a score >= `threshold`, or all (label only, the default). Dropped documents are
   counted as `quality_not_in_top` / `quality_below_threshold` (with `keep_dropped`, written to
   `_dropped/` with their score and reason, as filter's); unscored ones are kept and counted
   (`unscored:<lang>`). A document without a language (lang null or empty: an ingest output, before
   filter's language ID) is not scored: the text preparation is per language (Chinese segmented)
   and the cut-offs are per language; it is kept, counted as `unscored:no_lang`, and the stage warns
   ("run filter first: it sets lang"). An input none of whose documents has a language is refused
   before anything runs.
   A row without its `id` or `text` (a foreign part's null) is in no histogram and is quarantined
   as `no_id` / `no_text`, with its part and row, as filter does.

`_quality.json` in the output records the rule, the boundaries, cut-offs and the shares kept; a kept
share far from `keep_top` (documents tied at the cut-off score) is a warning there, in `_stats.json`
(`warnings`) and in the printed summary.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.markup import escape

from crawlmill.files import as_path, atomic_path, atomic_write_json, open_binary, parquet_file, read_schema, read_table

from ..partfile import missing_value
from ..parts import DROPPED_DIR, PARQUET_OPTIONS, PartSink, input_parts, part_name, parts_of_dump
from ..runner import StageContext, Task
from ..stage import StageInputError, PartStage, PartTask, Stage, StageResult, run_parts
from . import buckets as hist
from .config import QualityConfig, check_threshold
from .model import DEFAULT_LABEL, DEFAULT_NORMALIZE, FROM_MODEL, MODEL_FILE, QualityModel, check_model_settings, model_digest, read_model_info, settings_file
from .train_stage import train_model_task, train_record

QUALITY_FIELDS = [pa.field("quality_score", pa.float32()), pa.field("quality_bucket", pa.int8())]
SCORE_SCHEMA = pa.schema([pa.field("quality_score", pa.float32())])
NO_LANG = "unscored:no_lang"  # the counter of documents without a language (kept, not scored)
FILTER_FIRST = "run filter first: it sets lang (crawlmill filter DIR --output DIR), then quality on its output"
MODEL_DIR = "_model"  # a model trained in the run ("_": not a part of the document folder)
SUMMARY = "_quality.json"  # "_": Parquet readers of the folder skip it


def load_model(model: str, positive_label: str | None, normalize: str | None) -> QualityModel:
    """A node step's setup: the model, once per node (settings None: the model's own)."""
    return QualityModel.load(model, positive_label or FROM_MODEL, normalize)


def score_part(model: QualityModel, index: int, source: str, work: str, batch_rows: int) -> dict[str, Any]:
    """In a forked process: one part's scores and its per-language histograms (counts, bytes)."""
    histograms: dict[str, np.ndarray] = {}
    documents = scored = 0
    path = as_path(work) / "scores" / f"{part_name(index)}.parquet"
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, SCORE_SCHEMA, **PARQUET_OPTIONS) as writer:
        for batch in parquet_file(source).iter_batches(batch_size=batch_rows, columns=["id", "text", "lang"]):
            texts, langs = batch.column("text").to_pylist(), batch.column("lang").to_pylist()
            # A row without its id or text (a foreign part's null; the parts step quarantines it)
            # is scored NaN, so that it is in no histogram and the scores stay one per input row.
            if batch.column("id").null_count or batch.column("text").null_count:
                whole = [k for k, row in enumerate(batch.select(["id", "text"]).to_pylist()) if missing_value(row) is None]
                texts = [text or "" for text in texts]
            else:  # every part a stage wrote: nothing to look at row by row
                whole = list(range(len(texts)))
            # Nor is a row without a language: a model for all languages ("*") would score it with
            # no language's text preparation (Chinese unsegmented) and pool it for one cut-off.
            scorable = [k for k in whole if langs[k]]
            scores = np.full(len(texts), np.nan, dtype=np.float32)
            if len(scorable) == len(texts):
                scores[:] = model.score(texts, langs)
            elif scorable:
                scores[scorable] = model.score([texts[k] for k in scorable], [langs[k] for k in scorable])
            writer.write_table(pa.table({"quality_score": scores}, schema=SCORE_SCHEMA))
            sizes = np.array([len(t.encode("utf-8", "surrogatepass")) for t in texts], dtype=np.int64)
            for lang in set(langs):
                rows = np.array([l == lang for l in langs])
                part_hist = hist.histogram(scores[rows], sizes[rows], model.info.max_score)
                histograms[lang or ""] = histograms.get(lang or "", 0) + part_hist
            documents += len(whole)  # the rows quarantined later are no documents
            scored += int((~np.isnan(scores)).sum())
    files = {}
    for lang, counts in sorted(histograms.items()):
        if counts[0].sum():
            target = as_path(work) / "hist" / f"{part_name(index)}-{lang or 'none'}.npy"
            with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                np.save(handle, counts)
            files[lang] = str(target)
    return {"documents": documents, "scored": scored, "histograms": files}


def refine_part(index: int, source: str, work: str, bins: dict[str, int], max_score: float, batch_rows: int) -> dict[str, str]:
    """One part's scores in each language's keep-top cut bin (buckets.within_bin), written to a file
    per language (its path returned): the driver reads them one at a time, so that what it holds
    does not grow with the parts (up to 65,536 sub-bins each, where scores pile up in one bin)."""
    scores = read_table(as_path(work) / "scores" / f"{part_name(index)}.parquet").column("quality_score").to_numpy(zero_copy_only=False)
    langs = [lang or "" for batch in parquet_file(source).iter_batches(batch_size=batch_rows, columns=["lang"]) for lang in batch.column("lang").to_pylist()]
    if len(langs) != len(scores):
        raise ValueError(f"{source}: {len(langs)} rows but {len(scores)} scores; the input changed after scoring")
    rows = np.array(langs, dtype=object)
    files = {}
    for lang, index_ in sorted(bins.items()):
        found = hist.within_bin(scores[rows == lang], index_, max_score)
        target = as_path(work) / "refine" / f"{part_name(index)}-{lang or 'none'}.npz"
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, sub=np.asarray(found["sub"], np.int64), count=np.asarray(found["count"], np.int64), min=np.asarray(found["min"], np.float64))
        files[lang] = str(target)
    return files


def read_within_bin(path: str) -> dict[str, np.ndarray]:
    with open_binary(path) as handle, np.load(handle, allow_pickle=False) as found:  # numbers only, never objects
        return {key: found[key] for key in ("sub", "count", "min")}


class QualityOutput(PartStage):
    """The last step: every input part with its scores and buckets, kept by the rule."""

    name = "quality"

    def __init__(self, config: QualityConfig, parts: list[str], work: str, cuts: dict[str, dict[str, Any]], schema: pa.Schema) -> None:
        super().__init__(config)
        self.parts, self.work, self.cuts, self.schema = parts, work, cuts, schema  # type: ignore[misc]
        self.keep_dropped = config.keep_dropped

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, path) for i, path in enumerate(self.parts)]

    def process(self, task: PartTask, sink: PartSink) -> None:
        scores = read_table(as_path(self.work) / "scores" / f"{part_name(task.index)}.parquet").column("quality_score").to_numpy(zero_copy_only=False)
        row = 0
        mode, threshold = self.config.mode, self.config.threshold
        for batch in parquet_file(task.source).iter_batches(batch_size=self.config.batch_rows):
            for doc in batch.to_pylist():
                score = float(scores[row])
                row += 1
                if sink.quarantine_incomplete(doc, row - 1):  # no id or text: scored NaN, neither kept nor dropped
                    continue
                lang = doc.get("lang") or ""
                cut = self.cuts.get(lang)
                if np.isnan(score) or cut is None:
                    sink.count(f"unscored:{lang}" if lang else NO_LANG)
                    sink.keep({**doc, "quality_score": None, "quality_bucket": None})
                    continue
                doc = {**doc, "quality_score": score, "quality_bucket": int(hist.bucket_of(np.array([score]), cut["boundaries"])[0])}
                if mode == "top" and score < cut["top_cutoff"]:
                    sink.drop("quality_not_in_top", doc)
                elif mode == "threshold" and score < threshold:
                    sink.drop("quality_below_threshold", doc)
                else:
                    sink.count(f"kept:{lang}")  # a document without a language is never scored
                    sink.keep(doc)
        if row != len(scores):
            raise ValueError(f"{task.source}: {row} rows but {len(scores)} scores; the input changed after scoring")


def _by_folder(parts: list[str]) -> dict[str, list[str]]:
    folders: dict[str, list[str]] = {}
    for part in parts:
        folders.setdefault(str(as_path(part).parent), []).append(part)
    return folders


def without_language(parts: list[str]) -> bool:
    """Whether no document of a folder has a language, read from its parts' footers (no data is
    read; the first part with a language ends the search): null or empty `lang` in every row group
    of every part. False when a footer has no statistics to tell."""
    seen = False
    for part in parts:
        meta = parquet_file(part).metadata
        if not meta.num_rows:
            continue
        paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
        if "lang" not in paths:
            return False  # refused by the column check, with its columns named
        column = paths.index("lang")
        for group in (meta.row_group(g) for g in range(meta.num_row_groups)):
            stats = group.column(column).statistics
            if group.num_rows and (stats is None or (stats.null_count != group.num_rows and not (stats.has_min_max and stats.max in ("", b"")))):
                return False
        seen = True
    return seen


def assumed_preparation(model: str | None, normalize: str | None) -> str | None:
    """A warning when a model file's text preparation is assumed: no quality_model.json beside it
    (a model.bin copied out of its folder) and no --normalize. Scores differ by up to a third
    between the two preparations, and nothing else would say which one was used."""
    if model is None or normalize is not None or as_path(model).is_dir() or settings_file(model) is not None:
        return None
    return (f"{model} has no {MODEL_FILE} beside it, so its text preparation is assumed: --normalize {DEFAULT_NORMALIZE} (DCLM's: line breaks "
            "become spaces). A model file of `crawlmill quality train` needs --normalize crawlmill (lower-cased, split into words, Chinese "
            "segmented with jieba), or score its folder; give --normalize to say which")  # fmt: skip


class QualityStage(Stage):
    name = "quality"
    resume_only_settings = ("no_lang_rule",)

    def __init__(self, config: QualityConfig) -> None:
        super().__init__(config)
        if config.model is None and config.train is None:
            raise ValueError("quality needs a model: --model MODEL_DIR (or a `train:` section in the run config)")
        if config.model is not None:
            info = check_model_settings(config.model, config.positive_label, config.normalize)
            if info.topics is not None:
                raise ValueError(f"{config.model}: a topic model (trained on topic labels) gives groups, not a quality score; it belongs in remix's classifier.model")
            if config.threshold is not None:
                check_threshold(config.threshold, info.max_score, config.model, graded=info.grades is not None)
        self.parts = [part for folder in config.inputs for part in input_parts(folder)]
        if config.dump is not None:
            self.parts = parts_of_dump(self.parts, config.dump)
            if not self.parts:
                raise StageInputError(f"no input part holds documents of {config.dump} ({', '.join(config.inputs)})")
        if self.parts and all(without_language(folder) for folder in _by_folder(self.parts).values()):
            # nothing would be scored: the output would be the input, kept whole whatever the rule
            raise StageInputError(f"{', '.join(_by_folder(self.parts))}: its documents have no language (lang null or empty): the quality stage scores "
                                  f"each language with its own text preparation and cut-off; {FILTER_FIRST}")  # fmt: skip
        self.schema = self._schema()
        self.assumed = assumed_preparation(config.model, config.normalize)

    def _schema(self) -> pa.Schema:
        from ..schema import DOCUMENT_SCHEMA, with_document_columns

        base = read_schema(self.parts[0]) if self.parts else DOCUMENT_SCHEMA
        base = with_document_columns(pa.schema([f for f in base if f.name not in ("quality_score", "quality_bucket")]))
        return pa.schema([*base, *QUALITY_FIELDS])

    def sources(self) -> list[str]:
        return self.parts

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        model: Any = {"train": train_record(c.train)} if c.model is None else model_digest(c.model)
        # None and the default name the same settings (a model folder's own are refused when they differ)
        # _dropped/ is output too: recorded only when asked for, so folders made without it stay done
        # no_lang_rule: documents without a language are left unscored (2026-12-07; before, pooled and scored):
        # resume-only, so a finished folder of before stays done and an unfinished one is not resumed into a mix.
        return {"model": model, "positive_label": c.positive_label or DEFAULT_LABEL, "normalize": c.normalize or DEFAULT_NORMALIZE, "mode": c.mode,
                "keep_top": c.keep_top, "threshold": c.threshold, "buckets": c.buckets, **({"keep_dropped": True} if c.keep_dropped else {}),
                "no_lang_rule": "unscored"}  # fmt: skip

    def run(self, ctx: StageContext) -> dict[str, Any]:
        c, work = self.config, str(ctx.work)
        warnings = [self.assumed] if self.assumed else []
        if self.assumed:  # before the scoring, not only in the summary at its end
            print(f"warning: {self.assumed}", file=sys.stderr)
        model = c.model
        if model is None:
            model = str(ctx.output / MODEL_DIR)
            # an input problem is said once, as the command's error, not also as a failed task
            ctx.step("train_model", train_model_task, [Task("model", (c.train, model))], title="quality train", said_by_stage=("StageInputError",))
            if read_model_info(model).topics is not None:
                raise StageInputError(f"quality.train.labels {c.train.labels}: topic labels train a topic model (remix's classifier), not a quality score; give grades")
            try:
                info = check_model_settings(model, c.positive_label, c.normalize)
                if c.threshold is not None:
                    check_threshold(c.threshold, info.max_score, "the model trained in the run", graded=info.grades is not None)
            except ValueError as exc:
                raise StageInputError(str(exc)) from None
        tasks = [Task(part_name(i), (i, path, work, c.batch_rows), label=path) for i, path in enumerate(self.parts)]
        scored = ctx.node_step("score", load_model, score_part, tasks, shared=(model, c.positive_label, c.normalize), title="quality score")
        max_score = read_model_info(model, c.positive_label, c.normalize).max_score
        cuts = self._cuts([scored[t.key] for t in tasks], max_score)
        self._refine(ctx, cuts, max_score)
        stats = run_parts(ctx, QualityOutput(c, self.parts, work, cuts, self.schema))
        kept = {lang: stats["counters"].get(f"kept:{lang}", 0) for lang in cuts}
        if no_lang := stats["counters"].get(NO_LANG, 0):
            warnings.append(f"{no_lang:,} of {stats['in']:,} documents have no language (lang null or empty): kept unscored, counted as {NO_LANG}; {FILTER_FIRST}")
        for lang, cut in cuts.items():
            cut["kept_share"] = round(kept[lang] / max(cut["documents"], 1), 4)
            # keep-top keeps at least its share (ceil): a tie at the cut-off may add one; more is worth saying
            if c.keep_top is not None and kept[lang] - math.ceil(c.keep_top * cut["documents"] - 1e-9) > max(1, 0.01 * cut["documents"]):
                cut["warning"] = (
                    f"{lang or 'none'}: kept {100 * cut['kept_share']:.1f}% of {cut['documents']:,} documents for keep_top {c.keep_top:g}: "
                    f"the documents kept beyond it score the same as the cut-off {cut['top_cutoff']:.9g} (to 2^-32 of the score range): no score orders them"
                )  # fmt: skip
                warnings.append(cut["warning"])
        summary = {"mode": c.mode, "keep_top": c.keep_top, "threshold": c.threshold, "model": str(model), "max_score": max_score, "languages": cuts}
        atomic_write_json(ctx.output / SUMMARY, {**summary, "warnings": warnings} if warnings else summary)
        return {**stats, "warnings": warnings} if warnings else stats

    def _refine(self, ctx: StageContext, cuts: dict[str, dict[str, Any]], max_score: float) -> None:
        """Exact keep-top cut-offs where a cut-off's bin holds more documents than the share needs:
        the `refine` step reads the scores of those bins again (buckets.py)."""
        needs = {lang: cut.pop("cut_bin") for lang, cut in cuts.items() if "cut_bin" in cut}
        todo = {lang: (index, needed) for lang, (index, needed, in_bin) in needs.items() if in_bin > np.ceil(needed - 1e-9)}
        if not todo:
            return
        bins = {lang: index for lang, (index, _) in todo.items()}
        work, rows = str(ctx.work), self.config.batch_rows
        tasks = [Task(part_name(i), (i, path, work, bins, max_score, rows), label=path) for i, path in enumerate(self.parts)]
        # "refine_files": an earlier version's "refine" markers hold the sub-bins themselves, not files
        found = ctx.step("refine_files", refine_part, tasks, title="quality keep-top cut-off")
        for lang, (_, needed) in todo.items():
            cuts[lang]["top_cutoff"] = hist.refined_cutoff((read_within_bin(found[t.key][lang]) for t in tasks), needed)

    def _cuts(self, results: list[dict[str, Any]], max_score: float) -> dict[str, dict[str, Any]]:
        """Per language: bucket boundaries and the keep-top cut-off, from the summed histograms."""
        totals: dict[str, np.ndarray] = {}
        for result in results:
            for lang, path in result["histograms"].items():
                with open_binary(path) as handle:
                    totals[lang] = totals.get(lang, 0) + np.load(handle, allow_pickle=False)  # numbers only, never objects
        cuts = {}
        for lang, counts in sorted(totals.items()):
            cut = {"documents": int(counts[0].sum()), "bytes": int(counts[1].sum()), "boundaries": hist.boundaries(counts[1], self.config.buckets, max_score)}
            if self.config.keep_top is not None:
                cut["top_cutoff"] = hist.top_cutoff(counts[0], self.config.keep_top, max_score)
                index, needed = hist.cut_bin(counts[0], self.config.keep_top)
                cut["cut_bin"] = (index, needed, int(counts[0][index]))  # for _refine, not recorded
            cuts[lang] = cut
        return cuts

    def report(self, result: StageResult) -> list[str]:
        lines = super().report(result)
        summary = json.loads((result.output_dir / SUMMARY).read_text())
        for lang, cut in summary["languages"].items():
            rule = f", cut-off {cut['top_cutoff']:.6g}" if "top_cutoff" in cut else ""
            lines.append(f"  {lang or 'none'}: {cut['documents']:,} scored, {100 * cut['kept_share']:.1f}% kept{rule}")
        if self.config.keep_dropped and result.stats and sum(result.stats.get("dropped", {}).values()):
            lines.append(f"  dropped documents, with their score and reason: {result.output_dir / DROPPED_DIR}")
        # a folder written before `warnings` was recorded has its keep-top warnings in `languages` only
        warnings = summary.get("warnings", [cut["warning"] for cut in summary["languages"].values() if "warning" in cut])
        lines += [f"[yellow]warning:[/yellow] {escape(warning)}" for warning in warnings]
        return lines
