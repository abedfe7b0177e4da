"""A remote's `metalink=URL`, as ostree 2022.7 reads it: an XML file (Metalink 3.0)
naming the repository's `summary` with its size, its checksum and the URLs that serve
it. Each URL is tried in turn; the first whose file has that size and checksum is the
summary of the pull (not fetched again), and its directory the repository's URL.

Only the parts ostree reads: `metalink/files/file[@name="summary"]` with `size`,
`verification/hash[@type="sha256" or "sha512"]` (others skipped) and
`resources/url[@protocol="http" or "https"]` (others skipped), in document order
(`preference` is not used for ordering, as in ostree).

The XML comes from the network: a document with a DOCTYPE (or an entity declaration)
is refused before it is parsed, so no entity is ever expanded, and the file is read
only up to the metadata size bound.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from sysroot.errors import FormatError, NotFoundError, SysrootError
from sysroot.pull.fetch import Fetcher, FetchOptions

PREFIX = "metalink="
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# the types ostree checks (and the length of their lowercase hex); others are skipped
_HASHES = {"sha256": 64, "sha512": 128}


@dataclass
class MetalinkFile:
    size: int
    hashes: dict[str, str]  # type -> hex digest as written
    urls: list[str] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]  # the Metalink 3.0 namespace, or none


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if _local(e.tag) == name]


def parse(data: bytes, name: str = "summary") -> MetalinkFile:
    """The entry for file `name`; FormatError for a document that lacks what ostree
    requires (a size, a known hash, a URL) or is not XML."""
    if _DOCTYPE.search(data):
        raise FormatError("a DOCTYPE or entity declaration is not accepted")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise FormatError(f"not well-formed XML ({e})") from None
    if _local(root.tag) != "metalink":
        raise FormatError(f"root element is <{_local(root.tag)}>, not <metalink>")
    entry = None
    for files in _children(root, "files"):
        for f in _children(files, "file"):
            if f.get("name") == name:
                entry = f
                break
    if entry is None:
        raise NotFoundError(f'No <file name="{name}"> element found')
    sizes = _children(entry, "size")
    try:
        size = int((sizes[0].text or "").strip()) if sizes else -1
    except ValueError:
        size = -1
    if size < 0:
        raise FormatError("No valid <size> element found")
    hashes: dict[str, str] = {}
    for verification in _children(entry, "verification"):
        for h in _children(verification, "hash"):
            kind = h.get("type", "")
            digest = (h.text or "").strip()
            if kind in _HASHES and not re.fullmatch(f"[0-9a-f]{{{_HASHES[kind]}}}", digest):
                raise FormatError(f"Invalid hash digest for {kind}")  # ostree's words
            if kind in _HASHES:
                hashes.setdefault(kind, digest)
    if not hashes:
        raise FormatError("No <verification> element with known <hash type=> found")
    urls = []
    for resources in _children(entry, "resources"):
        for u in _children(resources, "url"):
            if u.get("protocol") in ("http", "https") and (u.text or "").strip():
                urls.append((u.text or "").strip())
    if not urls:
        raise FormatError("No <url> element with an http or https protocol found")
    return MetalinkFile(size, hashes, urls)


def _check(data: bytes, entry: MetalinkFile) -> None:
    if len(data) != entry.size:
        raise SysrootError(f"Expected size is {entry.size} bytes but content is {len(data)} bytes")
    for kind, expected in entry.hashes.items():
        actual = hashlib.new(kind, data).hexdigest()
        if actual != expected:
            raise SysrootError(f"Expected checksum is {expected} but actual is {actual}")


def _split(url: str) -> tuple[str, str]:
    """(the directory's URL, the file name) of url."""
    parts = urllib.parse.urlsplit(url)
    directory, _, name = parts.path.rpartition("/")
    base = urllib.parse.urlunsplit(parts._replace(path=directory + "/", query="", fragment=""))
    return base, name + ("?" + parts.query if parts.query else "")


def resolve(url: str, options: FetchOptions) -> tuple[str, bytes]:
    """(the repository URL, its summary, checked) for `metalink=METALINK-URL`."""
    metalink_url = url.removeprefix(PREFIX)
    base, name = _split(metalink_url)
    try:
        with Fetcher(base, options) as fetcher:
            data = fetcher.get(name)
        entry = parse(data)
    except SysrootError as e:
        raise type(e)(f"Metalink {metalink_url}: {e}") from None
    error: SysrootError | None = None
    for target in entry.urls:
        directory, filename = _split(target)
        try:
            # a larger file is cut off at the declared size (and then fails its check)
            with Fetcher(directory, options) as fetcher:
                summary = fetcher.get(filename, limit=entry.size)
            _check(summary, entry)
        except SysrootError as e:
            error = e
            continue
        return directory, summary
    raise SysrootError(f"Exhausted {len(entry.urls)} metalink targets, last error: {error}")
