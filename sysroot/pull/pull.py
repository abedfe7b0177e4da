"""`ostree pull`: fetch commits and every object they reach from a remote repository.

Over http(s) the remote must be an archive repository (`objects/XX/REST.filez`), as
ostree requires; a file:// remote is imported like `pull-local`, from any mode.

Order of trust: refs are resolved (from the summary, verified first when the remote
asks, or from refs/heads/REF), each commit is fetched with its detached metadata and
verified (checksum, then signature when the remote requires one, then with
--timestamp-check its timestamp against the local commit) before anything of it is
stored. A commit the repository has already is verified too when the remote
requires signatures (its .commitmeta fetched again, else the one stored checked), as
ostree does: a commit pulled through an unverified remote never becomes a verifying
remote's ref unchecked. Then this process walks the trees while fetch workers
(pull.workers: a forked process per CPU, --connections threads in all, one connection
each) fetch the directory metadata it asks for first and the content objects as it
finds them.
Every object is checked against its checksum before it is staged (content objects by
the worker, straight into the transaction's staging directory); refs move only once
everything is in, in the same transaction.

Resumable like ostree: a commit is marked `state/CSUM.commitpartial` before it is
stored and unmarked when its tree is complete. When a pull fails, the objects verified
so far are still published (without any ref), so the next pull fetches only the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from sysroot.errors import (
    CorruptObjectError,
    FormatError,
    NotFoundError,
    SysrootError,
    UsageError,
)
from sysroot.formats import gvariant
from sysroot.formats import static_delta as sd
from sysroot.formats.keyfile import KeyFile
from sysroot.formats.objects import (
    METADATA_DICT_TYPE,
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    ObjectType,
    is_checksum,
)
from sysroot.pull import deltas, filez, metalink, mirrorlist
from sysroot.pull.fetch import Fetcher, FetchOptions
from sysroot.pull.progress import Progress
from sysroot.pull.pulllog import record_pull, record_pull_failure
from sysroot.pull.workers import TaskResult, WorkerPool
from sysroot.sign import verify as signatures
from sysroot.sign.detached import read_commitmeta
from sysroot.store import static_delta as store_sd
from sysroot.store.cookies import jar_path, read_jar
from sysroot.store.modes import RepoMode
from sysroot.store.pull_local import (
    check_bareuseronly,
    mark_partial,
    parse_object,
    pull_local,
    resolve_pull_targets,
    store_detached,
    unmark_partial,
    verify_history,
)
from sysroot.store.refs import validate_collection_id
from sysroot.store.remotes import Remote, load_remote
from sysroot.store.repo import Repo, validate_ref_name
from sysroot.store.summary import KEY_COLLECTION_ID, Summary
from sysroot.store.timestamps import compare_timestamps
from sysroot.store.transaction import Transaction
from sysroot.util import fsutil
from sysroot.util.units import format_size


@dataclass
class PullOptions:
    depth: int = 0  # parents to fetch too; -1: the whole history
    commit_metadata_only: bool = False
    mirror: bool = False  # refs land in refs/heads; a pull of all refs copies the summary
    bareuseronly_files: bool = False
    url: str | None = None  # fetch from here instead of the remote's url
    verify_bindings: bool = True  # a commit pulled by ref must list it in its bindings
    update_refs: bool = True  # False: resolve and fetch, but move no ref (a peek)
    # rollback defense (ostree's -T): a ref's new commit must not be older than the
    # commit its name resolves to here
    timestamp_check: bool = False
    timestamp_check_from_rev: str | None = None  # every commit fetched: not older than this
    fetch: FetchOptions = field(default_factory=FetchOptions)
    progress: Progress | None = None
    # repositories to take dirtree, dirmeta and content objects from before the remote
    # (ostree's -L/--localcache-repo); every object taken is checked against its name
    localcache_repos: tuple[str, ...] = ()
    # static deltas (deltas.py): used when the remote offers one, unless disabled;
    # required: no delta is an error; dry_run (needs require): fetch the superblocks,
    # report what the parts would cost, store nothing
    disable_static_deltas: bool = False
    require_static_deltas: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class DeltaDryRun:
    """What `pull --dry-run` reports: parts present/all, their bytes, unpacked size."""

    fetched_parts: int = 0
    total_parts: int = 0
    fetched_size: int = 0
    total_size: int = 0
    total_usize: int = 0

    def line(self) -> str:
        """ostree 2022.7's line."""
        return (
            f"Delta update: {self.fetched_parts}/{self.total_parts} parts, "
            f"{format_size(self.fetched_size)}/{format_size(self.total_size)}, "
            f"{format_size(self.total_usize)} total uncompressed"
        )


@dataclass(frozen=True)
class PullResult:
    metadata: int  # metadata objects stored
    content: int  # content objects stored
    content_bytes: int  # their uncompressed size
    bytes_transferred: int
    seconds: float
    refs: dict[str, str] = field(default_factory=dict)  # destination ref -> commit
    imported: bool = False  # a file:// remote, imported like pull-local
    delta_parts: int = 0  # static delta parts fetched, run inline or found done
    dry_run: DeltaDryRun | None = None

    def summary_line(self) -> str:
        """The line `ostree pull` prints at the end."""
        if self.dry_run is not None:
            return self.dry_run.line()
        if self.imported:
            return (
                f"{self.metadata} metadata, {self.content} content objects imported; "
                f"{format_size(self.content_bytes)} content written"
            )
        counts = (
            f"{self.delta_parts} delta parts, {self.metadata + self.content} loose fetched"
            if self.delta_parts
            else f"{self.metadata} metadata, {self.content} content objects fetched"
        )
        return (
            f"{counts}; "
            f"{_transferred(self.bytes_transferred)} transferred in "
            f"{int(self.seconds)} seconds; {format_size(self.content_bytes)} "
            "content written"
        )


_BATCH = 16  # objects per task of a fetch worker: small enough to share out evenly


def _transferred(n: int) -> str:
    # ostree's own rounding here (not g_format_size): whole B, then KiB (it printed
    # "347195 KiB" for 339 MiB), MiB from 1 GiB on
    if n < 1024:
        return f"{n} B"
    if n < 1 << 30:
        return f"{n >> 10} KiB"
    return f"{n >> 20} MiB"


# ---------------------------------------------------------------- remotes, verification


