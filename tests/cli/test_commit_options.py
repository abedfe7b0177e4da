"""`commit`'s options beyond the basics, against the oracle: the same input to `ostree`
and `sysroot` gives the same stdout, stderr, exit code and commit checksum, and a
refused command leaves the repository as it was."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sysroot.cli.refusals import REFUSED
from sysroot.formats import gvariant
from sysroot.formats.ghash import GHashTableModel, ghash_order
from sysroot.util.run import clean_env
from tests.conftest import one_error_line
from tests.helpers.keys import b64, gpg_keys, new_ed25519_key

T = "--timestamp=@1000"


def _tree(root: Path) -> Path:
    """Files, an executable, a nested directory, a symlink and two hard links."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "a").write_text("a\n")
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    os.chmod(root / "usr/bin/tool", 0o755)
    (root / "etc/conf").write_text("x=1\n")
    (root / "etc/link").symlink_to("conf")
    (root / "big").write_bytes(bytes(range(256)) * 300)
    os.link(root / "a", root / "a2")
    return root


def _repos(tmp_path, ostree, mode="archive"):
    repos = []
    for name in ("theirs", "ours"):
        repo = tmp_path / name
        ostree("init", f"--repo={repo}", f"--mode={mode}")
        repos.append(repo)
    return repos


def _state(repo: Path) -> dict[str, str]:
    """Every file of the repository but its lock and temp dirs, with a digest."""
    found = {}
    for path in sorted(repo.rglob("*")):
        rel = str(path.relative_to(repo))
        if path.is_file() and not rel.startswith("tmp") and rel != ".lock":
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _both(ostree, sysroot, theirs, ours, *args, cwd=None, env=None):
    a = ostree(f"--repo={theirs}", "commit", *args, check=False, cwd=cwd, env=env)
    b = sysroot(f"--repo={ours}", "commit", *args, check=False, cwd=cwd, env=env)
    assert (b.returncode, b.stdout, b.stderr.decode()) == (
        a.returncode,
        a.stdout,
        a.stderr.decode(),
    )
    return a, b


def _same_refs(theirs: Path, ours: Path) -> None:
    assert _refs(ours) == _refs(theirs)


