"""Which scripts greenboot runs, and in what order.

greenboot (bash) lists a directory with `find DIR -name '*.sh' | sort` and runs each
hit as `bash FILE`. So: every name ending in ".sh", the executable bit does not matter,
subdirectories are searched too (find does not follow symlinked directories), and the
order is the byte order of the full paths (greenboot sets LC_ALL=C). A script of the
same name in /usr/lib/greenboot and /etc/greenboot runs twice, vendor first: /etc does
not mask /usr/lib (unlike systemd's drop-in directories). Files without ".sh" do not
run, even when executable (greenboot-rs also runs those; greenboot does not, and
`foo.sh.disabled` is how admins switch a check off).

One difference: a *directory* named "x.sh" is listed by find and fails under bash; we
leave it out with a warning instead of failing the boot on it.
"""

from __future__ import annotations

import os
import stat

from sysroot.health.model import Check, CheckKind

VENDOR_DIR = "usr/lib/greenboot"  # relative to the root: read-only /usr on ostree
ADMIN_DIR = "etc/greenboot"
BASE_DIRS = (VENDOR_DIR, ADMIN_DIR)


def check_dir(base: str, kind: CheckKind) -> str:
    return f"{base}/{kind.subdir()}"


def discover(root: str, reldir: str, kind: CheckKind, warnings: list[str]) -> list[Check]:
    """The scripts in root/reldir (relative paths), in greenboot's order. A missing
    directory holds none; one we cannot read is reported in warnings."""
    found: list[str] = []
    pending = [reldir]  # a stack, not recursion: a deep tree cannot exhaust Python's stack
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(os.path.join(root, current)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            warnings.append(f"/{current}: {e.strerror}; its scripts were not run")
            continue
        for entry in entries:
            rel = f"{current}/{entry.name}"
            if entry.name.endswith(".sh"):
                try:
                    target_is_dir = stat.S_ISDIR(os.stat(entry.path).st_mode)
                except OSError:
                    target_is_dir = False  # a dangling link fails under bash, as in greenboot
                if target_is_dir:
                    warnings.append(f"/{rel}: a directory, not a script; not run")
                else:
                    found.append(rel)
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
            except OSError:
                pass
    found.sort(key=os.fsencode)  # `sort` under LC_ALL=C: bytes
    return [Check(kind, path, os.path.basename(path)) for path in found]