def fetch_options(
    remote: Remote | None, base: FetchOptions | None = None, *, repo: Repo | None = None
) -> FetchOptions:
    """The remote's TLS/proxy/timeout/size options over the caller's (http2 is ignored:
    HTTP/1.1), and the cookies of its jar in repo. Every fetch from a remote (pull,
    `remote refs`, `remote summary`) builds its options here, so they all reach the
    server the same way."""
    base = base or FetchOptions()
    if remote is None:
        return base
    cookies = tuple(read_jar(jar_path(repo, remote.name))) if repo is not None else ()
    return replace(
        base,
        cookies=base.cookies + cookies,
        tls_permissive=base.tls_permissive or remote.option_bool("tls-permissive", False),
        tls_ca_path=base.tls_ca_path or remote.option("tls-ca-path"),
        tls_client_cert_path=remote.option("tls-client-cert-path"),
        tls_client_key_path=remote.option("tls-client-key-path"),
        proxy=base.proxy or remote.option("proxy"),
        stall_timeout=remote.option_number("stall-timeout-secs", base.stall_timeout),
        max_metadata_size=int(
            remote.option_number("max-metadata-size", base.max_metadata_size, integer=True)
        ),
    )


def _commit_verification(remote: Remote | None) -> signatures.CommitCheck | None:
    """A function (repo, checksum, commit bytes, commitmeta bytes) raising
    SignatureError, or None when the remote does not ask for signatures."""
    return signatures.commit_check(remote)


def _summary_verification(remote: Remote | None) -> bool:
    return remote is not None and bool(remote.gpg_verify_summary or remote.sign_verify_summary)


# ---------------------------------------------------------------- entry point


def pull(
    repo: Repo,
    remote_or_url: Remote | str,
    refs: Sequence[str] = (),
    options: PullOptions | None = None,
) -> PullResult:
    """Pull refs (or commit checksums) from a remote (a Remote, or its name) or a URL.

    With no refs: every ref of the remote in mirror mode, else the remote's branches.
    A ref may be given as REF@CHECKSUM (see split_override). Each pull ends with journal
    records (pull/pulllog.py): one per ref moved, or one naming the error.
    """
    source = remote_or_url if isinstance(remote_or_url, str) else remote_or_url.name
    try:
        result = _pull(repo, remote_or_url, refs, options or PullOptions())
    except Exception as e:
        record_pull_failure(source, refs, e)
        raise
    record_pull(
        source,
        result.refs,
        bytes_transferred=result.bytes_transferred,
        objects=result.metadata + result.content,
        content_bytes=result.content_bytes,
    )
    return result


def _pull(
    repo: Repo, remote_or_url: Remote | str, refs: Sequence[str], options: PullOptions
) -> PullResult:
    # checked before anything else, as ostree's command line does; a name given twice
    # is pulled once, the last one counting (ostree keeps its refs in a hash table)
    specs = dict(split_override(spec) for spec in refs)
    names = list(specs)
    overrides = list(specs.values())
    if options.depth < -1:
        raise SysrootError(f"Invalid depth {options.depth}: use -1 for the whole history")
    if options.disable_static_deltas and options.require_static_deltas:
        raise UsageError("--disable-static-deltas and --require-static-deltas exclude each other")
    if options.dry_run and not options.require_static_deltas:
        raise UsageError("--dry-run requires --require-static-deltas")
    if options.require_static_deltas and repo.mode is RepoMode.ARCHIVE:
        raise SysrootError("Can't use static deltas in an archive repo")
    if isinstance(remote_or_url, str) and "://" in remote_or_url:
        remote, url = None, remote_or_url  # a URL: never verified, refs in refs/heads
    else:
        remote = (
            load_remote(repo, remote_or_url) if isinstance(remote_or_url, str) else remote_or_url
        )
        link = remote.option("metalink")
        url = options.url or remote.url or (metalink.PREFIX + link if link else "")
        if not url:
            raise SysrootError(f'No "url" option in remote "{remote.name}"')
    # As ostree: the remote's contenturl serves the objects, its url the rest (summary,
    # config, refs, detached metadata); --url stands for both, and a file:// url is
    # imported whole.
    content_url = None if remote is None or options.url else remote.option("contenturl")
    if (content_url or "").startswith(metalink.PREFIX):
        raise SysrootError(f"Unsupported contenturl {content_url}: metalinks serve a url only")
    # as ostree: a file:// remote is imported, unless deltas are required, which
    # fetches from it as from a server
    if url.startswith("file://") and not options.require_static_deltas:
        return _pull_file(repo, remote, url, names, overrides, options)
    fetch = fetch_options(remote, options.fetch, repo=repo)
    # a metalink= gives the url and its checked summary (metalink.py)
    summary = None
    if url.startswith(metalink.PREFIX):
        url, summary = metalink.resolve(url, fetch)
    # a mirrorlist= is fetched and probed once per pull, as ostree (mirrorlist.py)
    with contextlib.ExitStack() as stack:
        fetcher = stack.enter_context(mirrorlist.open_fetcher(url, fetch))
        content = (
            stack.enter_context(mirrorlist.open_fetcher(content_url, fetch))
            if content_url
            else fetcher
        )
        return _HttpPull(repo, fetcher, remote, options, content, summary).run(names, overrides)


def split_override(spec: str) -> tuple[str, str | None]:
    """`REF@CHECKSUM` -> (REF, CHECKSUM); anything else -> (spec, None).

    ostree pull's way to pull one commit and set REF to it, whatever the remote's
    summary or refs/heads say (its signature and ref binding are still checked).
    Split at the last '@', as ostree does; a checksum before the '@' is pulled as a
    checksum and what follows is only checked (ostree ignores it too).
    """
    name, sep, checksum = spec.rpartition("@")
    if not sep:
        return spec, None
    if not is_checksum(checksum):
        raise UsageError(f"Invalid rev {checksum}")  # ostree's wording
    return name, checksum


def check_ref_binding(commit: Commit, checksum: str, ref: str) -> None:
    """Refuse a commit that was made for other refs (`ostree.ref-binding`), as ostree
    does: it stops a server from passing off one branch's commit as another's."""
    bindings = commit.metadata_value("ostree.ref-binding")
    if bindings is not None and ref not in bindings:
        listed = "', '".join(bindings)
        raise SysrootError(
            f"Commit {checksum}: Commit has no requested ref '{ref}' in ref "
            f"binding metadata ('{listed}')"
        )


