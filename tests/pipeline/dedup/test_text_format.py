"""The text format through the real stage (Ray): a new run keeps combining marks and shingles Thai
as characters; a run against an index written before formats were recorded keeps format 1, so its
documents compare with the index's stored band keys."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.parts import commit_folder
from crawlmill.pipeline.runner import run_stage
from tests.pipeline.dedup.test_shingles import THAI_SEGMENTED

# Two Hindi texts that differ only in their postpositions का / की / के (vowel signs): different
# sentences, which format 1 made one text (every mark a space).
HINDI = (
    "भारत का इतिहास बहुत पुराना है और इस देश की संस्कृति में अनेक भाषाओं का योगदान रहा है। "
    "गाँव के लोग खेती करते हैं और शहर के बाज़ार में अपनी फसल बेचते हैं। नदी के किनारे एक पुराना मंदिर है "
    "जिसकी दीवारों पर राजाओं की कहानियाँ लिखी हुई हैं और हर साल वहाँ मेले का आयोजन होता है।"
)
HINDI_OTHER = HINDI.replace("का", "\0").replace("की", "का").replace("के", "की").replace("\0", "के")


def thai_pair() -> tuple[str, str]:
    """A real Thai text and a near copy: 4 of its 205 words replaced (Jaccard 0.85 in 12-grams)."""
    tokens = [t for line in THAI_SEGMENTED for t in (*line.split("|"), " ")]
    thai_words = [i for i, t in enumerate(tokens) if "\u0e00" <= t[0] <= "\u0e7f"]
    edited = list(tokens)
    for k in range(1, 5):
        edited[thai_words[k * len(thai_words) // 5]] = "ประเทศ"
    return "".join(tokens), "".join(edited)


def write_input(folder):
    thai, thai_copy = thai_pair()
    texts = {"hi-1": (HINDI, "hi"), "hi-2": (HINDI_OTHER, "hi"), "th-1": (thai, "th"), "th-2": (thai_copy, "th")}
    folder.mkdir(parents=True)
    table = pa.table({
        "id": list(texts), "text": [t for t, _ in texts.values()], "url": [f"https://example.org/{k}" for k in texts],
        "dump": ["CC-MAIN-2024-10"] * len(texts), "lang": [lang for _, lang in texts.values()],
    })  # fmt: skip
    pq.write_table(table, folder / "part-00000.parquet")
    commit_folder(folder)
    return folder


def removed(out):
    return {d["id"]: d["reason"] for d in pq.read_table(out / "_duplicates").to_pylist()}


def test_marks_and_thai_in_a_new_run_and_against_an_old_index(ray_local, tmp_path):
    assert HINDI_OTHER != HINDI
    source = write_input(tmp_path / "input")
    out = tmp_path / "new"
    assert run_stage(DedupStage(DedupConfig(inputs=[str(source)], partitions=2)), out, progress=False).ok
    # The Hindi texts differ; of the Thai pair one goes (the longer is kept).
    assert removed(out) == {"th-1": "near_duplicate"}
    assert json.loads((out / "_report/report.json").read_text())["text_format"] == 2

    # An index from before formats were recorded (its one earlier run had no kept parts): this run
    # keeps format 1, as the index's stored band keys were made, and the manifest says so now.
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    (index_dir / "manifest.json").write_text(json.dumps({"runs": [{"output": str(tmp_path / "old"), "parts": []}]}))
    legacy = tmp_path / "legacy"
    stage = DedupStage(DedupConfig(inputs=[str(source)], partitions=2, index=str(index_dir)))
    result = run_stage(stage, legacy, progress=False)
    assert result.ok and any(line.startswith("text format 1: the dedup index was begun by a crawlmill before 2026-12") for line in stage.report(result))
    assert removed(legacy) == {"hi-2": "exact_duplicate"}  # format 1: one text; the Thai copy too far in its pieces
    assert json.loads((index_dir / "manifest.json").read_text())["text_format"] == 1