def _refs(repo: Path) -> dict[str, str]:
    heads = repo / "refs/heads"
    return {str(p.relative_to(heads)): p.read_text() for p in heads.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ --base


def test_base_layers_like_ostree(ostree, sysroot, tmp_path):
    theirs, ours = _repos(tmp_path, ostree)
    base_tree = _tree(tmp_path / "base")
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc/conf").write_text("x=2\n")
    (top / "new").write_text("new\n")
    for repo in (theirs, ours):
        ostree(f"--repo={repo}", "commit", "-b", "base", T, base_tree)
    # with a PATH, and with none (the current directory), and with a layer of modifiers
    # that must not touch the base (its usr/bin/tool keeps its write bits)
    _both(ostree, sysroot, theirs, ours, "-b", "x", T, "--base=base", top)
    _both(ostree, sysroot, theirs, ours, "-b", "y", T, "--base=base", cwd=top)
    _both(
        ostree, sysroot, theirs, ours, "-b", "z", T, "--base=base", "--owner-uid=7",
        "--mode-ro-executables", top,
    )  # fmt: skip
    _same_refs(theirs, ours)


@pytest.mark.parametrize(
    "extra",
    [
        ["--base=nosuchref"],
        ["--base=" + "0" * 64],
        # the statoverride does not see the base's files: /a is unmatched
        ["--base=base", "--statoverride=SO"],
    ],
)
def test_base_errors_like_ostree(ostree, sysroot, tmp_path, extra):
    theirs, ours = _repos(tmp_path, ostree)
    base_tree = _tree(tmp_path / "base")
    top = tmp_path / "top"
    top.mkdir()
    so = tmp_path / "so"
    so.write_text("2048 /a\n")
    for repo in (theirs, ours):
        ostree(f"--repo={repo}", "commit", "-b", "base", T, base_tree)
    before = _state(ours)
    extra = [e.replace("SO", str(so)) for e in extra]
    a, b = _both(ostree, sysroot, theirs, ours, "-b", "x", T, *extra, top)
    assert a.returncode != 0
    assert _state(ours) == before


# ------------------------------------------------------------------ --statoverride


STATOVERRIDES = [
    "2048 /a\n",  # setgid (2048 is decimal, as ostree reads it)
    "=420 /usr/bin/tool\n",  # an override keeps the file type
    "0x10 /etc/conf\n\n",  # hex, and an empty line
    "16 /usr\n=448 /etc\n",  # a subdirectory: the addition is used up, the override applies
    "=493 /\n",  # the root
    "16 /a\n=384 /a2\n",  # two names of one inode get different modes
    "1 /etc/link\n",
    "2048 /nosuch\n",  # unmatched: an error
    "2048 /a\n16 /nosuch\n1 /nosuch2\n4 /etc\n",  # several unmatched, in ostree's order
    "2048 /a\n1 /z\n1 /m\n1 /nosuch\n1 /b9\n1 /q\n",  # GLib's order, not sorted
    "=420 /nosuch\n",  # an unused override is no error
    "2048/a\n",  # no space
    "nonsense /a\n",  # strtod reads nothing: adds 0
]


@pytest.mark.parametrize("content", STATOVERRIDES)
def test_statoverride_like_ostree(ostree, sysroot, tmp_path, content):
    _rules_file_like_ostree(ostree, sysroot, tmp_path, "--statoverride", content)


def _rules_file_like_ostree(ostree, sysroot, tmp_path, option: str, content: str) -> None:
    """A commit with option=FILE holding content: the same result or the same refusal
    (and then the repository unchanged)."""
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    rules = tmp_path / "rules"
    rules.write_text(content)
    before = _state(ours)
    a, _ = _both(ostree, sysroot, theirs, ours, "-b", "x", T, f"{option}={rules}", tree)
    if a.returncode != 0:
        assert _state(ours) == before
    _same_refs(theirs, ours)


@pytest.mark.parametrize("kind", ["ref", "tar"])
def test_statoverride_and_skip_list_on_ref_and_tar_layers(ostree, sysroot, tmp_path, kind):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    so = tmp_path / "so"
    so.write_text("2048 /a\n16 /\n16 /usr\n=448 /etc\n")
    skip = tmp_path / "skip"
    skip.write_text("/big\n")
    if kind == "tar":
        tarball = tmp_path / "t.tar"
        with tarfile.open(tarball, "w") as tf:
            tf.add(tree, arcname=".")
        layer = f"--tree=tar={tarball}"
    else:
        for repo in (theirs, ours):
            ostree(f"--repo={repo}", "commit", "-b", "src", T, tree)
        layer = "--tree=ref=src"
    _both(
        ostree, sysroot, theirs, ours, "-b", "x", T, f"--statoverride={so}",
        f"--skip-list={skip}", layer,
    )  # fmt: skip
    _same_refs(theirs, ours)


# ------------------------------------------------------------------ --skip-list

SKIP_LISTS = [
    "/a\n",
    "/usr\n",  # a directory and all in it
    "/etc/link\n/a2\n",
    "/usr\n/usr/bin/tool\n",  # under a skipped directory: never seen, so unmatched
    "/nosuch\n/a\n/other\n",
    "/z\n/etc\n/m\n/nosuch\n/b9\n/q\n",  # GLib's order, not sorted
    "a\n",  # not a path from the root: unmatched
    "/a \n",  # trailing space is part of the name
]


@pytest.mark.parametrize("content", SKIP_LISTS)
def test_skip_list_like_ostree(ostree, sysroot, tmp_path, content):
    _rules_file_like_ostree(ostree, sysroot, tmp_path, "--skip-list", content)


def test_unmatched_order_after_many_matches(ostree, sysroot, tmp_path):
    """Matched entries leave the table (it may shrink): the rest in ostree's order."""
    theirs, ours = _repos(tmp_path, ostree)
    tree = tmp_path / "tree"
    tree.mkdir()
    names = [f"f{i:02}" for i in range(40)]
    for name in names:
        (tree / name).write_text(name)
    skip = tmp_path / "skip"
    skip.write_text("".join(f"/{n}\n" for n in names + ["x1", "y22", "zz", "q0", "b", "k7"]))
    so = tmp_path / "so"
    so.write_text("".join(f"1 /{n}\n" for n in names[:30] + ["x1", "y22", "zz", "q0"]))
    for opt in (f"--skip-list={skip}", f"--statoverride={so}"):
        a, _ = _both(ostree, sysroot, theirs, ours, "-b", "x", T, opt, tree)
        assert a.returncode == 1


@pytest.mark.parametrize("option", ["--statoverride", "--skip-list"])
def test_rule_file_errors_like_ostree(ostree, sysroot, tmp_path, option):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    before = _state(ours)
    a, b = _both(ostree, sysroot, theirs, ours, "-b", "x", T, f"{option}={tmp_path}/no", tree)
    assert a.returncode == 1
    one_error_line(b)
    assert _state(ours) == before


# ------------------------------------------------------------------ --generate-sizes


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_generate_sizes_like_ostree(ostree, sysroot, tmp_path, mode):
    theirs, ours = _repos(tmp_path, ostree, mode)
    tree = _tree(tmp_path / "tree")
    args = ["-b", "x", T, "--generate-sizes"]
    a, b = _both(ostree, sysroot, theirs, ours, *args, tree)
    # again: every object is already stored, and still listed
    _both(ostree, sysroot, theirs, ours, "-b", "y", T, "--generate-sizes", "--bootable", tree)
    _both(ostree, sysroot, theirs, ours, "-b", "z", T, "--generate-sizes", tree)
    raw = ostree.out(f"--repo={ours}", "show", "--raw", "x")
    assert raw == ostree.out(f"--repo={theirs}", "show", "--raw", "x")
    assert ("ostree.sizes" in raw) == (mode == "archive")


# ------------------------------------------------------------------ detached metadata


def _commitmeta(repo: Path, checksum: str) -> bytes:
    return (repo / f"objects/{checksum[:2]}/{checksum[2:]}.commitmeta").read_bytes()


@pytest.mark.parametrize(
    "strings",
    [
        ["k=v"],
        ["b=1", "a=2", "b=3", "c=", "=empty-key"],
        [f"key{i}=value{i}" for i in range(20)],
        ["noequals"],
    ],
)
def test_detached_metadata_strings_like_ostree(ostree, sysroot, tmp_path, strings):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    before = _state(ours)
    opts = [f"--add-detached-metadata-string={s}" for s in strings]
    a, _ = _both(ostree, sysroot, theirs, ours, "-b", "x", T, *opts, tree)
    if a.returncode:
        assert _state(ours) == before
        return
    checksum = a.stdout.decode().strip()
    assert _commitmeta(ours, checksum) == _commitmeta(theirs, checksum)


def test_sign_ed25519_at_commit_time(ostree, sysroot, tmp_path):
    """Debian's ostree has no ed25519 (it says "not implemented"): the oracle is our
    `sign` command, byte for byte, on the commit ostree writes without --sign."""
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    (k1, _), (k2, _) = new_ed25519_key(), new_ed25519_key()
    plain = ostree.out(f"--repo={theirs}", "commit", "-b", "x", T, tree)
    sysroot("sign", f"--repo={theirs}", plain, b64(k1), b64(k2))
    signed = sysroot.out(
        f"--repo={ours}", "commit", "-b", "x", T, f"--sign={b64(k1)}", f"--sign={b64(k2)}", tree
    )
    assert signed == plain
    assert _commitmeta(ours, signed) == _commitmeta(theirs, plain)
    sysroot("sign", f"--repo={ours}", "--verify", signed, b64(k2[32:]))
    # and independently of our code: both signatures over the exact .commit bytes
    meta = gvariant.decode("a{sv}", _commitmeta(ours, signed))
    sigs = [bytes(s) for s in dict(meta)["ostree.sign.ed25519"].value]
    data = (ours / f"objects/{signed[:2]}/{signed[2:]}.commit").read_bytes()
    for sig, key in zip(sigs, (k1, k2), strict=True):
        Ed25519PublicKey.from_public_bytes(key[32:]).verify(sig, data)


@pytest.mark.parametrize(
    "extra", [["--sign=notakey"], ["--sign-type=dummy", "--sign=x"], ["--sign=", "--orphan"]]
)
def test_sign_refusals_change_nothing(ostree, sysroot, tmp_path, extra):
    _, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    before = _state(ours)
    proc = sysroot(f"--repo={ours}", "commit", "-b", "x", T, *extra, tree, check=False)
    assert one_error_line(proc).startswith("error: ")
    assert _state(ours) == before


def test_gpg_sign_at_commit_time_verifies_in_ostree(ostree, sysroot, tmp_path):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    (tmp_path / "keys").mkdir()
    with gpg_keys(tmp_path / "keys", "alice", "bob") as (alice, bob):
        checksum = sysroot.out(
            f"--repo={ours}", "commit", "-b", "x", T, tree,
            f"--gpg-sign={alice.long_id}", f"--gpg-homedir={alice.home}",
            "--add-detached-metadata-string=note=kept",
        )  # fmt: skip
        assert checksum == ostree.out(f"--repo={theirs}", "commit", "-b", "x", T, tree)
        ostree("remote", "add", f"--repo={ours}", "self", f"file://{ours}")
        ostree("remote", "gpg-import", f"--repo={ours}", "self", "-k", alice.keyring)
        shown = ostree.out("show", f"--repo={ours}", "--gpg-verify-remote=self", checksum)
        assert "Good signature" in shown
        note = ostree.out("show", f"--repo={ours}", "--print-detached-metadata-key=note", checksum)
        assert note == "'kept'"
        # a key gpg does not have: refused, and nothing written
        before = _state(theirs)
        proc = sysroot(
            f"--repo={theirs}", "commit", "-b", "y", T, tree,
            f"--gpg-sign={bob.long_id}", f"--gpg-homedir={alice.home}", check=False,
        )  # fmt: skip
        one_error_line(proc)
        assert _state(theirs) == before


# ------------------------------------------------------------------ modes, fsync, speedups


@pytest.mark.parametrize(
    "extra",
    [
        ["--mode-ro-executables"],
        ["--mode-ro-executables", "--canonical-permissions"],
        ["--link-checkout-speedup"],
        ["-I"],
        ["--devino-canonical", "--link-checkout-speedup"],
        ["--fsync=no"],
        ["--disable-fsync"],
        ["--fsync=NONE"],
        ["--fsync=yes"],
        ["--fsync=1"],
        ["--fsync=maybe"],
        ["--fsync="],
    ],
)
def test_options_give_ostrees_commit(ostree, sysroot, tmp_path, extra):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    (tree / "usr/bin/ro").write_text("ro\n")
    os.chmod(tree / "usr/bin/ro", 0o711)
    before = _state(ours)
    a, _ = _both(ostree, sysroot, theirs, ours, "-b", "x", T, *extra, tree)
    if a.returncode:
        assert _state(ours) == before
    _same_refs(theirs, ours)


def test_mode_ro_executables_with_statoverride(ostree, sysroot, tmp_path):
    """ostree drops the write bits first, then applies the statoverride."""
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    so = tmp_path / "so"
    so.write_text("=511 /usr/bin/tool\n")
    args = ["-b", "x", T, "--mode-ro-executables", f"--statoverride={so}", tree]
    _both(ostree, sysroot, theirs, ours, *args)
    assert "-00777" in ostree.out(f"--repo={ours}", "ls", "x", "/usr/bin/tool")


# ------------------------------------------------------------------ --editor

EDITOR = """#!/bin/sh
cat "$1" > "$(dirname "$0")/seen"
printf '%s' "$MESSAGE" > "$1"
"""


@pytest.fixture
def editor(tmp_path):
    """The scripted editor (EDITOR above) in a directory of its own, where it leaves
    what it saw."""
    path = tmp_path / "ed/editor"
    path.parent.mkdir()
    path.write_text(EDITOR)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "message",
    [
        "Subject line  \n\n\nbody 1\n# comment\n\nbody 2\n\n\n",
        "\n# only\n\nSubject\n",
        "# nothing\n\n",
        "",
    ],
)
def test_editor_like_ostree(ostree, sysroot, tmp_path, editor, message):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    env = {"EDITOR": str(editor), "TERM": "dumb", "MESSAGE": message}
    seen = []
    before = _state(ours)
    for tool, repo in ((ostree, theirs), (sysroot, ours)):
        proc = tool(
            f"--repo={repo}", "commit", "-e", "-b", "x", "-s", "given", "-m", "ignored", T, tree,
            check=False, env=env,
        )  # fmt: skip
        seen.append(
            (proc.returncode, proc.stdout, proc.stderr, (editor.parent / "seen").read_text())
        )
    assert seen[1] == seen[0]
    if seen[0][0]:
        assert _state(ours) == before


