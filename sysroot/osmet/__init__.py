"""osmet: a metal disk image packed against the OSTree repository it was made from.

coreos-installer's file format (formats/osmet.py): the image minus every byte range
that is a copy of a content object, xz-compressed, plus the table object -> extents.
pack.py makes one from an image or disk, unpack.py makes the image again from it and
a repository, target.py writes that to a file or a disk, select.py picks the file
that fits a disk.
"""
