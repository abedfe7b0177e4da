"""Deployments in libostree's sysroot layout, read bottom-up:

layout and the staged record (`stagedrecord.py`) -> the state, a read-only snapshot
(`state.py`) -> the boot swap writers and the invariant -> deploy, the `/etc` merge and
cleanup, the tries boot counting arms (`counttries.py`, from greenboot.conf) and the
record of commits that failed to boot (`failedcommits.py`) -> the admin transaction
(`transaction.py`: lock, repo, undo, the one write every boot change goes through) ->
the operations that take it (`operations.py`, `staged.py`, `upgrade.py`) ->
`admin.Sysroot`, a thin front.

May import `util`, `formats`, `store`, `pull`, `sign` and `boot`; never `health` or `cli`.
Inside the package imports go only down that list (`tests/test_layering.py`).
"""
