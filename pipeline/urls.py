"""A document's URL as the pipeline labels it: its host, path and registered domain, offline.

`domain_of(url)` is the registered domain under the public-suffix list (`news.bbc.co.uk` ->
`bbc.co.uk`, `a.b.example.com.cn` -> `example.com.cn`), from the snapshot of the list bundled with
tldextract: nothing is fetched, so a label never changes from one run or machine to the next.
Without tldextract the host stands in. Pack counts tokens per domain with it (pack/encode.py) and
remix writes it as each document's `domain` column (remix/stage.py).

    from crawlmill.pipeline.urls import domain_of, host_and_path
    domain_of("https://en.wikipedia.org/wiki/Tide")      # 'wikipedia.org'
    host_and_path("https://en.wikipedia.org/wiki/Tide")  # ('en.wikipedia.org', '/wiki/Tide')
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

UNKNOWN = "unknown"  # the label of a document that has none (no URL, no dump, no language)


@lru_cache(maxsize=1)
def _extractor() -> Any:
    try:
        import tldextract
    except ImportError:  # registered domains need the bundled public-suffix list; the host will do
        return None
    # The snapshot bundled with the package: nothing is fetched, so the result never changes.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def host_and_path(url: str | None) -> tuple[str, str]:
    """The URL's lower-case host without a trailing dot, and its path ("/" when empty); ("", "")
    for a missing or unparsable URL."""
    if not url:
        return "", ""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return "", ""
    return host, parts.path or "/"


def domain_of(url: str | None) -> str:
    """The URL's registered domain (public-suffix list bundled with tldextract), else its host."""
    return registered_domain(host_and_path(url)[0])


def registered_domain(host: str) -> str:
    """The host's registered domain, else the host; UNKNOWN for no host."""
    if not host:
        return UNKNOWN
    extract = _extractor()
    if extract is None:
        return host
    parts = extract(host)
    registered = getattr(parts, "top_domain_under_public_suffix", None) or parts.registered_domain
    return registered or host
