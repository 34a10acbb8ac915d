"""A stage folder moved or copied together with the folders it reads: its record read where it is now.

A folder's record (`_tasks.json`) names its inputs by path: their files (`sources`), the stage
folders it read (`inputs_made`, each with a digest of that folder's record and counts) and
settings that are paths (dedup's index). When the tree holding a folder and its inputs was moved or
copied (`mv out /data/out`, `aws s3 sync s3://a/out s3://b/out`, a cluster mounting the disk
elsewhere), `align` reads the recorded paths as the run's own when one move explains every path
that differs: each differing pair is the same path under an old and a new root (what is left once
their common last names are taken off: `/tmp/a/out/ingest` now `/data/out/ingest` gives `/tmp/a`
now `/data`), all pairs give the same roots, and the folder being run lies under the new root (it
moved with them). A path that did not move (WARC files beside the output, a stage folder linked
back from another disk) matches as it is. Nothing is added to the record for
it (a record written where the folder was made holds no more paths than before), and a record of
any version is read this way.

What a path cannot tell, it does not check: an input file replaced in place by another of the same
name, moved or not, is the same input here (ingest compares its files' sizes itself:
ingest/changed.py); a stage folder read is checked by its digest.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def moved_roots(recorded: str, current: str) -> tuple[str, str] | None:
    """(old root, new root) of a path recorded as `recorded` and found as `current`: both without
    their common last names; None when they are the same."""
    if recorded == current:
        return None
    old, new = recorded.rstrip("/").split("/"), current.rstrip("/").split("/")
    common = 0
    while common < min(len(old), len(new)) - 1 and old[-1 - common] == new[-1 - common]:
        common += 1
    return "/".join(old[: len(old) - common]), "/".join(new[: len(new) - common])


def relocate(value: Any, old: str, new: str) -> Any:
    """`value` (a record, or any part of one) with every path under `old` moved under `new`:
    strings, list items and dict keys alike."""
    if isinstance(value, str):
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
        return value
    if isinstance(value, list):
        return [relocate(v, old, new) for v in value]
    if isinstance(value, dict):
        return {relocate(k, old, new): relocate(v, old, new) for k, v in value.items()}
    return value


def align(found: Any, wanted: Any, outputs: tuple[str, ...], most: bool = False) -> Any:
    """`found` (a folder's record) with each path that is `wanted`'s path moved replaced by
    `wanted`'s, when one move explains every path that differs and one of `outputs` (the folder
    being run, as given and resolved) lies under its new root; else `found` as it is. `most`:
    the move that explains the most differing paths, whatever else differs (for saying what else
    does: a moved tree with one input swapped is one input that differs, not all of them)."""
    pairs: list[tuple[str, str]] = []
    _walk(found, wanted, pairs.append)
    moves = Counter(moved_roots(f, w) for f, w in pairs if f != w)
    if not moves or (len(moves) > 1 and not most):
        return found  # nothing differs, or more than one move (or a setting) does: compared as it is
    (old, new), _ = moves.most_common(1)[0]  # type: ignore[misc]
    if not new or not any(out == new or out.startswith(new.rstrip("/") + "/") for out in outputs):
        return found  # its inputs moved, not the tree it is in: other inputs, as before
    return _walk(found, wanted, lambda pair: None, (old, new))


def _walk(found: Any, wanted: Any, visit: Any, roots: tuple[str, str] | None = None) -> Any:
    """Pair `found`'s strings with `wanted`'s in place (list items by position, dict keys as they
    are or, those left, in sorted order), calling `visit` on each pair; with `roots`, return
    `found` with each string replaced by its pair where the pair is that string moved."""
    if isinstance(found, str) and isinstance(wanted, str):
        visit((found, wanted))
        return wanted if roots is not None and relocate(found, *roots) == wanted else found
    if isinstance(found, list) and isinstance(wanted, list) and len(found) == len(wanted):
        return [_walk(f, w, visit, roots) for f, w in zip(found, wanted)]
    if isinstance(found, dict) and isinstance(wanted, dict):
        only_found = sorted(k for k in found if k not in wanted)
        only_wanted = sorted(k for k in wanted if k not in found)
        keys = {k: k for k in found if k in wanted}
        if len(only_found) == len(only_wanted):
            keys.update(zip(only_found, only_wanted))
        result = {}
        for key, value in found.items():
            if key not in keys:
                result[key] = value
                continue
            pair = keys[key]
            if pair != key:
                visit((key, pair))
            moved_key = pair if roots is not None and relocate(key, *roots) == pair else key
            result[moved_key] = _walk(value, wanted[pair], visit, roots)
        return result
    return found
