"""Boot counting from the running system: where the default's counting stands, a good
boot blessed, a bad one marked, and a fall-back made permanent.

Counting is armed by the writes themselves (transaction.counting_plan(), the back
ends' arm()); the boot loader counts the tries and falls back on its own. What is left
for userspace, each under the sysroot lock, for the health-check runner to call:

- bless(): the booted deployment is good; only when it is the counted default (after
  a fall-back the bad one must stay behind, so nothing changes then);
- mark_bad(): the booted counted default failed: the next boot falls back at once;
- make_fallback_permanent(): booted into the previous deployment because the new
  one ran out of tries: make the booted one the default as `admin rollback` would
  (the failed one stays, second) and record the failure in the failed one's origin
  (FAILED_GROUP: failed=TIME), for status.
mark_bad() and make_fallback_permanent() also record the failed commit in its
stateroot (failedcommits.py), which outlives the deployment: `admin upgrade` refuses
to deploy it again unless --allow-failed.
"""

from __future__ import annotations

import time

from sysroot.boot.backends import CountingState, CountPlan, CountStatus, deployment_key
from sysroot.deploy import deploy as dep
from sysroot.deploy import failedcommits
from sysroot.deploy.state import Deployment, SysrootState
from sysroot.deploy.transaction import Change, Transaction
from sysroot.errors import SysrootError
from sysroot.formats.keyfile import KeyFile

FAILED_GROUP = "sysroot-boot-counting"  # in the failed deployment's origin: failed=TIME


def key(d: Deployment) -> str:
    return deployment_key(d.osname, d.csum, d.deployserial)


def status(state: SysrootState) -> CountingState:
    """Where the counting of the live configuration's default stands."""
    return state.backend.counting_state(state.layout)


def _booted(state: SysrootState, booted: Deployment | None, what: str) -> Deployment:
    """The booted deployment (booted: the caller's, for a sysroot that is not /)."""
    d = booted if booted is not None else state.booted
    if d is None:
        raise SysrootError(f"Cannot {what}: not booted into a deployment of this sysroot")
    return d


def bless(tx: Transaction, booted: Deployment | None = None) -> bool:
    """Mark the booted deployment good. True when its counting ended now."""
    state = tx.load()
    return state.backend.bless(tx.layout, key(_booted(state, booted, "bless the boot")))


def mark_bad(tx: Transaction, booted: Deployment | None = None) -> bool:
    """Mark the booted, counted default bad. True when the next boot now falls back."""
    state = tx.load()
    d = _booted(state, booted, "mark the boot bad")
    if not state.backend.mark_bad(tx.layout, key(d)):
        return False
    # the next boot falls back: upgrade must not bring this commit back unasked
    failedcommits.record(tx.layout, d.osname, d.csum, fsync=tx.repo.fsync_enabled)
    return True


def make_fallback_permanent(tx: Transaction, booted: Deployment | None = None) -> Change | None:
    """After a fall-back (the counted default ran out of tries and the boot loader
    booted the previous deployment): the booted one becomes the default, the failed
    one follows it, and its origin records the failure. None when nothing fell back
    (or the booted one is the failed one)."""
    state = tx.load()
    d = _booted(state, booted, "make the fall-back permanent")
    counting = status(state)
    if counting.status is not CountStatus.FELL_BACK or counting.deployment == key(d):
        return None
    written = state.without_staged()
    failed = next((x for x in written.deployments if key(x) == counting.deployment), None)
    if failed is None or not any(x.identity == d.identity for x in written.deployments):
        return None
    origin = failed.origin or KeyFile()
    origin.set(FAILED_GROUP, "failed", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    dep.write_origin(tx.layout.origin_path(failed.osname, failed.csum, failed.deployserial), origin)
    # the origin goes with the deployment (cleanup); the stateroot's record stays
    failedcommits.record(tx.layout, failed.osname, failed.csum, fsync=tx.repo.fsync_enabled)
    # as `admin rollback`: the booted one first, the others in their order
    new = [d] + [x for x in state.deployments if x.identity != d.identity]
    # the booted one runs: known to boot, not counted again
    change = tx.apply(state, new, counting=CountPlan.CLEAR)
    change.deployment = d
    return change
