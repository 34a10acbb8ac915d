"""Per-domain counts (documents, tokens, bytes) summed by runs of parts, then merged partition by partition (bounded
memory), give exactly the sums over all parts, the exact top domains, and every domain once in domains.parquet; each
part's file is read once, whole, and a partition reads a file per run, not per part."""

import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from crawlmill.pipeline.dedup import shuffle
from crawlmill.pipeline.pack.domains import (
    DOMAINS_FILE,
    RUN_PARTS,
    combine_run,
    finish_domains,
    merge_partition,
    partition_of,
    partitions_for,
    run_files,
    write_part_domains,
)


def combined(work, parts: int, partitions: int) -> None:
    """The runs' step, as the stage runs it: one combine task per run of RUN_PARTS parts."""
    for run, files in enumerate(run_files(work, parts)):
        combine_run(run, files, str(work), partitions)


def test_partitions_merge_to_the_exact_sums_and_top(tmp_path):
    rng = random.Random(0)
    work = tmp_path / "_work"
    names = [f"site{i}.example.org" for i in range(300)] + ["例子.中国", "unknown"]
    expected: dict[str, list[int]] = {}
    for part in range(5):
        counts = {name: [rng.randint(1, 9), rng.randint(1, 5000), rng.randint(1, 20000)] for name in rng.sample(names, 120)}
        for name, values in counts.items():
            entry = expected.setdefault(name, [0, 0, 0])
            for i, value in enumerate(values):
                entry[i] += value
        write_part_domains(work, part, counts, partitions=4)
    assert {partition_of(n, 4) for n in names} == {0, 1, 2, 3}  # every partition gets domains
    combined(work, 5, 4)
    markers = [merge_partition(r, str(work), top=7) for r in range(4)]
    summary = finish_domains(tmp_path, work, markers, top=7)

    ranked = sorted(expected.items(), key=lambda item: (-item[1][1], item[0]))
    assert [(row["domain"], row["documents"], row["tokens"], row["bytes"]) for row in summary["top"]] == [(n, *c) for n, c in ranked[:7]]
    assert summary["domains"] == len(expected)
    for i, key in enumerate(("documents", "tokens", "bytes")):
        assert summary[key] == sum(c[i] for c in expected.values()), key
    rows = pq.read_table(tmp_path / DOMAINS_FILE).to_pylist()
    assert len(rows) == len(expected)  # every domain once
    assert {r["domain"]: [r["documents"], r["tokens"], r["bytes"]] for r in rows} == expected


def test_partition_count_grows_with_the_parts_without_a_cap():
    """A merge task sums the counts of at most 64 parts, however many parts: a fixed cap (256) made
    its rows grow with the corpus (~2.4M at 10^9 documents)."""
    assert [partitions_for(n) for n in (1, 64, 65, 640, 10**6)] == [1, 1, 2, 10, 15_625]
    assert all(-(-n // partitions_for(n)) <= 64 for n in (1, 63, 64, 65, 16_385, 25_000, 250_000, 10**6))


def test_a_large_input_is_merged_over_hundreds_of_partitions_to_the_exact_counts(tmp_path):
    """20,000 parts (10^9 documents) take 313 partitions; a few parts' counts written into them
    merge to the sums a Counter gives, and the top domains are the same as with one partition."""
    parts = 20_000
    partitions = partitions_for(parts)
    assert partitions == 313  # more than the 256 the count was capped at
    rng = random.Random(1)
    names = [f"host{i}.example{i % 97}.com" for i in range(4000)]
    documents, tokens, text_bytes = Counter(), Counter(), Counter()
    work = tmp_path / "_work"
    for part in range(3):
        counts = {name: [rng.randint(1, 9), rng.randint(1, 500), rng.randint(1, 2000)] for name in rng.sample(names, 1500)}
        for name, (d, t, b) in counts.items():
            documents[name] += d
            tokens[name] += t
            text_bytes[name] += b
        write_part_domains(work, part, counts, partitions)
        write_part_domains(tmp_path / "one", part, counts, 1)
    # one file per part, not one per (part, partition) that got a domain (~1,200 each here)
    assert sorted(p.name for p in (work / "domains").iterdir()) == ["part-00000.shuffle", "part-00001.shuffle", "part-00002.shuffle"]
    combined(work, parts, partitions)
    combined(tmp_path / "one", parts, 1)
    markers = [merge_partition(r, str(work), top=10) for r in range(partitions)]
    assert sum(m["domains"] > 0 for m in markers) > 256
    summary = finish_domains(tmp_path, work, markers, top=10)
    rows = pq.read_table(tmp_path / DOMAINS_FILE).to_pylist()
    assert len(rows) == len(documents) == summary["domains"]  # every domain once
    assert {r["domain"]: (r["documents"], r["tokens"], r["bytes"]) for r in rows} == {n: (documents[n], tokens[n], text_bytes[n]) for n in documents}
    assert (summary["documents"], summary["tokens"], summary["bytes"]) == (documents.total(), tokens.total(), text_bytes.total())
    (tmp_path / "single").mkdir()
    single = finish_domains(tmp_path / "single", tmp_path / "one", [merge_partition(0, str(tmp_path / "one"), top=10)], top=10)
    assert summary == single  # what the manifest takes does not depend on the partition count


def test_each_part_is_read_once_whole_and_a_partition_reads_a_file_per_run(tmp_path, monkeypatch):
    """200 parts in 4 partitions: the runs read each part's file once, in one range from its first
    byte to its last; each partition then reads each of the 4 runs' files (two ranges at most), not
    each of the 200 parts' (400 reads a partition before the runs). The sums are the parts'."""
    parts, partitions = 200, partitions_for(200)
    assert partitions == 4 and -(-parts // RUN_PARTS) == 4
    rng = random.Random(2)
    names = [f"d{i}.example.net" for i in range(2000)]
    expected, work = Counter(), tmp_path / "_work"
    for part in range(parts):
        counts = {name: [1, rng.randint(1, 50), rng.randint(1, 200)] for name in rng.sample(names, 40)}
        expected.update({name: c[1] for name, c in counts.items()})
        write_part_domains(work, part, counts, partitions)
    reads = []
    real = shuffle.read_ranges

    def counted(path, ranges):
        reads.append((str(path), list(ranges)))
        return real(path, ranges)

    monkeypatch.setattr(shuffle, "read_ranges", counted)
    combined(work, parts, partitions)
    part_reads = [(path, ranges) for path, ranges in reads if "/domains/part-" in path]
    assert len(part_reads) == parts == len({path for path, _ in part_reads})  # each part once
    assert all(ranges == [(0, Path(path).stat().st_size)] for path, ranges in part_reads)  # whole
    reads.clear()
    markers = [merge_partition(r, str(work), top=5) for r in range(partitions)]
    assert {Path(path).name for path, _ in reads} == {f"run-{r:05d}.shuffle" for r in range(4)}
    assert len(reads) <= 2 * 4 * partitions  # (header, rows) per run and partition
    summary = finish_domains(tmp_path, work, markers, top=5)
    rows = pq.read_table(tmp_path / DOMAINS_FILE).to_pylist()
    assert {r["domain"]: r["tokens"] for r in rows} == dict(expected) and summary["tokens"] == expected.total()
