"""A hand-made folder of edge-case documents for the pack tests (tests/pipeline/pack): an empty text,
digits and Chinese without spaces, the DeepSeek end-of-sentence token written literally, a text
longer than a test shard, a lone space, and a row with no url, dump or lang. Two Parquet parts in
the pipeline's document schema, their markers and _SUCCESS, as a stage writes them. A library module, no command line::

    from pathlib import Path
    from crawlmill.corpora.edge_documents import write_edge_folder
    write_edge_folder(Path("/tmp/edge"))  # part-00000.parquet (3 rows), part-00001.parquet (3 rows)
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.pipeline.parts import commit_folder
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id

EOS = "<｜end▁of▁sentence｜>"  # the released DeepSeek LLM tokenizer's end-of-sentence token

EDGE_TEXTS = [
    "",  # encodes to nothing: dropped as empty_tokens
    "Numbers 1234567890 split into digits; 中文没有空格，也要正确分词。\n\n  indented\tline",
    f"A document that mentions the end token {EOS} literally, and ☃ émoji 🚀.",
    "word " * 7000,  # longer than a pack test shard (tests/pipeline/pack SHARD_TOKENS): a shard of its own
    " ",
    "最后一个文档。",
]


def write_edge_folder(folder: Path) -> Path:
    """EDGE_TEXTS as folder/part-00000.parquet (first three) and part-00001.parquet (the rest); returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": document_id(f"edge-{i}"),
            "text": text,
            "url": None if i == 4 else f"https://sub{i}.edge.example.com.cn/page/{i}",
            "dump": None if i == 4 else "CC-MAIN-2025-33",
            "lang": None if i == 4 else ("zh" if i in (1, 5) else "en"),
            "warc_record_id": f"<urn:uuid:edge-{i}>",
            "warc_file": "crawl-data/CC-MAIN-2025-33/segments/x/warc/edge.warc.gz",
            "warc_offset": 1000 * i,
        }
        for i, text in enumerate(EDGE_TEXTS)
    ]
    pq.write_table(pa.Table.from_pylist(rows[:3], schema=DOCUMENT_SCHEMA), folder / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[3:], schema=DOCUMENT_SCHEMA), folder / "part-00001.parquet")
    commit_folder(folder)  # markers and _SUCCESS: readers take the parts markers name
    return folder
