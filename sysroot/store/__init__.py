"""The object store, bottom-up:

modes, lock, the free-space policy (`freespace.py`) and the transaction -> the repo
(`repo.py`: layout, config, reading objects and refs; `Repo.transaction()` writes) ->
what reads or writes through it: the tree reader (`tree.py`) and the checkout writer
(`checkout.py`), refs, remotes, commit (with `mtree.py`, `commitmods.py`,
`tarimport.py`), diff, the reachability walk, fsck, prune, summary, pull-local, the
deploy space check (`deployspace.py`).

May import only `formats`, `util` and `sysroot.errors`; never `sign`, `pull`, `boot`,
`deploy`, `health` or `cli`. Inside the package imports go downward, no circle, none
inside a function; the transaction names `Repo` for annotations only
(`tests/test_layering.py`).
"""
