"""Byte formats, with no notion of a repository on disk: GVariant binary (`gvariant.py`)
and text (`gvariant_text.py`), the OSTree objects (`objects.py`: commit, dirtree,
dirmeta, file header, checksums), the fast dirtree decoder of the checkout's hot loop
(`dirtree.py`), GLib's hash-table order (`ghash.py`), key files (`keyfile.py`), shell
variable assignments read without a shell (`shellvars.py`: greenboot.conf), the
`ostree.sizes` commit metadata (`sizes.py`), coreos-installer's osmet file header
and body (`osmet.py`) and FAT12/16/32 file systems read in user space (`fat.py`: where
each file of an ESP lies, for osmet).

May import only the standard library, `sysroot.errors` and `util`; never `store` or
anything above it. Inside the package imports go downward, no circle, none inside a
function (`tests/test_layering.py`).
"""