@pytest.mark.parametrize(
    "env",
    [
        {"EDITOR": "false", "TERM": "dumb"},
        {"EDITOR": None, "VISUAL": "false", "OSTREE_EDITOR": None, "TERM": "dumb"},
    ],
)
def test_editor_failures_like_ostree(ostree, sysroot, tmp_path, env):
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    before = _state(ours)
    a, b = _both(ostree, sysroot, theirs, ours, "-e", "-b", "x", T, tree, env=env)
    assert a.returncode == 1
    assert _state(ours) == before


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("option", ["--selinux-policy=/", "--selinux-policy-from-base", "-P"])
def test_selinux_options_are_refused_with_one_line(ostree, sysroot, tmp_path, option):
    _, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    before = _state(ours)
    proc = sysroot(f"--repo={ours}", "commit", "-b", "x", T, option, tree, check=False)
    line = one_error_line(proc)
    assert proc.returncode == 2
    assert "SELinux" in line
    assert _state(ours) == before


def test_refused_list_names_only_ostree_options(ostree):
    help_text = ostree.out("commit", "--help")
    for key in REFUSED:
        if key.startswith("commit "):
            option = key.split()[-1]
            assert f"{option}=" in help_text or f"{option} " in help_text


@pytest.mark.unit
def test_hash_table_model_without_removals_is_ghash_order():
    keys = [f"/path/{i * 7919 % 1000}" for i in range(300)]
    model = GHashTableModel()
    for key in keys:
        model.insert(key)
    assert model.keys() == ghash_order(keys)