def check_collection_binding(commit: Commit, checksum: str, collection_id: str | None) -> None:
    """With a collection ID (the remote's `collection-id`), refuse a commit not bound to
    it (`ostree.collection-binding`, with its ref binding), in ostree 2022.7's words."""
    if collection_id is None:
        return
    if commit.metadata_value("ostree.ref-binding") is None:
        raise SysrootError(
            f"Commit {checksum}: Expected commit metadata to have ref binding information, "
            "found none"
        )
    bound = commit.metadata_value("ostree.collection-binding")
    if bound is None:
        raise SysrootError(
            f"Commit {checksum}: Expected commit metadata to have collection ID binding "
            "information, found none"
        )
    if bound != collection_id:
        raise SysrootError(
            f"Commit {checksum}: Commit has collection ID \u2018{bound}\u2019 in collection "
            "binding metadata, while the remote it came from has collection ID "
            f"\u2018{collection_id}\u2019"
        )


@dataclass(frozen=True)
class _RollbackCheck:
    """ostree 2022.7's --timestamp-check and --timestamp-check-from-rev, resolved before
    any commit is fetched; applied to each commit once it is verified, before anything
    of it is stored, so a refused pull stores nothing and moves no ref."""

    originals: dict[str, tuple[str, int]]  # ref name -> its commit here and timestamp
    from_rev: tuple[str, int] | None  # --timestamp-check-from-rev: commit, timestamp

    def check(self, checksum: str, commit: Commit, name: str | None, level: int) -> None:
        """name: the ref pulled, for the commit it points at (level 0)."""
        if level == 0 and name in self.originals:
            compare_timestamps(*self.originals[name], checksum, commit.timestamp)
        if self.from_rev is not None:  # as ostree: the parents fetched with --depth too
            compare_timestamps(*self.from_rev, checksum, commit.timestamp)


def _local_timestamp(repo: Repo, rev: str, what: str) -> tuple[str, int]:
    try:
        return rev, repo.load_commit(rev).timestamp
    except SysrootError as e:
        raise type(e)(f"Reading {what}: {e}") from None


def _rollback_check(
    repo: Repo, options: PullOptions, names: Sequence[str]
) -> _RollbackCheck | None:
    if not options.timestamp_check and options.timestamp_check_from_rev is None:
        return None
    originals: dict[str, tuple[str, int]] = {}
    if options.timestamp_check:
        # ostree 2022.7 aborts on an assertion in both cases; refused here up front
        if options.depth != 0:
            raise UsageError(
                "--timestamp-check requires --depth=0: only the commits "
                "the refs point at are compared"
            )
        for name in names:
            if is_checksum(name):
                raise UsageError(
                    f"--timestamp-check needs refs, not a commit checksum "
                    f"({name}): use --timestamp-check-from-rev"
                )
            # As ostree: the name as given, resolved here like `rev-parse NAME`
            # (refs/heads, then each remote's), not the remote:ref the pull moves.
            # None yet: nothing to compare, the first pull is accepted.
            rev = repo.resolve_rev(name, allow_noent=True)
            if rev is not None:
                originals[name] = _local_timestamp(repo, rev, f"{name} for timestamp-check")
    from_rev = None
    if options.timestamp_check_from_rev is not None:
        rev = repo.resolve_rev(options.timestamp_check_from_rev)
        assert rev is not None  # without allow_noent, an unknown revision raises
        from_rev = _local_timestamp(repo, rev, f"{rev} for timestamp-check-from-rev")
    return _RollbackCheck(originals, from_rev)


def _dest_ref(remote: Remote | None, name: str, mirror: bool) -> str:
    if mirror or remote is None:
        return name
    return f"{remote.name}:{name}"


def mirror_collection(repo: Repo, summary: bytes | None) -> str | None:
    """Where a --mirror pull files its refs, as ostree 2022.7: a summary naming a
    collection other than the repository's own puts them in refs/mirrors/COLLECTION/
    (this is returned); else (None) refs/heads. The remote's collection-id does not
    matter here, nor, without a summary, the source's."""
    if summary is None:
        return None
    value = Summary.parse(summary).metadata.get(KEY_COLLECTION_ID)
    if value is None or value.signature != "s":
        return None
    validate_collection_id(value.value)
    return None if value.value == repo.config.get("core", "collection-id") else value.value


def _set_ref(tx: Transaction, dest: str, checksum: str, collection: str | None) -> None:
    if collection is not None:
        tx.set_collection_ref(collection, dest, checksum)
    else:
        tx.set_ref(dest, checksum)


def _default_refs(remote: Remote | None, mirror: bool) -> list[str]:
    if mirror:
        return []  # resolved to every ref of the remote
    branches = remote.branches if remote is not None else []
    if not branches:
        raise SysrootError(
            f"No configured branches for remote {remote.name if remote else 'at this URL'}"
        )
    return branches


# ---------------------------------------------------------------- file:// remotes


def _pull_file(
    repo: Repo,
    remote: Remote | None,
    url: str,
    refs: Sequence[str],
    overrides: Sequence[str | None],
    options: PullOptions,
) -> PullResult:
    start = time.monotonic()
    path = url.removeprefix("file://")
    names = list(refs) or _default_refs(remote, options.mirror)
    with Repo.open(path) as src:
        all_names = names or list(src.list_refs(include_remotes=False))
        commits = list(overrides) or [None] * len(all_names)
        targets = resolve_pull_targets(src, all_names, None, commits)
        # as over http, before anything is copied; a REF@CHECKSUM is not the summary's
        if remote is not None and _summary_verification(remote):
            signatures.verify_local_summary(
                repo,
                remote,
                src.path,
                [
                    (n, c)
                    for n, (_, c), o in zip(all_names, targets, commits, strict=True)
                    if o is None
                ],
            )
        # as ostree: from a local repository, its own collection ID binds (not the remote's)
        collection = src.config.get("core", "collection-id") or None
        for name, (_, checksum) in zip(all_names, targets, strict=True):
            if options.verify_bindings and not is_checksum(name):
                check_ref_binding(src.load_commit(checksum), checksum, name)
            if options.verify_bindings:
                check_collection_binding(src.load_commit(checksum), checksum, collection)
        rollback = _rollback_check(repo, options, all_names)
        if rollback is not None:  # before anything is copied, like the signatures
            for name, (_, checksum) in zip(all_names, targets, strict=True):
                _check_local_history(
                    repo,
                    src,
                    rollback,
                    checksum,
                    None if is_checksum(name) else name,
                    options.depth,
                )
        as_remote = None if options.mirror or remote is None else remote.name
        # the remote's policy checks every commit before anything is copied, the ones
        # the repository has already too
        res = pull_local(
            src,
            repo,
            names,
            overrides=list(overrides),
            remote=as_remote,
            depth=options.depth,
            commit_metadata_only=options.commit_metadata_only,
            bareuseronly_files=options.bareuseronly_files,
            update_refs=options.update_refs,
            verify=_commit_verification(remote),
            collection=(
                mirror_collection(repo, _read_optional(src, "summary")) if options.mirror else None
            ),
        )
        if options.mirror and not refs:
            _store_summary(repo, _read_optional(src, "summary"), _read_optional(src, "summary.sig"))
    return PullResult(
        res.metadata,
        res.content,
        res.content_bytes,
        0,
        time.monotonic() - start,
        res.refs,
        imported=True,
    )


