"""`admin --print-current-dir`: the first deployment's directory, as ostree prints it."""

from __future__ import annotations

from tests.helpers.sysroots import OSNAME, make_os_tree


def test_print_current_dir_as_ostree(make_sysroot, tmp_path, ostree, sysroot):
    sr = make_sysroot("sr", by="ostree")
    a = ostree("admin", f"--sysroot={sr.path}", "--print-current-dir", check=False)
    b = sysroot("admin", f"--sysroot={sr.path}", "--print-current-dir", check=False)
    assert a.returncode == b.returncode == 1
    assert b.stderr == b"error: Unable to find a deployment in sysroot\n"
    assert a.stderr.endswith(b.stderr)
    sr.commit(make_os_tree(tmp_path / "t"))
    sr.oadmin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    sr.oadmin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    a = ostree("admin", "--print-current-dir", f"--sysroot={sr.path}")
    b = sysroot("admin", "--print-current-dir", f"--sysroot={sr.path}")
    assert b.stdout == a.stdout and a.stdout.decode().strip().endswith(".1")
    # a relative --sysroot still prints an absolute path
    b = sysroot("admin", f"--sysroot={sr.path.name}", "--print-current-dir", cwd=sr.path.parent)
    assert b.stdout == a.stdout