# ------------------------------------------------------------------ --table-output


@pytest.mark.parametrize("mode", ["archive", "bare-user"])
def test_table_output_like_ostree(ostree, sysroot, tmp_path, mode):
    """Totals count every write (hard links' names included), Written the new ones."""
    theirs, ours = _repos(tmp_path, ostree, mode)
    tree = _tree(tmp_path / "tree")
    tarball = tmp_path / "t.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(tree, arcname=".")
    for args in (
        ["-b", "x", T, tree],  # all new
        ["-b", "x", T, tree],  # all present: only the commit is written
        ["-b", "y", "--timestamp=@2000", "--owner-uid=5", tree],  # new headers
        ["-b", "z", T, "--tree=ref=x"],  # a stored tree: nothing rewritten
        ["-b", "t", T, f"--tree=tar={tarball}"],
    ):
        _both(ostree, sysroot, theirs, ours, "--table-output", *args)


def test_table_output_when_unchanged(sysroot, tmp_path, ostree):
    """ostree prints uninitialized counters here (a bug); sysroot prints zeros."""
    _, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    first = sysroot.out(f"--repo={ours}", "commit", "-b", "x", T, tree)
    out = sysroot.out(
        f"--repo={ours}", "commit", "-b", "x", T, "--skip-if-unchanged", "--table-output", tree
    )
    lines = out.splitlines()
    assert lines[0] == f"Commit: {first}"
    assert all(line.endswith(": 0") for line in lines[1:]) and len(lines) == 7


