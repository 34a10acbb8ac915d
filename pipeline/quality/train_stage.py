"""`crawlmill quality train` as a stage (its model folder is a stage folder: `_stats.json`, resumed,
refused when made with other settings), and the training task the quality stage runs too.

    crawlmill quality train --positive en=ref.txt --negative en=web.txt --output models/quality
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from ..runner import StageContext, Task
from ..stage import Stage, StageResult
from .config import DEFAULT_MAX_DOCUMENTS, ClassifierTrainConfig


def train_model_task(config: Any, output: str) -> dict[str, Any]:
    from .train import train_classifier

    return train_classifier(config, output)


def train_record(train: ClassifierTrainConfig) -> dict[str, Any]:
    """The training settings as the fingerprint records them. max_documents' default (200,000, a
    uniform sample per class; 2026-12-07) is recorded as null, as the default of before (every
    document) was: the model is trained once, before any part is scored, so a folder of before holds
    one model's scores either way; every document, now asked for, is `all`."""
    record = json.loads(json.dumps(train.__dict__))
    if train.max_documents is None:
        record["max_documents"] = "all"
    elif train.max_documents == DEFAULT_MAX_DOCUMENTS:
        record["max_documents"] = None
    return record


class QualityTrainStage(Stage):
    """`crawlmill quality train`: the classifier, as one Ray task, into a model folder."""

    name = "quality_train"

    def sources(self) -> list[str]:
        c = self.config
        return [*c.positive, *c.negative, *([c.labels] if c.labels else [])]

    def fingerprint(self) -> dict[str, Any]:
        settings = train_record(self.config)  # max_documents' default recorded as before: a model folder of before stays done
        for key in ("positive", "negative", "labels"):
            settings.pop(key)
        return settings

    def run(self, ctx: StageContext) -> dict[str, Any]:
        # an input problem is said once, as the command's error (exit 2), not also as a failed task
        report = ctx.step("train", train_model_task, [Task("model", (self.config, str(ctx.output)))], title="quality train", said_by_stage=("StageInputError",))["model"]
        documents = report["documents"]
        stats = {
            "stage": self.name, "parts": 1, "in": documents["read"], "kept": documents["train"] + documents["heldout"],
            "dropped": report["dropped"], "quarantined": 0, "counters": {"train": documents["train"], "heldout": documents["heldout"]},
        }  # fmt: skip
        return {**stats, "warnings": report["warnings"]} if report.get("warnings") else stats

    def report(self, result: StageResult) -> list[str]:
        report = json.loads((result.output_dir / "train_report.json").read_text())
        models = list(report["models"].values())
        files = f"model{'s' if len(models) > 1 else ''} {', '.join(models)}"
        # a finished folder is not trained again (as other stages' "already finished and were skipped")
        done = "[green]quality model already trained[/green] (nothing retrained; --overwrite trains again)" if result.already_done else "[green]quality model trained[/green]"
        lines = [f"{done} → {result.output_dir}: {report['documents']['train']:,} training documents; {files}"]
        for lang, figures in report["heldout"].items():
            if not figures["documents"]:
                lines.append(f"  {lang} held out (0 documents): no figures")
                continue
            if "accuracy" in figures:  # a topic model
                lines.append(f"  {lang} held out ({figures['documents']:,} documents): accuracy {figures['accuracy']:.4f}, macro F1 {figures['macro_f1']:.4f}")
                continue
            auc = "n/a" if figures["roc_auc"] is None else f"{figures['roc_auc']:.4f}"
            lines.append(f"  {lang} held out ({figures['documents']:,} documents): ROC-AUC {auc}, F1 {figures['f1']:.4f}, precision of the top 10% {figures['precision_top_10pct']:.4f}")
        return lines + [f"[yellow]warning:[/yellow] {escape(warning)}" for warning in report.get("warnings", [])]