def _check_local_history(
    repo: Repo, src: Repo, rollback: _RollbackCheck, tip: str, name: str | None, depth: int
) -> None:
    """The rollback check on a commit of a file:// remote and the parents --depth takes."""

    def check(_repo: Repo, checksum: str, data: bytes, _meta: bytes | None) -> None:
        commit = parse_object(Commit.parse, ObjectType.COMMIT, checksum, data, f"commit {checksum}")
        rollback.check(checksum, commit, name, 0 if checksum == tip else 1)

    verify_history(repo, src, tip, depth, check)


def _read_optional(src: Repo, name: str) -> bytes | None:
    try:
        with open(os.path.join(src.path, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _store_summary(repo: Repo, summary: bytes | None, sig: bytes | None) -> None:
    """A mirror keeps the remote's summary (and its signature) as they were."""
    if summary is None:
        return
    fsync = repo.fsync_enabled
    if sig is not None:
        fsutil.atomic_write("summary.sig", sig, mode=0o644, dir_fd=repo.dfd, fsync=fsync)
    else:
        try:
            os.unlink("summary.sig", dir_fd=repo.dfd)  # it would not match the new one
        except FileNotFoundError:
            pass
    fsutil.atomic_write("summary", summary, mode=0o644, dir_fd=repo.dfd, fsync=fsync)


# ---------------------------------------------------------------- http(s) remotes


class _HttpPull:
    def __init__(
        self,
        repo: Repo,
        fetcher: Fetcher,
        remote: Remote | None,
        options: PullOptions,
        content: Fetcher | None = None,
        summary: bytes | None = None,
    ) -> None:
        """fetcher: the remote's url (summary, config, refs, .commitmeta); content: its
        contenturl, where the objects are (default: fetcher); summary: the remote's,
        already fetched and checked (a metalink's), else fetched from url."""
        self.repo = repo
        self._given_summary = summary
        self.fetcher = fetcher
        # every commit fetched is checked against it (ostree's verify_bindings)
        self.collection_id = (remote.option("collection-id") or None) if remote else None
        self.content_fetcher = content or fetcher
        self.remote = remote
        self.options = options
        self.url = fetcher.base_url
        self.content_url = self.content_fetcher.base_url
        self._tx: Transaction | None = None  # the repo's, while run() fetches
        self.raw_content = repo.mode is RepoMode.ARCHIVE  # keep the .filez bytes as served
        self.check_bareuseronly = options.bareuseronly_files or repo.mode is RepoMode.BARE_USER_ONLY
        self.verify = _commit_verification(remote)
        self.rollback: _RollbackCheck | None = None
        self.progress = options.progress or Progress(live=False)
        self.progress.bytes_source = self._received
        self.seen_commits: dict[str, float] = {}
        self.seen_trees: set[str] = set()
        self.seen_metas: set[str] = set()
        self.seen_files: set[str] = set()
        self.roots: list[tuple[str, str, str]] = []  # (tree, meta, label) to walk
        self.partial: list[str] = []  # commits this pull completes
        self.tree_places: dict[str, tuple[str, str]] = {}  # tree being fetched -> (path, label)
        self.want_files: list[tuple[str, str]] = []  # (checksum, where) to hand out
        self._pool: WorkerPool | None = None
        self.worker_bytes = 0  # received by the workers
        self.metadata = 0
        self.content = 0
        self.content_bytes = 0
        self.caches = [Repo.open(path) for path in options.localcache_repos]
        # static deltas: 2022.7 uses none in an archive repo, nor for commit metadata
        self.use_deltas = not (
            options.disable_static_deltas
            or options.commit_metadata_only
            or repo.mode is RepoMode.ARCHIVE
        )
        self.plans: dict[str, sd.Superblock] = {}  # TO commit -> the delta that makes it
        self.part_tasks: list[tuple[str, int, str]] = []  # (TO, part index, where)
        self.fallbacks: list[tuple[str, str]] = []  # (checksum, where): loose fetches
        self.delta_parts = 0  # parts fetched, run inline or found done

    def _cached(self, objtype: ObjectType, checksum: str, where: str) -> bool:
        """Store the object from a local cache repository, if one has it."""
        for cache in self.caches:
            if not cache.has_object(objtype, checksum):
                continue
            if objtype is ObjectType.FILE:
                info = cache.load_file(checksum)
                payload = None if info.header.is_symlink else cache.iter_payload(checksum)
                self._check_header(info.header, checksum, where)
                try:
                    self.tx.write_content(info.header, payload, expected=checksum)
                except CorruptObjectError as e:
                    raise CorruptObjectError(
                        checksum, "file", f"{e.problem} ({where}, from {cache.path})"
                    ) from None
                self.content += 1  # it was not stored (has_object was asked first)
                self.content_bytes += info.size
            else:
                data = cache.read_metadata(objtype, checksum)
                self._store_metadata(objtype, checksum, data, f"{where}, local cache")
            return True
        return False

    @property
    def tx(self) -> Transaction:
        """The transaction objects go into; only inside run()."""
        assert self._tx is not None, "no transaction outside run()"
        return self._tx

    def _received(self) -> int:
        pool = self._pool  # the progress thread asks too
        workers = pool.received() if pool is not None else self.worker_bytes
        content = (
            self.content_fetcher.bytes_transferred
            if self.content_fetcher is not self.fetcher
            else 0
        )
        return self.fetcher.bytes_transferred + content + workers

    # ------------------------------------------------------------ remote files
    def _remote_config(self) -> bool:
        """Check the remote's mode; whether it keeps delta indexes (core.indexed-deltas)."""
        data = self.fetcher.get_optional("config")
        if data is None:
            return False  # like ostree without a summary: the objects themselves will tell
        try:
            config = KeyFile.parse(data.decode("utf-8"), source=self.url + "config")
            mode = RepoMode.parse(config.get("core", "mode", "bare") or "bare")
        except (FormatError, UnicodeDecodeError) as e:
            raise FormatError(f"Invalid remote config {self.url}config: {e}") from None
        if mode is not RepoMode.ARCHIVE:
            raise SysrootError(
                f'Can\'t pull from archives with mode "{mode.value}" '
                f"({self.url}): only archive repositories can be served"
            )
        try:
            return config.get_bool("core", "indexed-deltas", False)
        except FormatError as e:
            raise FormatError(f"Invalid remote config {self.url}config: {e}") from None

    def _summary(self) -> tuple[bytes | None, bytes | None]:
        sig = self.fetcher.get_optional("summary.sig")
        summary = self._given_summary
        if summary is None:
            summary = self.fetcher.get_optional("summary")
        if self.remote is not None and _summary_verification(self.remote):
            if summary is None:
                raise SysrootError(
                    f"Remote {self.remote.name} requires a signed summary, "
                    f"but {self.url}summary does not exist"
                )
            signatures.verify_summary(self.repo, self.remote, summary, sig)
        return summary, sig

    def _resolve(
        self, refs: Sequence[str], overrides: Sequence[str | None], summary: bytes | None
    ) -> tuple[list[tuple[str | None, str]], list[str]]:
        """(destination ref or None, commit) for each name, and the names; overrides
        (parallel to refs): the commit of a REF@CHECKSUM, else None."""
        mirror = self.options.mirror
        names = list(refs) or _default_refs(self.remote, mirror)
        overrides = list(overrides) or [None] * len(names)
        heads = None
        if summary is not None:
            try:
                heads = {r.name: r.checksum for r in Summary.parse(summary).refs}
            except FormatError as e:
                raise FormatError(f"Invalid summary {self.url}summary: {e}") from None
        if not names:
            if heads is None:
                raise SysrootError(
                    f"Fetching all refs was requested in mirror mode, but {self.url} has no summary"
                )
            names = list(heads)
            overrides = [None] * len(names)
        out: list[tuple[str | None, str]] = []
        for name, override in zip(names, overrides, strict=True):
            if is_checksum(name):
                out.append((None, name))
                continue
            validate_ref_name(name)
            if override is not None:
                checksum = override  # the remote's summary and refs are not asked
            elif heads is not None:
                if name not in heads:
                    raise NotFoundError(
                        f"No such branch '{name}' in repository summary ({self.url}summary)"
                    )
                checksum = heads[name]
            else:
                try:
                    text = self.fetcher.get(f"refs/heads/{name}").decode("ascii", "replace")
                except NotFoundError:
                    raise NotFoundError(
                        f"Ref '{name}' not found at {self.url} (no summary, no refs/heads/{name})"
                    ) from None
                checksum = text.strip()
                if not is_checksum(checksum):
                    raise FormatError(f"Invalid checksum in {self.url}refs/heads/{name}")
            out.append((_dest_ref(self.remote, name, mirror), checksum))
        return out, names

    # ------------------------------------------------------------ metadata
    def _object_path(self, objtype: ObjectType, checksum: str) -> str:
        return f"objects/{checksum[:2]}/{checksum[2:]}.{objtype.extension(True)}"

    def _store_metadata(self, objtype: ObjectType, checksum: str, data: bytes, where: str) -> None:
        try:
            self.tx.write_metadata(objtype, data, expected=checksum)
        except CorruptObjectError as e:
            raise CorruptObjectError(
                checksum,
                objtype.type_name,
                f"{e.problem} ({where}, from "
                f"{self.content_url}{self._object_path(objtype, checksum)})",
            ) from None
        self.metadata += 1
        self.progress.add_fetched()

    # ------------------------------------------------------------ commits
    def _commit(self, checksum: str, level: int, name: str | None) -> Commit | None:
        """name: the ref pulled, at level 0 (None for its parents and for checksums)."""
        ref = name if self.options.verify_bindings else None
        label = f"commit {checksum}"
        tx = self.tx
        if tx.has_object(ObjectType.COMMIT, checksum):
            data = tx.read_metadata(ObjectType.COMMIT, checksum)
            commit = parse_object(Commit.parse, ObjectType.COMMIT, checksum, data, label)
            if ref is not None:
                check_ref_binding(commit, checksum, ref)
            if self.options.verify_bindings:
                check_collection_binding(commit, checksum, self.collection_id)
            if self.verify is not None:
                # Present already (pulled through an unverified remote, pull-local...):
                # this remote's policy still applies before it becomes a ref here.
                self._verify_present(self.verify, checksum, data)
            if self.rollback is not None:
                self.rollback.check(checksum, commit, name, level)
            if self.repo.is_partial(checksum) and checksum not in self.partial:
                self.partial.append(checksum)
                self._add_root(commit, label)
            return commit
        path = self._object_path(ObjectType.COMMIT, checksum)
        self.progress.add_total()
        try:
            # the detached metadata alongside: a round trip per commit of a history, not two
            with ThreadPoolExecutor(1) as side:
                meta_future = side.submit(self.fetcher.get_optional, path + "meta")
                data = self.content_fetcher.get(path)
            meta = meta_future.result()
        except NotFoundError:
            if level > 0:
                return None  # history the remote does not have: stop there, like ostree
            raise NotFoundError(
                f"Commit {checksum} not found at {self.content_url}{path}"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != checksum:
            raise CorruptObjectError(
                checksum, "commit", f"content hashes to {actual} (from {self.content_url}{path})"
            )
        if meta is not None and not gvariant.is_normal_form(METADATA_DICT_TYPE, meta):
            raise CorruptObjectError(
                checksum, "commitmeta", f"not a valid a{{sv}} ({self.url}{path}meta)"
            )
        commit = self._admit_commit(checksum, data, meta, level, name)
        self._store_metadata(ObjectType.COMMIT, checksum, data, label)
        self._add_root(commit, label)
        return commit

    def _admit_commit(
        self, checksum: str, data: bytes, meta: bytes | None, level: int, name: str | None
    ) -> Commit:
        """Check a new commit (bindings, signatures, rollback) before anything of it is
        stored, then mark it partial and store its detached metadata."""
        ref = name if self.options.verify_bindings else None
        commit = parse_object(Commit.parse, ObjectType.COMMIT, checksum, data, f"commit {checksum}")
        if ref is not None:
            check_ref_binding(commit, checksum, ref)
        if self.options.verify_bindings:
            check_collection_binding(commit, checksum, self.collection_id)
        if self.verify is not None:  # before anything of it is stored
            self.verify(self.repo, checksum, data, meta)
        if self.rollback is not None:  # verified, and still nothing of it stored
            self.rollback.check(checksum, commit, name, level)
        # marked before it can be published: a commit never appears complete too early
        mark_partial(self.repo, [checksum])
        self.partial.append(checksum)
        if meta is not None:
            store_detached(self.repo, checksum, meta)
        return commit

    # ------------------------------------------------------------ static deltas
    def _plan_deltas(
        self,
        targets: Sequence[tuple[str | None, str]],
        names: Sequence[str],
        summary: bytes | None,
        config_indexed: bool,
    ) -> None:
        """Choose and fetch (checked) a superblock for each commit a delta can make."""
        parsed = Summary.parse(summary) if summary is not None else None
        table = deltas.table_from(parsed, config_indexed, self.url)
        require = self.options.require_static_deltas
        if require and not table.listed:
            raise deltas.no_listing_error()
        if not table.listed and _summary_verification(self.remote):
            # an unlisted superblock could not be checked against the signed summary
            # (2022.7 fails the pull): objects then, each checked against its tree
            return
        for (dest, checksum), name in zip(targets, names, strict=True):
            if checksum in self.plans:
                continue
            local_from = self.repo.resolve_rev(dest, allow_noent=True) if dest else None
            choice = deltas.choose(
                self.repo, table, self.content_fetcher, checksum, local_from, dest is not None
            )
            sb = deltas.fetch_superblock(self.content_fetcher, choice) if choice else None
            if sb is None:
                # as ostree: a commit here already complete needs no delta
                if require and not deltas.complete_commit(self.repo, checksum):
                    raise deltas.required_error(name, checksum)
                continue
            self.plans[checksum] = sb

    def _dry_run(self) -> DeltaDryRun:
        """ostree's --dry-run figures: every part, and those whose objects are here."""
        out = DeltaDryRun()
        for sb in self.plans.values():
            # as 2022.7: a fallback object still missing counts as one more part
            items = [
                (all(self.repo.has_object(t, c) for t, c in h.objects), h.size, h.usize)
                for h in sb.parts
            ] + [
                (False, fb.size, fb.usize)
                for fb in sb.fallbacks
                if not self.repo.has_object(fb.objtype, fb.checksum)
            ]
            for done, size, usize in items:
                out = replace(
                    out,
                    fetched_parts=out.fetched_parts + done,
                    total_parts=out.total_parts + 1,
                    fetched_size=out.fetched_size + (size if done else 0),
                    total_size=out.total_size + size,
                    total_usize=out.total_usize + usize,
                )
        return out

    def _delta_commit(self, checksum: str, sb: sd.Superblock, name: str | None) -> Commit | None:
        """The commit a delta makes, from its superblock (or as stored, checked the
        same way), and its parts and fallbacks queued for the workers."""
        delta = f"static delta {sb.name}"
        if self.tx.has_object(ObjectType.COMMIT, checksum):
            commit = self._commit(checksum, 0, name)
        else:
            meta_v = sb.metadata.get(f"{sb.name.relpath}/commitmeta")
            meta = None
            if meta_v is not None:
                if meta_v.signature != "a{sv}":
                    raise FormatError(f"Invalid detached metadata in {delta}")
                meta = gvariant.encode("a{sv}", meta_v.value)
            commit = self._admit_commit(checksum, sb.commit_bytes, meta, 0, name)
            try:
                self.tx.write_metadata(ObjectType.COMMIT, sb.commit_bytes, expected=checksum)
            except CorruptObjectError as e:
                raise CorruptObjectError(checksum, "commit", f"{e.problem} (in {delta})") from None
            self._add_root(commit, f"commit {checksum}")
        wanted = done = 0
        for i, header in enumerate(sb.parts):
            if all(self.tx.has_object(t, c) for t, c in header.objects):
                done += 1  # as ostree: done, nothing to fetch
                continue
            self.part_tasks.append((checksum, i, f"part {i} of {delta}"))
            wanted += header.usize
        self._check_space(wanted, delta)
        for fb in sb.fallbacks:
            if fb.checksum not in self.seen_files and not self.tx.has_object(
                ObjectType.FILE, fb.checksum
            ):
                self.seen_files.add(fb.checksum)
                self.fallbacks.append((fb.checksum, f"fallback object of {delta}"))
        self.delta_parts += done
        self.progress.add_parts(len(sb.parts), done)
        return commit

    def _check_space(self, needed: int, delta: str) -> None:
        """As ostree: the unpacked size of the parts must fit in the free space."""
        st = os.statvfs(self.repo.path)
        free = st.f_bavail * st.f_frsize
        if needed > free:
            raise SysrootError(
                f"Delta requires {format_size(needed)} free space, but only "
                f"{format_size(free)} available ({delta})"
            )

    def _fetch_part(self, to: str, index: int, where: str) -> int:
        """In a worker: fetch (unless inline), check and run one part; bytes fetched."""
        sb = self.plans[to]
        header = sb.parts[index]
        relpath = sb.name.relpath
        try:
            data = sb.inline_part(relpath, index)
            inline = data is not None
            if data is None:
                data = self.content_fetcher.get(f"{relpath}/{index}", header.size)
            store_sd.execute_part_bytes(self.tx, header, data, check=not inline)
        except NotFoundError as e:
            raise NotFoundError(f"Fetching {where}: {e}") from None
        except (FormatError, CorruptObjectError) as e:
            raise FormatError(f"{where}: {e}") from None
        except OSError as e:
            raise SysrootError(f"Writing {where} to {self.repo.path}: {e.strerror or e}") from None
        return 0 if inline else len(data)

    def _record_part(self, to: str, index: int) -> None:
        """In the parent: take on the objects a worker's part staged, all of them."""
        sb = self.plans[to]
        for objtype, checksum in sb.parts[index].objects:
            self.tx.record_staged(checksum, objtype)
            if not self.tx.has_object(objtype, checksum):
                raise FormatError(
                    f"Delta part {index} of static delta {sb.name} left object "
                    f"{checksum}.{objtype.type_name} unwritten"
                )
        self.delta_parts += 1
        self.progress.add_part_done()

    def _verify_present(self, verify: signatures.CommitCheck, checksum: str, data: bytes) -> None:
        """Verify a commit the repo has, as ostree 2022.7 does: the remote's
        .commitmeta is fetched again (signatures may have been added), and when the
        remote has none the detached metadata already here is checked instead."""
        path = self._object_path(ObjectType.COMMIT, checksum) + "meta"
        meta = self.fetcher.get_optional(path)
        if meta is None:
            verify(self.repo, checksum, data, read_commitmeta(self.repo, checksum))
            return
        if not gvariant.is_normal_form(METADATA_DICT_TYPE, meta):
            raise CorruptObjectError(
                checksum, "commitmeta", f"not a valid a{{sv}} ({self.url}{path})"
            )
        verify(self.repo, checksum, data, meta)
        store_detached(self.repo, checksum, meta)  # the remote's, verified: kept, as ostree

    def _add_root(self, commit: Commit, label: str) -> None:
        if not self.options.commit_metadata_only:
            self.roots.append((commit.root_tree, commit.root_meta, label))

    def _recheck_rollback(self, checksum: str, name: str | None) -> None:
        """The rollback check for a second ref at a commit fetched already. ostree
        2022.7 skips it (the commit is scanned once) and lets that ref move back."""
        if self.rollback is not None and self.tx.has_object(ObjectType.COMMIT, checksum):
            data = self.tx.read_metadata(ObjectType.COMMIT, checksum)
            commit = parse_object(
                Commit.parse, ObjectType.COMMIT, checksum, data, f"commit {checksum}"
            )
            self.rollback.check(checksum, commit, name, 0)

    def _commit_chain(self, head: str, name: str | None) -> None:
        depth = self.options.depth
        remaining = math.inf if depth == -1 else depth
        level = 0
        checksum: str | None = head
        while checksum:
            if self.seen_commits.get(checksum, -1) >= remaining:
                if level == 0:
                    self._recheck_rollback(checksum, name)
                return
            self.seen_commits[checksum] = remaining
            plan = self.plans.get(checksum) if level == 0 else None
            if plan is not None:
                commit = self._delta_commit(checksum, plan, name)
            else:
                commit = self._commit(checksum, level, name if level == 0 else None)
            if commit is None or remaining == 0:
                return
            checksum = commit.parent
            remaining -= 1
            level += 1

    # ------------------------------------------------------------ trees
    # After the commits, every fetch runs in the worker processes: directory metadata
    # first (the walk waits for it), content objects as the walk finds them. This
    # process walks the trees, stores and checks the metadata, and records the content
    # the workers staged, handling each answer as it arrives.
    def _walk(self) -> None:
        if not self.roots and not self.part_tasks and not self.fallbacks:
            return
        with contextlib.ExitStack() as stack:
            with self.progress.paused():  # no drawing thread inside a write when forking
                pool = stack.enter_context(
                    WorkerPool(
                        len(os.sched_getaffinity(0)),
                        self.options.fetch.connections,
                        self._worker_setup,
                        self._work,
                        lambda: self.content_fetcher.bytes_transferred,
                    )
                )
            self._pool = pool
            stack.callback(self._keep_worker_bytes, pool)
            # The deltas first: their parts and fallbacks (a part at a time per task),
            # then the walk, which finds what they made and fetches only what is
            # still missing (nothing, from a complete delta: no 2022.7 scan race).
            for task in self.part_tasks:
                pool.submit("part", [task])
            self.progress.add_total(len(self.fallbacks))
            for i in range(0, len(self.fallbacks), _BATCH):
                pool.submit("file", self.fallbacks[i : i + _BATCH])
            self._drain(pool)
            self._visit([(tree, meta, "/", label) for tree, meta, label in self.roots])
            self._drain(pool)

    def _drain(self, pool: WorkerPool) -> None:
        failure: BaseException | None = None
        for result in pool.results():
            try:
                self._handle(result)
            except (SysrootError, OSError) as e:
                if failure is None:
                    failure = e  # the others still report what they completed
                    pool.stop()
        if failure is not None:
            raise failure

    def _keep_worker_bytes(self, pool: WorkerPool) -> None:
        self.worker_bytes = pool.received()
        self._pool = None

    def _visit(self, dirs: list[tuple[str, str, str, str]]) -> None:
        """Walk (tree, meta, path, label): directories stored already at once, the
        others once their metadata arrives."""
        want_meta = []
        while dirs:
            tree, meta, path, label = dirs.pop()
            where = f"{path} of {label}"
            if meta not in self.seen_metas:
                self.seen_metas.add(meta)
                if self.tx.has_object(ObjectType.DIR_META, meta) or self._cached(
                    ObjectType.DIR_META, meta, where
                ):
                    self._check_dirmeta(
                        meta, self.tx.read_metadata(ObjectType.DIR_META, meta), where
                    )
                else:
                    want_meta.append((ObjectType.DIR_META, meta, where))
            if tree in self.seen_trees:
                continue
            self.seen_trees.add(tree)
            if self.tx.has_object(ObjectType.DIR_TREE, tree) or self._cached(
                ObjectType.DIR_TREE, tree, where
            ):
                data = self.tx.read_metadata(ObjectType.DIR_TREE, tree)
                dirs.extend(self._expand(tree, data, path, label))
            else:
                self.tree_places[tree] = (path, label)
                want_meta.append((ObjectType.DIR_TREE, tree, where))
        self.progress.add_total(len(want_meta))
        pool = self._pool
        assert pool is not None  # the walk runs inside _walk(), the workers started
        for i in range(0, len(want_meta), _BATCH):
            pool.submit("meta", want_meta[i : i + _BATCH], urgent=True)
        for i in range(0, len(self.want_files), _BATCH):
            pool.submit("file", self.want_files[i : i + _BATCH])
        self.want_files = []

    def _check_dirmeta(self, checksum: str, data: bytes, where: str) -> None:
        parse_object(DirMeta.parse, ObjectType.DIR_META, checksum, data, where)

    def _expand(
        self, tree: str, data: bytes, path: str, label: str
    ) -> list[tuple[str, str, str, str]]:
        """The subdirectories of a dirtree; its files go to the content queue."""
        dirtree = parse_object(DirTree.parse, ObjectType.DIR_TREE, tree, data, f"{path} of {label}")
        prefix = path.rstrip("/") + "/"
        for name, checksum in dirtree.files:
            self._content(checksum, f"{prefix}{name} of {label}")
        return [(subtree, submeta, prefix + name, label) for name, subtree, submeta in dirtree.dirs]

    def _handle(self, result: TaskResult) -> None:
        """Keep what a task completed, then raise what stopped it."""
        if result.kind == "part":
            for (to, index, _), _size in zip(result.items, result.outputs, strict=False):
                self._record_part(to, index)
        elif result.kind == "meta":
            for (objtype, checksum, where), data in zip(result.items, result.outputs, strict=False):
                self._store_metadata(objtype, checksum, data, where)
                if objtype is ObjectType.DIR_META:
                    self._check_dirmeta(checksum, data, where)
                else:
                    path, label = self.tree_places.pop(checksum)
                    self._visit(self._expand(checksum, data, path, label))
        else:
            for (checksum, _), size in zip(result.items, result.outputs, strict=False):
                if self.tx.record_staged(checksum, ObjectType.FILE):
                    self.content += 1
                    self.content_bytes += size
                self.progress.add_fetched()
        if result.error is not None:
            raise result.error

    # ------------------------------------------------------------ content
    def _content(self, checksum: str, where: str) -> None:
        if checksum in self.seen_files:
            return
        self.seen_files.add(checksum)
        if self.tx.has_object(ObjectType.FILE, checksum) or self._cached(
            ObjectType.FILE, checksum, where
        ):
            return
        self.progress.add_total()
        self.want_files.append((checksum, where))

    # ------------------------------------------------------------ in the workers
    def _worker_setup(self) -> None:
        # connections of its own (the parent's are copies of the parent's sockets)
        self.content_fetcher = self.content_fetcher.reopen()
        self.tx.in_forked_child()

    def _work(self, kind: str, item: tuple[Any, ...]) -> object:
        """In a worker: item is (ObjectType, checksum, where) for "meta", (checksum,
        where) for "file"."""
        if kind == "meta":
            objtype, checksum, _ = item
            return self.content_fetcher.get(self._object_path(objtype, checksum))
        if kind == "part":
            return self._fetch_part(*item)
        return self._fetch_content(*item)

    def _fetch_content(self, checksum: str, where: str) -> int:
        """Fetch, verify and stage one content object; its uncompressed size."""
        path = self._object_path(ObjectType.FILE, checksum)
        try:
            # again from the start when the body is cut off midway; its size is bounded
            # by what its header declares (filez)
            return self.content_fetcher.retrying(
                path, lambda chunks: self._store_content(checksum, chunks, where)
            )
        except CorruptObjectError as e:
            raise CorruptObjectError(
                checksum, "file", f"{e.problem} ({where}, from {self.content_url}{path})"
            ) from None
        except OSError as e:
            raise SysrootError(
                f"Writing content object {checksum} ({where}) to "
                f"{self.repo.path}: {e.strerror or e}"
            ) from None

    def _check_header(self, header: FileHeader, checksum: str, where: str) -> None:
        if self.check_bareuseronly:
            check_bareuseronly(header, checksum, where)

    def _store_content(self, checksum: str, chunks: Iterator[bytes], where: str) -> int:
        if self.raw_content:
            sizes: list[int] = []
            self.tx.write_raw(
                checksum,
                ObjectType.FILE,
                filez.verified_raw(
                    chunks, checksum, lambda h: self._check_header(h, checksum, where), sizes.append
                ),
            )
            return sizes[0] if sizes else 0
        header, payload = filez.decode(chunks, checksum)
        self._check_header(header, checksum, where)
        if header.is_symlink:
            for _ in payload:  # read to the end, so a broken stream is still noticed
                pass
            self.tx.write_content(header, None, expected=checksum)
            return 0
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in payload:
                size += len(chunk)
                yield chunk

        self.tx.write_content(header, counted(), expected=checksum)
        return size

    # ------------------------------------------------------------ the pull
    def run(self, refs: Sequence[str], overrides: Sequence[str | None] = ()) -> PullResult:
        """overrides: parallel to refs, the commit of each REF@CHECKSUM, else None."""
        start = time.monotonic()
        summary, sig = self._summary()
        indexed = self._remote_config()
        targets, names = self._resolve(refs, overrides, summary)
        mirrored = mirror_collection(self.repo, summary) if self.options.mirror else None
        self.rollback = _rollback_check(self.repo, self.options, names)
        if self.use_deltas:
            self._plan_deltas(targets, names, summary, indexed)
        if self.options.dry_run:  # nothing stored, no ref moved
            return PullResult(
                0, 0, 0, self._received(), time.monotonic() - start, dry_run=self._dry_run()
            )
        failure: BaseException | None = None
        try:
            with self.repo.transaction() as tx, self.progress:
                self._tx = tx
                try:
                    for (_, checksum), name in zip(targets, names, strict=True):
                        self._commit_chain(checksum, None if is_checksum(name) else name)
                    self._walk()  # returns or raises once the workers have stopped
                except (SysrootError, OSError, KeyboardInterrupt) as e:
                    # The transaction still publishes what was verified, after ^C too
                    # (nothing of it is under a ref): the next pull goes on from there.
                    failure = e
                else:
                    for dest, checksum in targets:
                        if dest is not None and self.options.update_refs:
                            _set_ref(tx, dest, checksum, mirrored)
        except (SysrootError, OSError):
            if failure is None:
                raise
        if failure is not None:
            if isinstance(failure, KeyboardInterrupt):
                raise failure
            if isinstance(failure, OSError):
                raise SysrootError(
                    f"Pull into {self.repo.path} failed: {failure.strerror or failure}"
                ) from None
            raise failure
        if not self.options.commit_metadata_only:
            unmark_partial(self.repo, self.partial)  # the commits are complete now
        if self.options.mirror and not refs:
            _store_summary(self.repo, summary, sig)
        return PullResult(
            self.metadata,
            self.content,
            self.content_bytes,
            self._received(),
            time.monotonic() - start,
            {d: c for d, c in targets if d is not None},
            delta_parts=self.delta_parts,
        )