# ------------------------------------------------------------------ --tar-pathname-filter


@pytest.mark.parametrize(
    "spec",
    [
        "^usr,lib",
        "^\\./usr,lib",  # the "./" is gone before the filter sees the path
        "bin/x$,bin/z",  # the hard link to x follows it
        "bin$,sbin",  # a directory's path ends in "/": no match
        "bin/$,sbin/",
        "(u)(s)r,\\2\\1\\0",
        "(?P<top>usr),\\g<top>2\\g<1>",
        "s,\\t",
        "usr/bin/(.),opt/\\1",  # a parent that is not there: ostree's error
        "nocomma",
        "",
    ],
)
def test_tar_pathname_filter_like_ostree(ostree, sysroot, tmp_path, spec):
    theirs, ours = _repos(tmp_path, ostree)
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/x").write_text("x\n")
    os.link(tree / "usr/bin/x", tree / "usr/bin/y")
    tarball = tmp_path / "t.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(tree, arcname=".")
    before = _state(ours)
    args = ["-b", "x", T, f"--tree=tar={tarball}", f"--tar-pathname-filter={spec}"]
    if spec.endswith(("sbin/", "opt/\\1")):
        # a missing parent: sysroot's message says more than ostree's; same exit code
        a = ostree(f"--repo={theirs}", "commit", *args, check=False)
        b = sysroot(f"--repo={ours}", "commit", *args, check=False)
        assert a.returncode == b.returncode == 1
        assert one_error_line(b).startswith(one_error_line(a))
        assert _state(ours) == before
        return
    a, _ = _both(ostree, sysroot, theirs, ours, *args)
    if a.returncode:
        assert _state(ours) == before
    else:  # and a filter that is never used (no tar layer) is never read
        _both(ostree, sysroot, theirs, ours, "-b", "d", T, "--tar-pathname-filter=x", tree)


