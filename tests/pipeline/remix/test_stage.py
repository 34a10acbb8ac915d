"""The remix stage on real pipeline output (the sample corpus, both dumps): labels, every document
in exactly one group, counts, a folder any Parquet reader reads whole, byte-identical reruns and
resume (of an earlier version's folder too), the error naming the groups over the cap,
--allow-shortfall, token counts equal to pack's, and the classifier path."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.output_folder import check_output_folder
from crawlmill.pipeline.parts import input_parts, marker_path
from crawlmill.pipeline.remix.layout import LEGACY_MIXTURE_FILE, LEGACY_MIXTURE_PLOT, MIXTURE_FILE, MIXTURE_PLOT, REMIX_SCHEMA, part_group
from crawlmill.pipeline.remix.mixture import MixtureError
from crawlmill.pipeline.remix.stage import LabelSettings, RemixStage, label_part
from crawlmill.pipeline.runner import run_stage, run_task
from crawlmill.pipeline.urls import domain_of
from tests.pipeline.remix.conftest import folder_bytes, read_json, remix_config, run_pack, run_remix

# Sites of samples/pages/sites.yaml and the group the demo's rules give them.
EXPECTED = {
    "docs.example-dev.io": "stem", "www.example-jishu.cn": "stem", "www.example-science.org": "stem", "kepu.example.cn": "stem",
    "www.example-garden.org": "lifestyle", "www.example-kitchen.com": "lifestyle", "www.example-chufang.cn": "lifestyle",
    "www.example-yuanyi.cn": "lifestyle", "m.example-yuanyi.cn": "lifestyle", "www.example-history.org": "culture", "www.example-wenshi.cn": "culture",
    "www.example-travel.net": "culture", "www.example-lvxing.cn": "culture",
}  # fmt: skip


def rows(folder):
    return [r for part in input_parts(folder) for r in pq.read_table(part).to_pylist()]


@pytest.fixture(scope="module")
def remixed(remix_input, tmp_path_factory):
    output = tmp_path_factory.mktemp("remix") / "remix"
    result = run_remix([remix_input], output)
    assert result.ok, result.failures
    return output


def test_every_document_is_kept_in_exactly_one_group_with_its_domain(remix_input, remixed):
    before = rows(remix_input)
    after = rows(remixed)
    assert sorted(r["id"] for r in after) == sorted(r["id"] for r in before) and len(after) == len(before) == 38
    by_id = {r["id"]: r for r in before}
    for row in after:
        host = row["url"].split("/")[2]
        if host == "www.example-reviews.com":  # the path rule: kitchen reviews only
            expected = "lifestyle" if "/kitchen/" in row["url"] else "other"
        else:
            expected = EXPECTED.get(host, "other")
        assert row["group"] == expected, row["url"]
        assert row["domain"] == domain_of(row["url"])
        assert {k: v for k, v in row.items() if k not in ("domain", "group")} == by_id[row["id"]]  # nothing else changed
    for part in input_parts(remixed):  # each part holds one group, named by it, in the remix schema
        table = pq.read_table(part)
        assert table.schema == REMIX_SCHEMA and set(table.column("group").to_pylist()) == {part_group(part)}
    stats = read_json(remixed / "_stats.json")
    assert stats["in"] == stats["kept"] == 38 and stats["dropped"] == {} and stats["quarantined"] == 0
    groups = {g: n for g, n in ((k.removeprefix("group:"), v) for k, v in stats["counters"].items() if k.startswith("group:"))}
    assert sum(groups.values()) == 38 and set(groups) == {"culture", "lifestyle", "other", "stem"}
    assert stats["counters"]["labelled_by:rule"] + stats["counters"]["labelled_by:default"] == 38


def test_mixture_json_counts_the_groups_and_plans_unimax(remixed):
    mixture = read_json(remixed / "_mixture.json")
    after = rows(remixed)
    assert mixture["method"] == "unimax" and mixture["unit"] == "characters" and mixture["documents"] == 38
    for name, group in mixture["groups"].items():
        docs = [r for r in after if r["group"] == name]
        assert group["documents"] == len(docs) and group["characters"] == sum(len(r["text"]) for r in docs)
        assert group["parts"] == len([p for p in input_parts(remixed) if part_group(p) == name])
        assert group["epochs"] == pytest.approx(group["share"] * mixture["budget"] / group["characters"])
        assert group["epochs"] <= 4
    assert mixture["size"] == mixture["budget"] == sum(len(r["text"]) for r in after)
    assert sum(g["share"] for g in mixture["groups"].values()) == pytest.approx(1)
    assert (remixed / "_mixture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_finished_folder_is_read_whole_by_any_parquet_reader(remixed):
    """The mixture's files are `_` names, which Parquet readers skip: the folder is a dataset of its
    parts (a `mixture.json` beside them made pyarrow fail on it as a Parquet file)."""
    table = pq.read_table(remixed)
    assert table.num_rows == read_json(remixed / "_stats.json")["kept"] == 38
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in rows(remixed))
    assert [p.name for p in remixed.iterdir() if p.name.endswith((".json", ".png")) and not p.name.startswith("_")] == []


def test_two_runs_are_byte_identical_and_a_killed_run_resumes(remix_input, remixed, tmp_path):
    again = tmp_path / "again"
    assert run_remix([remix_input], again).ok
    assert folder_bytes(again) == folder_bytes(remixed)
    rerun = run_remix([remix_input], again)
    assert rerun.already_done and folder_bytes(again) == folder_bytes(remixed)

    # A run killed after two of the four parts, with a half-written file of the third.
    killed = tmp_path / "killed"
    stage = RemixStage(remix_config([remix_input]))
    for i in range(2):  # what the runner's task does: the part's files, then its marker
        run_task(label_part, (LabelSettings(stage.config, None),), str(marker_path(killed, i)), (i, stage.parts[i], str(killed)))
    (killed / ".tmp-0123-part-other-00002.parquet").write_bytes(b"half")
    resumed = run_remix([remix_input], killed)
    assert resumed.ok and resumed.finished_before == 2
    assert folder_bytes(killed) == folder_bytes(remixed)
    assert "_tasks.json" in folder_bytes(killed)  # the whole folder, settings record included


def test_a_folder_of_the_earlier_layout_is_reported_resumed_and_overwritten(remix_input, remixed, tmp_path):
    """A folder an earlier version wrote (`mixture.json`, `mixture.png`): finished, a rerun does
    nothing and reports its mixture; --overwrite may delete it (its names are crawlmill's); killed
    after the mixture was written, a rerun writes the new names and removes the old ones."""
    old = tmp_path / "old"
    shutil.copytree(remixed, old)
    (old / MIXTURE_FILE).rename(old / LEGACY_MIXTURE_FILE)
    (old / MIXTURE_PLOT).rename(old / LEGACY_MIXTURE_PLOT)
    killed = tmp_path / "killed"
    shutil.copytree(old, killed)
    (killed / "_SUCCESS").unlink()

    stage = RemixStage(remix_config([remix_input]))
    done = run_stage(stage, old, progress=False)
    assert done.already_done and any(line.endswith(f"→ {old / LEGACY_MIXTURE_FILE}") for line in stage.report(done))
    check_output_folder(old, overwrite=True)
    assert run_stage(RemixStage(remix_config([remix_input])), old, progress=False, overwrite=True).ok
    assert folder_bytes(old) == folder_bytes(remixed)

    resumed = run_remix([remix_input], killed)
    assert resumed.ok and resumed.finished_before == 4 and not resumed.already_done
    assert folder_bytes(killed) == folder_bytes(remixed)  # _mixture.json and _mixture.png, and no mixture.json left
    assert pq.read_table(killed).num_rows == 38


def test_a_target_over_the_cap_is_an_error_naming_the_groups_or_a_reported_shortfall(remix_input, tmp_path):
    weights = {"stem": 1, "lifestyle": 1, "culture": 1, "other": 7}
    with pytest.raises(MixtureError, match=r"max_epochs 1.5: other needs [0-9.]+ epochs") as error:
        run_remix([remix_input], tmp_path / "over", mixture={"weights": weights, "max_epochs": 1.5})
    assert "stem" not in str(error.value) and not (tmp_path / "over").exists()  # nothing half-made is left

    cli = CliRunner().invoke(app, ["remix", str(remix_input), "--output", str(tmp_path / "cli"), "--config", str(write_rules(tmp_path)),
                                   "--weights", "stem=1,lifestyle=1,culture=1,other=7", "--max-epochs", "1.5", "--no-progress"])  # fmt: skip
    assert cli.exit_code == 2 and "error: the mixture cannot be met within max_epochs 1.5: other needs" in cli.stderr

    short = CliRunner().invoke(app, ["remix", str(remix_input), "--output", str(tmp_path / "short"), "--config", str(write_rules(tmp_path)),
                                     "--weights", "stem=1,lifestyle=1,culture=1,other=7", "--max-epochs", "1.5", "--allow-shortfall", "--no-progress"])  # fmt: skip
    assert short.exit_code == 0, short.output
    mixture = read_json(tmp_path / "short/_mixture.json")
    other = mixture["groups"]["other"]
    assert mixture["shortfall"] == ["other"] and other["shortfall"] and other["at_cap"] and other["epochs"] == pytest.approx(1.5)
    assert other["share"] < other["target"] == pytest.approx(0.7) and other["target_epochs"] > 1.5
    assert sum(g["share"] for g in mixture["groups"].values()) == pytest.approx(1)
    assert "other: " in short.stdout and "short of its target" in short.stdout


def write_rules(tmp_path):
    from tests.pipeline.remix.conftest import DEMO_RULES

    path = tmp_path / "remix.yaml"
    path.write_text(json.dumps({"rules": DEMO_RULES}))  # JSON is YAML
    return path


def test_token_counts_are_what_pack_packs(remix_input, tokenizer_dir, tmp_path):
    result = run_remix([remix_input], tmp_path / "remix", mixture={"tokenizer": str(tokenizer_dir), "temperature": 0.5})
    assert result.ok
    mixture = read_json(tmp_path / "remix/_mixture.json")
    assert mixture["unit"] == "tokens" and mixture["method"] == "temperature"
    assert run_pack(tmp_path / "remix", tmp_path / "shards", tokenizer_dir).ok
    manifest = read_json(tmp_path / "shards/manifest.json")
    packed = manifest["blend"]["mixture"]["groups"]
    for name, group in mixture["groups"].items():
        assert packed[name]["tokens"] == group["tokens"] and packed[name]["documents"] == group["documents"]
        assert packed[name]["epochs"] == pytest.approx(group["epochs"])  # same unit: the same epochs
    shown = CliRunner().invoke(app, ["shards", "inspect", str(tmp_path / "shards")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "the blend: remix mixture (temperature)" in shown.stdout and "culture-00000" in shown.stdout
    as_json = json.loads(CliRunner().invoke(app, ["shards", "inspect", str(tmp_path / "shards"), "--json"]).stdout)
    assert as_json["mixture"]["groups"] == packed and as_json["blend"]["method"] == "mixture"


def test_documents_no_rule_places_go_by_the_classifier(remix_input, lid_model_path, tmp_path):
    """The classifier path with a real fastText model: lid.176 as a two-label "topic" model (Chinese
    pages become `zh`, English ones `en`); rules still come first."""
    classifier = {"model": str(lid_model_path), "labels": {"__label__zh": "zh", "en": "en"}, "min_score": 0.5}
    result = run_remix([remix_input], tmp_path / "out", rules=["kepu.*=stem"], classifier=classifier)
    assert result.ok
    after = rows(tmp_path / "out")
    for row in after:
        expected = "stem" if row["url"].startswith("https://kepu.") else row["lang"]  # filter kept en and zh only
        assert row["group"] == expected, row["url"]
    counters = read_json(tmp_path / "out/_stats.json")["counters"]
    kepu = sum(row["url"].startswith("https://kepu.") for row in after)
    assert kepu >= 2 and counters["labelled_by:rule"] == kepu and counters["labelled_by:classifier"] == 38 - kepu
    with pytest.raises(ValueError, match="has no label.s. __label__xx"):
        run_remix([remix_input], tmp_path / "bad", rules=[], classifier={**classifier, "labels": {"xx": "other"}})


def test_a_topic_model_from_crawlmill_quality_train_places_documents(remix_input, remixed, tmp_path):
    """The classifier path with a topic model trained by `crawlmill quality train --labels` (one
    class per group, Chinese segmented as the quality stage does): trained on the groups the URL
    rules gave the sample pages, it puts the pages back in those groups with no rules at all."""
    labelled = rows(remixed)
    (tmp_path / "topics.jsonl").write_text("".join(json.dumps({"text": r["text"], "lang": r["lang"], "label": r["group"]}, ensure_ascii=False) + "\n" for r in labelled))
    # 38 long pages: the mean of ~800 word vectors barely moves at DCLM's lr 0.1, hence lr 1 and 100 epochs
    trained = CliRunner().invoke(app, ["quality", "train", "--labels", str(tmp_path / "topics.jsonl"), "--heldout", "0.1", "--epoch", "100", "--lr", "1.0", "--bucket", "200000", "--output", str(tmp_path / "topics")])
    assert trained.exit_code == 0, trained.output
    groups = sorted({r["group"] for r in labelled})
    classifier = {"model": str(tmp_path / "topics"), "labels": {g: g for g in groups}, "min_score": 0.3}
    assert run_remix([remix_input], tmp_path / "out", rules=[], classifier=classifier).ok
    before = {(r["url"], r["dump"]): r["group"] for r in labelled}
    after = rows(tmp_path / "out")
    agree = sum(before[r["url"], r["dump"]] == r["group"] for r in after)
    counters = read_json(tmp_path / "out/_stats.json")["counters"]
    assert len(after) == len(labelled) and agree >= 0.9 * len(after), (agree, counters)
    assert counters["labelled_by:classifier"] + counters.get("labelled_by:default", 0) == len(after) and "labelled_by:rule" not in counters


def test_pack_takes_a_remix_folder_alone(remixed, remix_input, tokenizer_dir, tmp_path):
    from crawlmill.pipeline.pack.config import PackConfig
    from crawlmill.pipeline.pack.stage import PackStage

    with pytest.raises(ValueError, match="is remix output .* pack it alone"):
        PackStage(PackConfig(inputs=[str(remixed), str(remix_input)], tokenizer=str(tokenizer_dir)))
