"""The journal records of pulls: MESSAGE_ID=PULL_ID, one per ref a pull moved (so
`journalctl MESSAGE_ID=... SYSROOT_REF=os/x86_64` is that branch's update history),
or one naming the error when a pull failed. Nothing is printed without a journal:
the command's own output already says what happened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sysroot.util import journal


def record_pull(
    source: str,
    refs: Mapping[str, str],
    *,
    bytes_transferred: int,
    objects: int,
    content_bytes: int,
) -> int:
    """One record per ref (destination ref -> commit) of a pull from source (a remote's
    name or a URL); a pull of commits by checksum moves no ref and gets one record.
    Returns how many records the journal took."""
    taken = 0
    for ref, commit in refs.items() or [(None, None)]:
        message = (
            f"Pulled {ref} from {source}: {commit}, {bytes_transferred} bytes transferred"
            if ref is not None
            else f"Pulled from {source}: {bytes_transferred} bytes transferred"
        )
        taken += journal.send(
            message,
            message_id=journal.PULL_ID,
            stderr=False,
            SYSROOT_REF=ref,
            SYSROOT_COMMIT=commit,
            SYSROOT_REMOTE=source,
            SYSROOT_RESULT="ok",
            SYSROOT_BYTES=bytes_transferred,
            SYSROOT_OBJECTS=objects,
            SYSROOT_CONTENT_BYTES=content_bytes,
        )
    return taken


def record_pull_failure(source: str, refs: Sequence[str], error: BaseException) -> bool:
    """One record of a pull that failed (refs: as asked for; none moved)."""
    return journal.send(
        f"Pull from {source} failed: {error}",
        priority=journal.ERR,
        message_id=journal.PULL_ID,
        stderr=False,
        SYSROOT_REMOTE=source,
        SYSROOT_REF=" ".join(refs) or None,
        SYSROOT_RESULT="failed",
        SYSROOT_ERROR=str(error),
    )