@pytest.mark.parametrize("spec", ["(,x", "x,\\q", "x,\\U"])
def test_tar_pathname_filter_bad_specs(sysroot, tmp_path, ostree, spec):
    """ostree reports a bad regex (in PCRE's words) and aborts on an unknown escape;
    sysroot gives one error line for both, and writes nothing."""
    _, ours = _repos(tmp_path, ostree)
    tarball = tmp_path / "t.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(_tree(tmp_path / "tree"), arcname=".")
    before = _state(ours)
    proc = sysroot(
        f"--repo={ours}", "commit", "-b", "x", T, f"--tree=tar={tarball}",
        f"--tar-pathname-filter={spec}", check=False,
    )  # fmt: skip
    assert one_error_line(proc).startswith("error: --tar-pathname-filter: ")
    assert proc.returncode == 1
    assert _state(ours) == before


@pytest.mark.parametrize("line", ["61440 /a", "-1 /a", "=4294967295 /a", "1e30 /a"])
def test_statoverride_beyond_permission_bits_is_refused(sysroot, tmp_path, ostree, line):
    """ostree would OR file-type bits into the mode; sysroot refuses the line."""
    _, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    so = tmp_path / "so"
    so.write_text(line + "\n")
    before = _state(ours)
    proc = sysroot(
        f"--repo={ours}", "commit", "-b", "x", T, f"--statoverride={so}", tree, check=False
    )
    assert (
        one_error_line(proc)
        == f"error: Invalid mode in statoverride line '{line}': only permission bits"
    )
    assert _state(ours) == before


@pytest.mark.parametrize("option", ["--fsync=no", "--disable-fsync", None])
def test_fsync_no_makes_no_fsync_calls(sysroot, tmp_path, ostree, option):
    """As ostree's: --fsync=no (or --disable-fsync) turns fsync off for this commit."""
    _, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    log = tmp_path / "strace.log"
    args = ["-b", "x", T, *([option] if option else []), tree]
    subprocess.run(
        [
            "strace", "-f", "-qq", "-o", log, "-e", "trace=fsync,fdatasync,syncfs",
            *sysroot.argv0, f"--repo={ours}", "commit", *args,
        ],
        check=True, capture_output=True, env=clean_env(),
    )  # fmt: skip
    calls = [ln for ln in log.read_text().splitlines() if "sync" in ln and "exited" not in ln]
    assert bool(calls) == (option is None)


@pytest.mark.parametrize(
    "option",
    [
        "--generate-sizes",
        "--owner-uid=0",
        "-I",
        "--link-checkout-speedup",
        "--consume",
        "--no-xattrs",
        "--canonical-permissions",
        "--mode-ro-executables",
    ],
)
def test_ref_layer_counters_and_sizes_like_ostree(ostree, sysroot, tmp_path, option):
    """With a commit modifier ostree writes a ref= layer's objects again (the same
    ones): its counters and ostree.sizes list them; without one it reuses the tree."""
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    for repo in (theirs, ours):
        ostree(f"--repo={repo}", "commit", "-b", "src", T, tree)
    args = ["-b", "x", T, "--table-output", option, "--tree=ref=src"]
    _both(ostree, sysroot, theirs, ours, *args)
    _both(ostree, sysroot, theirs, ours, "-b", "y", T, "--generate-sizes", option, "--tree=ref=src")
    raw = ostree.out(f"--repo={ours}", "show", "--raw", "y")
    assert raw == ostree.out(f"--repo={theirs}", "show", "--raw", "y")


@pytest.mark.parametrize(
    "which",
    [
        {"OSTREE_EDITOR": "ED", "VISUAL": "false", "EDITOR": "false", "TERM": "xterm"},
        {"OSTREE_EDITOR": None, "VISUAL": "ED", "EDITOR": "false", "TERM": "xterm"},
        {"OSTREE_EDITOR": None, "VISUAL": "false", "EDITOR": "ED", "TERM": "dumb"},
    ],
)
def test_editor_choice_like_ostree(ostree, sysroot, tmp_path, editor, which):
    """$OSTREE_EDITOR first, then $VISUAL unless the terminal is dumb, then $EDITOR."""
    theirs, ours = _repos(tmp_path, ostree)
    tree = _tree(tmp_path / "tree")
    env = {k: (str(editor) if v == "ED" else v) for k, v in which.items()}
    env["MESSAGE"] = "From the editor\n\nwith a body\n"
    a, _ = _both(ostree, sysroot, theirs, ours, "-e", "-b", "x", T, tree, env=env)
    assert a.returncode == 0
    assert "From the editor" in ostree.out(f"--repo={ours}", "log", "x")
