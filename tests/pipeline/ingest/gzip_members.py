"""Where the gzip members of a file start: Common Crawl writes one member per record."""

import zlib


def member_starts(data: bytes) -> list[int]:
    """The offset of every gzip member of `data`, in order."""
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        d = zlib.decompressobj(wbits=31)
        d.decompress(data[pos:])
        pos = len(data) - len(d.unused_data)
    return starts
