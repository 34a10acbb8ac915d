"""The README's demo: `crawlmill run configs/demo.yaml` on the sample corpus shipped in the repo,
byte for byte the output it gave before the pipeline moved onto one runner (demo_checksums.json)."""

import fnmatch
import hashlib
import json
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from tests.conftest import REPO
from tests.pipeline.demo_stages import demo_config


def test_demo_config_runs_end_to_end(ray_local, tmp_path):
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo_config(tmp_path / "demo-output", left_out=())))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "demo.yaml"), "--no-progress"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "demo-output/ingest/_stats.json").read_text())
    assert stats["parts"] == 4 and stats["kept"] > 40 and stats["quarantined"] == 0
    assert (tmp_path / "demo-output/ingest/_SUCCESS").exists()
    filtered = json.loads((tmp_path / "demo-output/filter/_stats.json").read_text())
    assert filtered["in"] == stats["kept"] and 30 < filtered["kept"] < stats["kept"]
    assert filtered["counters"]["lang_kept:zh"] > 10 and filtered["counters"]["lang_kept:en"] > 10
    deduped = json.loads((tmp_path / "demo-output/dedup/_stats.json").read_text())
    assert deduped["in"] == filtered["kept"] and deduped["dropped"]["exact_duplicate"] >= 6  # republished pages
    report = json.loads((tmp_path / "demo-output/dedup/_report/report.json").read_text())
    assert [r["dump"] for r in report["within_single_dump"]] == ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
    quality = json.loads((tmp_path / "demo-output/quality/_stats.json").read_text())
    assert quality["in"] == quality["kept"] == deduped["kept"]  # label only: scored and bucketed, none dropped
    assert_demo_classifier_ranks_clean_pages_above_junk(tmp_path / "demo-output")
    remixed = json.loads((tmp_path / "demo-output/remix/_stats.json").read_text())
    assert remixed["in"] == remixed["kept"] == deduped["kept"] and remixed["counters"]["groups"] == 4
    mixture = json.loads((tmp_path / "demo-output/remix/_mixture.json").read_text())
    assert mixture["method"] == "unimax" and all(g["share"] == 0.25 and g["epochs"] <= 4 for g in mixture["groups"].values())
    tokenizer = json.loads((tmp_path / "demo-output/tokenizer/train_report.json").read_text())
    assert tokenizer["vocab"] == {"learned": 1000, "specials": 15, "total": 1015, "padded_vocab_size": 1024}
    trained = tokenizer["corpus_trained"]["bytes"]
    assert set(trained) == {"en", "zh"} and 0.6 < trained["en"] / trained["zh"] < 1.6  # ~50 pages: whole pages are drawn
    manifest = json.loads((tmp_path / "demo-output/shards/manifest.json").read_text())
    assert manifest["documents"] == deduped["kept"] and manifest["tokenizer"]["padded_vocab_size"] == 1024 and manifest["tokens"] > 10_000
    assert manifest["blend"]["method"] == "mixture" and manifest["blend"]["prefixes"] == ["culture-00000", "lifestyle-00000", "other-00000", "stem-00000"]
    assert demo_checksums(tmp_path / "demo-output") == json.loads((Path(__file__).parent / "demo_checksums.json").read_text())
    # The run ends with training on the packed shards: validation loss goes down.
    log = [json.loads(line) for line in (tmp_path / "demo-output/train/log.jsonl").read_text().splitlines()]
    valid = [r for r in log if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [20, 40, 60] and valid[-1]["loss"] < valid[0]["loss"] and valid[-1]["bpb"] < valid[0]["bpb"]
    assert "train done" in result.output
    assert_every_folder_may_be_overwritten(tmp_path / "demo-output")
    # A second run resumes: nothing to do, same stats.
    again = CliRunner().invoke(app, ["run", str(tmp_path / "demo.yaml"), "--no-progress"])
    assert again.exit_code == 0 and "4 part(s) were already finished" in again.output
    assert "tokenizer already trained" in again.output and "train already done" in again.output
    assert json.loads((tmp_path / "demo-output/dedup/_stats.json").read_text()) == deduped
    shutil.rmtree(tmp_path / "demo-output")


def assert_every_folder_may_be_overwritten(root: Path) -> None:
    """Every stage folder of the run (and the run's training folder) holds only names crawlmill
    writes (output_folder.OWN_NAMES): --overwrite may delete each. So does the quality model the
    run trained (a `crawlmill quality train` folder, when trained alone)."""
    from crawlmill.pipeline.output_folder import OWN_NAMES, RUN_MARKERS, STAGE_MARKERS, check_output_folder

    folders = sorted({path.parent for path in root.rglob("_tasks.json")})
    assert {folder.name for folder in folders} >= {"ingest", "filter", "dedup", "quality", "remix", "tokenizer", "shards", "train"}, folders
    for folder in folders:
        check_output_folder(folder, overwrite=True, markers=STAGE_MARKERS + RUN_MARKERS)
    model = [p.name for p in (root / "quality/_model").iterdir()]
    assert model and not [name for name in model if not any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN_NAMES)], model


