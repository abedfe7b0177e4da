"""The floor every other package stands on: the one door to child processes (`run.py`), the
one durable-write helper and file-system calls (`fsutil.py`), mounts, the journal, sizes as
ostree prints them (`units.py`).

Imports only the standard library, systemd-python and `sysroot.errors`.
"""
