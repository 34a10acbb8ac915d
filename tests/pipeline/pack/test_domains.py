"""Per-domain counts (documents, tokens, bytes) merged partition by partition (bounded memory) give exactly the sums over
all parts, the exact top domains, and every domain once in domains.parquet."""

import random

import pyarrow.parquet as pq

from crawlmill.pipeline.pack.domains import (
    DOMAINS_FILE,
    finish_domains,
    merge_partition,
    partition_of,
    partitions_for,
    write_part_domains,
)


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


def test_partition_count_grows_with_the_parts_and_is_capped():
    assert [partitions_for(n) for n in (1, 64, 65, 640, 10**6)] == [1, 1, 2, 10, 256]