def assert_demo_classifier_ranks_clean_pages_above_junk(root: Path) -> None:
    """The classifier the demo trained (on samples/quality, which shares no text with the sample
    pages) scores every page ingest extracted: each language's clean pages all above its junk pages
    (samples/pages/*.yaml say which is which; the filter drops the junk before the quality stage, so
    the extracted pages are scored here)."""
    import pyarrow.parquet as pq

    from crawlmill.pipeline.quality.model import QualityModel

    known = {page["url"]: page for path in sorted((REPO / "samples/pages").glob("pages_*.yaml")) for page in yaml.safe_load(path.read_text())["pages"]}
    pages = [(row["text"], known[row["url"]]) for row in pq.read_table(root / "ingest").to_pylist() if row["url"] in known and known[row["url"]]["kind"] in ("clean", "junk")]
    model = QualityModel.load(root / "quality/_model")
    scores = model.score([text for text, _ in pages], [page["lang"] for _, page in pages])
    for lang in ("en", "zh"):
        clean = [s for (_, page), s in zip(pages, scores) if page["lang"] == lang and page["kind"] == "clean"]
        junk = [s for (_, page), s in zip(pages, scores) if page["lang"] == lang and page["kind"] == "junk"]
        assert len(clean) >= 10 and len(junk) >= 3 and min(clean) > max(junk), (lang, sorted(clean), sorted(junk))
    scored = pq.read_table(root / "quality", columns=["quality_score", "quality_bucket"]).to_pylist()
    assert all(0 <= r["quality_score"] <= 1 and 0 <= r["quality_bucket"] < 20 for r in scored)


def demo_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file of the reference (demo_checksums.json, recorded with the code before the
    one-runner refactor, commit 30017cd): every stage's parts, quarantine, duplicates, report and
    stats, the tokenizer files, the shards; the manifest with its paths made relative. Files that
    hold absolute paths (markers, _tasks.json, train_report.json) are left out. Re-recorded since:
    shard-00000.docs.parquet, domains.parquet and manifest.json when pack began counting text bytes
    (each is the old file plus the `bytes` column or keys; .bin and .idx did not change); and when
    the remix stage came between dedup and the tokenizer: remix's files were added, the tokenizer
    (tokenizer.json, crawlmill.json) changed because it reads remix's output, whose parts come
    group by group (the same documents in another order, so another sample of them), and the shards
    are one prefix per group (culture-00000, ...) with the mixture as the manifest's blend; and when
    the quality stage came before remix: its parts, stats and trained model were added, and remix's
    parts changed (they carry quality_score and quality_bucket); the tokenizer and the shards did not;
    and when the tokenizer's `--mix` sample became exact (tokenizer/sampling.py: 24,542 bytes of
    each language, documents cut to the byte, instead of whole pages drawn at random), which changed
    tokenizer.json, crawlmill.json and every shards/ file; ingest to remix did not change; and when
    the sample's keys came from each file's input and path within it instead of its base name
    (the same files changed again, shards/_stats.json too); and when documents gained the
    `corpus_fields` column (null in the sample: every part of ingest to remix changed) and dedup's
    report its `text_format`; nothing the tokenizer and pack write did. Renamed
    since (same bytes): remix's mixture.json and mixture.png, now _mixture.json and _mixture.png; dedup's
    duplicates/, now _duplicates/."""
    reference = json.loads((Path(__file__).parent / "demo_checksums.json").read_text())
    found = {}
    for name in reference:
        if name.startswith("shards/manifest.json"):
            manifest = json.loads((root / "shards/manifest.json").read_text())
            manifest["inputs"] = [str(Path(p).relative_to(root)) for p in manifest["inputs"]]
            manifest["tokenizer"]["path"] = str(Path(manifest["tokenizer"]["path"]).relative_to(root))
            mixture = manifest["blend"].get("mixture")
            if mixture:
                mixture["remix"] = str(Path(mixture["remix"]).relative_to(root))
            data = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
        else:
            data = (root / name).read_bytes() if (root / name).is_file() else b"(missing)"
        found[name] = hashlib.sha256(data).hexdigest()
    return found
