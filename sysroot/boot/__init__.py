"""What the boot loader reads: BLS entry files, kernel arguments, finding a tree's kernel,
initramfs and devicetree, and the boot-loader back ends as objects (`backends.py`, named by
`BootloaderKind` as ostree's `sysroot.bootloader` key names them), each owning its writer,
how it reads entries and serials, its leftovers and its part of the boot invariant.

Knows files and directories, not repositories: may import only `util` (and `errors`).
"""
