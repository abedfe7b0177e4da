"""What sysroot takes from ostree's command line only to refuse it, and why.

Each key is a command path, with an option where only the option is refused. The
README lists these (tests/cli/test_ostree_surface.py checks that the list, the README
and the parser agree, and that each refusal is one error line).
"""

from __future__ import annotations

from sysroot.errors import UsageError

_NO_SELINUX = "sysroot does no SELinux labelling (label the tree with setfiles or restorecon)"
_NO_COLLECTIONS = "collections (collection IDs, peers on the LAN or a USB drive) are not supported"

REFUSED: dict[str, str] = {
    "admin deploy --overlay-initrd": "initramfs overlays are not supported: build them into the "
    "commit's initramfs",
    "admin instutil grub2-generate": "sysroot's grub2 back end writes grub.cfg itself, "
    "from the deployments (it is no grub2-mkconfig script)",
    "admin unlock": "an overlay on the running system's /usr is not supported: deploy a new "
    "commit instead",
    "checkout --selinux-policy": _NO_SELINUX,
    "checkout --selinux-prefix": _NO_SELINUX,
    "commit --selinux-policy": _NO_SELINUX,
    "commit --selinux-policy-from-base": _NO_SELINUX,
    "create-usb": _NO_COLLECTIONS,
    "find-remotes": _NO_COLLECTIONS,
    "pull --subpath": "pulling part of a tree is not supported: pull the whole commit",
    "pull-local --require-static-deltas": "local pulls copy objects; there are no deltas",
}


def refusal(key: str) -> UsageError:
    """The error for REFUSED[key], in one line: `OPTION: reason` or `COMMAND: reason`."""
    name = key.split()[-1] if key.split()[-1].startswith("-") else key
    return UsageError(f"{name}: {REFUSED[key]}")
