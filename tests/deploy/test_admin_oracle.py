"""`sysroot admin` against the real `ostree admin` (2022.7).

Most tests drive two sysroots with identical content, one with each tool, through the
same commands and compare, after every step, the boot configuration byte for byte
(boot/loader*, entries, kernels, ostree/boot.* links, deployment names and trees,
origins, deployment refs), what each command printed, and what `ostree admin status`
says of both sysroots and `sysroot admin status` of ours. Where ostree 2022.7 itself is
wrong (a tree with only /etc) the test says so and checks what we do instead.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.helpers.sysroots import (
    OSNAME,
    boot_state,
    make_os_tree,
    our_status,
    snapshot,
)
from tests.helpers.twins import SysrootTwins

OS = f"--os={OSNAME}"
REF = f"{OSNAME}/x"


def entries(sr: Path) -> dict[str, str]:
    d = sr / "boot/loader/entries"
    return {p.name: p.read_text() for p in sorted(d.iterdir())}


def deploy_names(sr: Path, osname: str = OSNAME) -> list[str]:
    d = sr / "ostree/deploy" / osname / "deploy"
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".origin"))


def etc_tree(sr: Path, osname: str = OSNAME) -> dict[str, dict[str, str]]:
    """etc and usr/etc of every deployment: relative path -> content or link target."""
    out = {}
    for name in deploy_names(sr, osname):
        root = sr / "ostree/deploy" / osname / "deploy" / name
        files = {}
        for sub in ("etc", "usr/etc"):
            for p in sorted((root / sub).rglob("*")):
                key = f"{sub}/{p.relative_to(root / sub)}"
                if p.is_symlink():
                    files[key] = "-> " + str(p.readlink())
                elif p.is_dir():
                    files[key] = f"dir {p.stat().st_mode & 0o7777:o}"
                else:
                    files[key] = f"{p.stat().st_mode & 0o7777:o} {p.read_text()}"
        out[name] = files
    return out


# ---------------------------------------------------------------------- kernel args
def test_kargs_options(pair: SysrootTwins, tmp_path):
    """--karg replaces in place, --karg-append adds, --karg-delete removes, --karg-none
    starts empty; the merge deployment's arguments (ostree= included, where it stood)
    are the base otherwise."""
    pair.commit(make_os_tree(tmp_path / "t"), version="1.0")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", "--karg=quiet", "--karg=rw", REF)
    pair.assert_same()
    pair.admin("deploy", OS, "--karg-append=console=ttyS0", "--karg-append=console=tty0", REF)
    pair.assert_same()
    # replacing keeps the first position and drops the other values of that key
    pair.admin("deploy", OS, "--karg=console=hvc0", "--karg=root=/dev/vda2", REF)
    pair.assert_same()
    # (2022.7 applies only the last --karg-delete; we apply all: one per deploy here)
    pair.admin("deploy", OS, "--karg-append=extra=1", "--karg-delete=quiet", REF)
    pair.assert_same()
    pair.admin("deploy", OS, "--karg-delete=rw", REF)
    pair.assert_same()
    # a key that is not there: both refuse, nothing is deployed
    before = boot_state(pair.b.path)
    pair.admin("deploy", OS, "--karg-delete=nosuchkey", REF, expect_ok=False)
    assert boot_state(pair.b.path) == before
    # this machine's command line (BOOT_IMAGE= and initrd= left out), then edited
    pair.admin("deploy", OS, "--karg-proc-cmdline", "--karg=root=/dev/vdb", REF)
    pair.assert_same()
    pair.admin("deploy", OS, "--karg-none", "--karg=root=LABEL=root", REF)
    pair.assert_same()
    # without any --karg option the merge deployment's arguments carry over
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    options = [
        line
        for e in entries(pair.b.path).values()
        for line in e.splitlines()
        if line.startswith("options ")
    ]
    assert options and all(o.startswith("options root=LABEL=root ostree=") for o in options)


# ---------------------------------------------------------------------- serials, swaps
def test_redeploy_same_commit(pair: SysrootTwins, tmp_path):
    """The same commit again gets serial 1, 2, ...; when the entries would not change
    (same kernel, arguments, version, count) only ostree/boot.N -> boot.N.M swaps."""
    pair.commit(make_os_tree(tmp_path / "t"), version="7")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
    pair.assert_same()
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    csum = pair.b.repo.joinpath(f"refs/heads/{REF}").read_text().strip()
    assert deploy_names(pair.b.path) == [f"{csum}.0", f"{csum}.1"]
    loader_before = (pair.b.path / "boot/loader").readlink()
    entries_before = entries(pair.b.path)
    _ra, rb = pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert "bootconfig swap: no" in rb.stdout.decode()
    assert (pair.b.path / "boot/loader").readlink() == loader_before
    assert entries(pair.b.path) == entries_before
    assert deploy_names(pair.b.path) == [f"{csum}.1", f"{csum}.2"]
    # and once more: back to the other sub-boot version
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert deploy_names(pair.b.path) == [f"{csum}.2", f"{csum}.3"]


def test_version_metadata_in_titles(pair: SysrootTwins, tmp_path):
    """Titles carry the commit's version unless it is absent or already in PRETTY_NAME;
    a version change alone rewrites the entries (new boot version)."""
    t1 = make_os_tree(tmp_path / "t1")
    pair.commit(t1, version="2.5")
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    # no version; and content in /var, which a deployment never gets (ostree says so)
    t2 = make_os_tree(tmp_path / "t2", extra={"usr/share/x": "2", "var/lib/db/x": "x"})
    pair.commit(t2)
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    t3 = make_os_tree(tmp_path / "t3", extra={"usr/share/x": "3"})
    (t3 / "usr/lib/os-release").write_text('ID=testos\nPRETTY_NAME="Test OS 3.0"\n')
    pair.commit(t3, version="3.0")
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    titles = sorted(
        line
        for e in entries(pair.b.path).values()
        for line in e.splitlines()
        if line.startswith("title ")
    )
    assert titles == ["title Test OS (ostree:1)", "title Test OS 3.0 (ostree:0)"]
    t4 = make_os_tree(tmp_path / "t4", extra={"usr/share/x": "4"})
    (t4 / "usr/lib/os-release").write_text("ID=testos\n")  # no PRETTY_NAME: ID is used
    pair.commit(t4, version="4")
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert "title testos 4 (ostree:0)\n" in entries(pair.b.path)["ostree-2-testos.conf"]


# ---------------------------------------------------------------------- stateroots
def test_two_stateroots(pair: SysrootTwins, tmp_path):
    """With deployments of two stateroots the titles name them (ostree:OS:N); --os picks
    the stateroot; undeploying the other one drops the names again."""
    pair.a.oadmin("os-init", "otheros")
    pair.b.admin("os-init", "otheros")
    tree = make_os_tree(tmp_path / "t")
    pair.commit(tree, version="1")
    pair.commit(make_os_tree(tmp_path / "o", kernel=b"other kernel\n"), "otheros/y", version="9")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
    pair.assert_same()
    pair.admin("deploy", "--os=otheros", "--karg=root=/dev/sdb1", "otheros/y")
    pair.assert_same()
    text = "".join(entries(pair.b.path).values())
    assert "(ostree:otheros:0)" in text and f"(ostree:{OSNAME}:1)" in text
    # a new testos deployment: otheros (another stateroot) is kept, testos 0 is the merge
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert len(entries(pair.b.path)) == 3
    pair.admin("undeploy", "1")  # otheros
    pair.assert_same()
    assert "(ostree:0)" in "".join(entries(pair.b.path).values())
    assert deploy_names(pair.b.path, "otheros") == []


# ---------------------------------------------------------------------- retention
def test_retention_options(pair: SysrootTwins, tmp_path):
    """Which old deployments a deploy keeps: the merge one; all with --retain; those
    before/after the merge one with --retain-pending/--retain-rollback; --not-as-default
    puts the new one after the merge deployment."""
    # one branch each: the prune after a deploy keeps only ref heads and deployments
    commits = [
        pair.commit(
            make_os_tree(tmp_path / f"t{i}", extra={"usr/share/n": str(i)}),
            f"{OSNAME}/c{i}",
            version=f"{i}.0",
        )
        for i in range(5)
    ]
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", commits[0])
    pair.admin("deploy", OS, commits[1])
    pair.admin("deploy", OS, commits[2])  # drops the first one (neither merge nor kept)
    pair.assert_same()
    assert len(entries(pair.b.path)) == 2
    pair.admin("deploy", OS, "--retain", commits[3])
    pair.assert_same()
    assert len(entries(pair.b.path)) == 3
    pair.admin("deploy", OS, "--not-as-default", "--retain", commits[0])
    pair.assert_same()
    assert len(entries(pair.b.path)) == 4
    pair.admin("deploy", OS, "--not-as-default", "--retain-rollback", commits[4])
    pair.assert_same()
    pair.admin("deploy", OS, "--retain-pending", commits[2])
    pair.assert_same()
    pair.admin("deploy", OS, "--retain-rollback", commits[3])
    pair.assert_same()
    pair.admin("deploy", OS, "--retain-pending", "--retain-rollback", commits[1])
    pair.assert_same()
    pair.admin("deploy", OS, commits[4])
    pair.assert_same()
    assert len(entries(pair.b.path)) == 2


# ---------------------------------------------------------------------- /etc and origins
def test_no_merge_and_etc(pair: SysrootTwins, tmp_path):
    """The merge carries /etc changes and kernel arguments; --no-merge carries neither."""
    pair.commit(make_os_tree(tmp_path / "t"), version="1")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
    for sr in (pair.a, pair.b):
        (name,) = deploy_names(sr.path)
        etc = sr.path / "ostree/deploy" / OSNAME / "deploy" / name / "etc"
        (etc / "hostname").write_text("changed\n")
        (etc / "conf.d/a.conf").unlink()
        (etc / "local.conf").write_text("mine\n")
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert etc_tree(pair.b.path) == etc_tree(pair.a.path)
    newest = sorted(etc_tree(pair.b.path).items())[-1][1]
    assert newest["etc/hostname"].endswith("changed\n") and "etc/local.conf" in newest
    pair.admin("deploy", OS, "--no-merge", REF)
    pair.assert_same()
    assert etc_tree(pair.b.path) == etc_tree(pair.a.path)
    assert "options ostree=" in "".join(entries(pair.b.path).values())


def test_origin_file(pair: SysrootTwins, tmp_path):
    """--origin-file is stored as GLib rewrites it (comments dropped, groups separated
    by blank lines); without it the origin names the refspec."""
    pair.commit(make_os_tree(tmp_path / "t"))
    origin = tmp_path / "my.origin"
    origin.write_text(
        "# a comment\n[origin]\nrefspec=remote:os/stable\n"
        "custom-key=some value\n\n[rpmostree]\nrequested-packages=a;b;\n"
    )
    pair.admin("deploy", OS, f"--origin-file={origin}", REF)
    pair.assert_same()
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert "origin refspec: remote:os/stable" in pair.b.status()
    assert f"origin refspec: {REF}" in pair.b.status()


def test_set_origin_with_remote(pair: SysrootTwins, tmp_path):
    """`set-origin REMOTE URL [BRANCH]` adds the remote (settings from --set) unless it
    exists and tracks REMOTE:BRANCH with a fresh origin, as ostree: same origin files,
    same repo config, same status; a second call with another URL keeps the remote."""
    pair.commit(make_os_tree(tmp_path / "t"))
    pair.admin("deploy", OS, REF)
    # not booted: only with --index, in both tools
    pair.admin("set-origin", "upstream", "http://example.com/repo", expect_ok=False)
    pair.admin(
        "set-origin",
        "--index=0",
        "--set=gpg-verify=false",
        "-s",
        "tls-permissive=true",  # the short spelling
        "upstream",
        "http://example.com/repo",
        "os/stable",
    )
    pair.assert_same()
    pair.admin("set-origin", "--index=0", "upstream", "http://example.com/other")  # kept
    # (gpg-verify off: ostree's status would verify the deployment's commit otherwise)
    pair.admin("set-origin", "--index=0", "--set=gpg-verify=false", "mirror", "file:///srv/repo")
    pair.assert_same()
    assert (pair.a.repo / "config").read_text() == (pair.b.repo / "config").read_text()
    assert "origin refspec: mirror:os/stable" in pair.b.status()
    pair.admin("set-origin", "--index=7", "x", "http://example.com", expect_ok=False)
    pair.assert_same()


# ---------------------------------------------------------------------- tree shapes
def test_tree_with_only_etc(pair: SysrootTwins, tmp_path):
    """An old-style tree with /etc and no /usr/etc is deployed, etc moved to usr/etc.

    ostree 2022.7 means to do the same ("compatibility hack") but then checks usr/etc out
    of the commit, which has none, and fails; we accept the tree. What we make must
    still be an ordinary sysroot to ostree: same status, and ostree can deploy the
    /usr/etc tree on top of it (merging our /etc) and clean ours up."""
    pair.commit(make_os_tree(tmp_path / "t", etc="etc"), version="1")
    ra = pair.a.oadmin("deploy", OS, REF, check=False)
    assert ra.returncode != 0
    assert "Preparing /etc: No such file or directory: /usr/etc" in ra.stderr.decode()
    pair.b.admin("deploy", OS, REF)
    (files,) = etc_tree(pair.b.path).values()
    assert files["usr/etc/hostname"] == files["etc/hostname"] == "644 testhost\n"
    assert "etc/conf.d/a.conf" in files and "usr/etc/conf.d/a.conf" in files
    assert pair.b.status(pair.ostree) == pair.b.status()
    # ostree takes over: deploys a modern tree, merging the /etc we made, then cleans up
    (
        pair.b.path
        / "ostree/deploy"
        / OSNAME
        / "deploy"
        / deploy_names(pair.b.path)[0]
        / "etc/hostname"
    ).write_text("mine\n")
    pair.b.commit(make_os_tree(tmp_path / "t2"), version="2")
    pair.b.oadmin("deploy", OS, REF)
    pair.b.oadmin("undeploy", "1")
    assert len(deploy_names(pair.b.path)) == 1
    (files,) = etc_tree(pair.b.path).values()
    assert files["etc/hostname"] == "644 mine\n"
    assert pair.b.status(pair.ostree) == pair.b.status()


def test_tree_with_etc_and_usr_etc_refused(pair: SysrootTwins, tmp_path):
    pair.commit(make_os_tree(tmp_path / "t0"), version="0")
    pair.admin("deploy", OS, REF)
    pair.commit(make_os_tree(tmp_path / "t", etc="both"), version="1")
    before = snapshot(pair.b.path)
    ra, rb = pair.admin("deploy", OS, REF, expect_ok=False)
    assert "error: Preparing /etc: Tree contains both /etc and /usr/etc" in ra.stderr.decode()
    assert rb.stderr.decode() == "error: Preparing /etc: Tree contains both /etc and /usr/etc\n"
    assert snapshot(pair.b.path) == before
    # ostree leaves its half-made deployment directory for the next cleanup to remove
    pair.a.oadmin("cleanup")
    pair.assert_same()
    # an empty /etc next to /usr/etc counts as well
    tree = make_os_tree(tmp_path / "t2")
    (tree / "etc").mkdir()
    pair.commit(tree, version="2")
    pair.admin("deploy", OS, REF, expect_ok=False)
    pair.a.oadmin("cleanup")
    pair.assert_same()


def test_legacy_kernel_layout(pair: SysrootTwins, tmp_path):
    """usr/lib/ostree-boot/vmlinuz-KVER-BOOTCSUM: the checksum in the name is the boot
    checksum and the installed names drop it."""
    pair.commit(make_os_tree(tmp_path / "t", legacy=True), version="1")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
    pair.assert_same()
    kernels = list((pair.b.path / "boot/ostree").iterdir())
    assert [sorted(p.name for p in k.iterdir()) for k in kernels] == [
        ["initramfs-6.1.0.img", "vmlinuz-6.1.0"]
    ]


def test_devicetree_and_no_initramfs(pair: SysrootTwins, tmp_path):
    """A devicetree file is installed and named in the entry; without an initramfs the
    entry gets init=.../ostree-prepare-root; kernels are shared per boot checksum."""
    pair.commit(make_os_tree(tmp_path / "t", devicetree=b"dtb bytes\n"), version="1")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
    pair.assert_same()
    text = "".join(entries(pair.b.path).values())
    assert "\ndevicetree /ostree/" in text
    pair.commit(make_os_tree(tmp_path / "t2", initramfs=None, kernel=b"k2\n"), version="2")
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    text = entries(pair.b.path)["ostree-2-testos.conf"]
    assert "init=/ostree/boot." in text and "\ninitrd " not in text
    # the first deployment's kernel directory is still in use and shared on redeploy
    pair.admin("deploy", OS, "--retain", REF + "^")
    pair.assert_same()
    assert len(list((pair.b.path / "boot/ostree").iterdir())) == 2
    # a dtb/ directory instead: installed whole, named by fdtdir, part of the checksum
    t3 = make_os_tree(tmp_path / "t3")
    for rel in ("top.dtb", "vendor/board.dtb", "vendor/Zboard.dtb", "a/b.dtb"):
        (t3 / "usr/lib/modules/6.1.0/dtb" / rel).parent.mkdir(parents=True, exist_ok=True)
        (t3 / "usr/lib/modules/6.1.0/dtb" / rel).write_text(rel)
    pair.commit(t3, version="3")
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    assert "\nfdtdir /ostree/" in entries(pair.b.path)["ostree-2-testos.conf"]


# ---------------------------------------------------------------------- status
def _ostree_sysroot_with_everything(make_sysroot, tmp_path):
    """An ostree-made sysroot: two stateroots, a pinned deployment, an origin without
    a refspec, a deployment without an origin file, commits with and without version."""
    sr = make_sysroot("st", by="ostree", osnames=(OSNAME, "otheros"))
    sr.commit(make_os_tree(tmp_path / "t1"), version="1.0")
    sr.commit(make_os_tree(tmp_path / "t2", extra={"usr/share/v": "2"}))
    sr.commit(
        make_os_tree(tmp_path / "t3", kernel=b"k3\n"),
        "otheros/y",
        version="3",
        extra=("--add-metadata-string=ostree.source-title=built from x",),
    )
    sr.oadmin("deploy", OS, "--karg=root=/dev/sda1", REF + "^")
    sr.oadmin("deploy", OS, REF)
    sr.oadmin("deploy", "--os=otheros", "otheros/y")
    odd = tmp_path / "odd.origin"
    odd.write_text("[origin]\nunconfigured-state=manual\nunlocked=hotfix\n")
    sr.oadmin("deploy", OS, "--retain", f"--origin-file={odd}", REF + "^")
    sr.oadmin("pin", "2")
    return sr


def test_status_of_ostree_sysroot(make_sysroot, tmp_path, ostree, sysroot):
    sr = _ostree_sysroot_with_everything(make_sysroot, tmp_path)
    expected = sr.status(ostree)
    assert "Pinned: yes" in expected and "origin: <unknown origin type>" in expected
    assert "`- built from x" in expected and "Unlocked: hotfix" in expected
    assert sr.status(sysroot) == expected
    # unpinning leaves an empty [libostree-transient] group: still read as unpinned
    sr.oadmin("pin", "--unpin", "2")
    assert sr.status(sysroot) == sr.status(ostree)
    # a pin that is not a boolean is no pin, for both
    (origin,) = (sr.path / "ostree/deploy/otheros/deploy").glob("*.origin")
    with origin.open("a") as f:
        f.write("\n[libostree-transient]\npinned=maybe\n")
    assert sr.status(sysroot) == sr.status(ostree)
    # an origin file that went missing
    last = sorted((sr.path / f"ostree/deploy/{OSNAME}/deploy").glob("*.origin"))[0]
    last.unlink()
    expected = sr.status(ostree)
    assert "origin: none" in expected
    assert sr.status(sysroot) == expected


def test_status_json_of_ostree_sysroot(make_sysroot, tmp_path, ostree, sysroot):
    sr = _ostree_sysroot_with_everything(make_sysroot, tmp_path)
    data = json.loads(sysroot.out("admin", "status", f"--sysroot={sr.path}", "--json"))
    assert data["schema"] == "sysroot-status/v1"
    assert data["sysroot"] == str(sr.path)
    assert data["bootversion"] == int((sr.path / "boot/loader").readlink().name[-1])
    assert data["subbootversion"] == int(
        (sr.path / f"ostree/boot.{data['bootversion']}").readlink().name[-1]
    )
    # the text status of the oracle, rebuilt from the JSON
    lines = []
    for d in data["deployments"]:
        assert d["booted"] is d["pending"] is d["rollback"] is d["staged"] is False
        lines.append(f"  {d['stateroot']} {d['checksum']}.{d['serial']}")
        if d["version"] is not None:
            lines.append(f"    Version: {d['version']}")
        if d["unlocked"] != "none":
            lines.append(f"    Unlocked: {d['unlocked']}")
        if d["pinned"]:
            lines.append("    Pinned: yes")
        assert d["origin_file"] is True
        lines.append(
            f"    origin refspec: {d['origin']}"
            if d["origin"] is not None
            else "    origin: <unknown origin type>"
        )
        if d["source_title"]:
            lines.append(f"    `- {d['source_title']}")
    assert "\n".join(lines) + "\n" == sr.status(ostree)
    for i, d in enumerate(data["deployments"]):
        assert d["index"] == i
        # the commit's time as the oracle shows it ("Date:  2023-01-03 03:04:05 +0000")
        shown = ostree.out("show", f"--repo={sr.path / 'ostree/repo'}", d["checksum"])
        date = next(ln for ln in shown.splitlines() if ln.startswith("Date:")).split(None, 1)[1]
        when = dt.datetime.strptime(date.strip(), "%Y-%m-%d %H:%M:%S %z")
        assert d["timestamp"] == when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = Path(d["boot_entry"])
        assert entry.parent == sr.path / f"boot/loader.{data['bootversion']}/entries"
        text = entry.read_text()
        assert f"\noptions {d['kargs']} ostree=/ostree/boot." in text or (
            d["kargs"] == "" and "\noptions ostree=" in text
        )
        assert f"/ostree/{d['stateroot']}-{d['bootcsum']}/vmlinuz" in text
        link = (
            sr.path
            / f"ostree/boot.{data['bootversion']}"
            / d["stateroot"]
            / d["bootcsum"]
            / str(d["bootserial"])
        )
        assert link.readlink().name == f"{d['checksum']}.{d['serial']}"
        assert (
            Path(d["path"])
            == sr.path
            / "ostree/deploy"
            / d["stateroot"]
            / "deploy"
            / f"{d['checksum']}.{d['serial']}"
        )
    assert [d["pinned"] for d in data["deployments"]] == [False, False, True, False]
    assert [d["unlocked"] for d in data["deployments"]] == ["hotfix", "none", "none", "none"]


def test_status_empty_and_fresh(make_sysroot, ostree, sysroot):
    sr = make_sysroot("e", by="ostree")
    assert sr.status(sysroot) == sr.status(ostree) == "No deployments.\n"
    data = json.loads(sysroot.out("admin", "status", f"--sysroot={sr.path}", "--json"))
    assert data["deployments"] == []


# ---------------------------------------------------------------------- config-diff
def test_config_diff(pair: SysrootTwins, tmp_path):
    pair.commit(make_os_tree(tmp_path / "t", extra={"usr/etc/sub/deep/f": "f\n"}))
    pair.admin("deploy", OS, REF)
    for sr in (pair.a, pair.b):
        (name,) = deploy_names(sr.path)
        etc = sr.path / "ostree/deploy" / OSNAME / "deploy" / name / "etc"
        (etc / "hostname").write_text("changed\n")
        (etc / "passwd").chmod(0o600)
        (etc / "conf.d/a.conf").unlink()
        (etc / "sub/deep/f").unlink()
        (etc / "new-dir/inner").mkdir(parents=True)
        (etc / "new-dir/inner/x").write_text("x\n")
        (etc / "new-file").write_text("n\n")
        (etc / "link").symlink_to("hostname")
    # the order is ostree's directory walk (inode order), so compare on one sysroot
    for sr in (pair.a, pair.b):
        expected = sr.oadmin("config-diff", OS).stdout.decode()
        assert sorted(expected.splitlines()) == [
            "A    link",
            "A    new-dir",
            "A    new-dir/inner",
            "A    new-dir/inner/x",
            "A    new-file",
            "D    conf.d/a.conf",
            "D    sub/deep/f",
            "M    hostname",
            "M    passwd",
        ]
        assert sr.admin("config-diff", OS).stdout.decode() == expected


# ---------------------------------------------------------------------- interleaving
def check_consistent(sr, ostree, context: str) -> None:
    """Both tools report the same; the repo passes `ostree fsck`; on disk there is
    exactly what the active boot configuration references (every step below ends in
    a cleanup or changes no files): no other deployment, origin, kernel, loader or
    link-farm half, or deployment ref."""
    text = sr.status(ostree)
    assert our_status(sr.path) == text, context
    fsck = ostree(f"--repo={sr.repo}", "fsck", check=False)
    assert fsck.returncode == 0 and b"error" not in fsck.stderr.lower(), (
        context,
        fsck.stdout,
        fsck.stderr,
    )
    root = sr.path
    listed = [
        line.split()[:2]
        for line in text.splitlines()
        if line.startswith("  ") and not line.startswith("    ")
    ]
    if not (root / "boot/loader").is_symlink():
        assert listed == [], context
        return
    bv = int(str((root / "boot/loader").readlink())[-1])
    sub = int(str((root / f"ostree/boot.{bv}").readlink())[-1])
    assert sorted(p.name for p in (root / "boot").iterdir()) == sorted(
        ["boot", "loader", f"loader.{bv}", "ostree"]
    ), context
    assert sorted(p.name for p in (root / "ostree").iterdir() if p.name.startswith("boot")) == [
        f"boot.{bv}",
        f"boot.{bv}.{sub}",
    ], context
    kernels = set()
    for e in (root / f"boot/loader.{bv}/entries").iterdir():
        for line in e.read_text().splitlines():
            if line.startswith("linux "):
                kernels.add(line.split("/")[2])
    assert {p.name for p in (root / "boot/ostree").iterdir()} == kernels, context
    for osdir in (root / "ostree/deploy").iterdir():
        want = {name for os_, name in listed if os_ == osdir.name}
        have = {p.name for p in (osdir / "deploy").iterdir()}
        assert have == want | {f"{n}.origin" for n in want}, context
    refs = {
        str(p.relative_to(sr.repo / "refs/heads")): p.read_text().strip()
        for p in (sr.repo / "refs/heads/ostree").rglob("*")
        if p.is_file()
    }
    assert refs == {
        f"ostree/{bv}/{sub}/{i}": name.split(".")[0] for i, (_os, name) in enumerate(listed)
    }, context


# (tool, command...): "O" ostree or our sysroot, "S" the other one, "S!" always sysroot
# (ostree 2022.7 has no set-default)
INTERLEAVED = [
    ("O", "deploy", OS, "--karg=root=/dev/sda1", "@c0"),
    ("S", "deploy", OS, "@c1"),
    ("O", "pin", "1"),
    ("S", "deploy", OS, "--karg-append=quiet", "@c2"),  # the pinned one stays
    ("S!", "set-default", "2"),
    ("O", "undeploy", "2"),
    ("S", "pin", "--unpin", "0"),
    ("O", "deploy", OS, "--not-as-default", "@c1"),
    ("S", "cleanup"),
    ("O", "undeploy", "0"),
    ("S", "deploy", OS, "--no-merge", "--retain", "@c0"),
    ("O", "cleanup"),
    ("S", "undeploy", "0"),
    ("O", "undeploy", "0"),
]


@pytest.mark.parametrize("first", ["ostree", "sysroot"])
def test_interleaved_tools(first, make_sysroot, tmp_path, ostree, sysroot):
    """One sysroot, the two tools taking turns; "O" is `first`, "S" the other one."""
    sr = make_sysroot("sr", by=first)
    commits = {
        f"@c{i}": sr.commit(
            make_os_tree(
                tmp_path / f"t{i}", kernel=b"k%d\n" % (i % 2), extra={"usr/share/n": str(i)}
            ),
            f"{OSNAME}/c{i}",
            version=str(i),
        )
        for i in range(3)
    }
    tools = {
        "O": ostree if first == "ostree" else sysroot,
        "S": sysroot if first == "ostree" else ostree,
        "S!": sysroot,
    }
    for step, (who, cmd, *args) in enumerate(INTERLEAVED):
        args = [commits.get(a, a) for a in args]
        tool = tools[who]
        r = tool("admin", cmd, f"--sysroot={sr.path}", *args, check=False)
        context = f"step {step}: {'ostree' if tool is ostree else 'sysroot'} {cmd} {args}"
        assert r.returncode == 0, (context, r.stderr.decode())
        check_consistent(sr, ostree, context)
    assert sr.status(ostree) == "No deployments.\n"


def test_hand_edited_entries_carry_over(pair: SysrootTwins, tmp_path):
    """Options edited by hand in the merge deployment's entry (spacing and all) are the
    next deployment's base; when that entry is rewritten, keys added by hand stay, and
    lines that are not `key value` are ignored, by both tools."""
    pair.commit(make_os_tree(tmp_path / "t"), version="1")
    pair.admin("deploy", OS, "--karg=root=/dev/sda1", REF)
    for sr in (pair.a, pair.b):
        (entry,) = (sr.path / "boot/loader/entries").iterdir()
        text = entry.read_text().replace(
            "options root=/dev/sda1 ", "options  root=/dev/sda1 debug  splash "
        )
        entry.write_text("# edited by hand\n" + text + "x-custom hello world\n= odd line\n")
    pair.assert_same()
    pair.admin("deploy", OS, REF)
    pair.assert_same()
    pair.admin("undeploy", "0")
    pair.admin("undeploy", "0")  # no deployments left
    pair.assert_same()


def test_prune_after_undeploy(pair: SysrootTwins, tmp_path, ostree):
    """A commit that only a deployment kept alive is pruned with it: same objects freed,
    same messages, and a repo that `ostree fsck` accepts."""
    pair.commit(make_os_tree(tmp_path / "t0"), f"{OSNAME}/c0", version="0")
    pair.commit(
        make_os_tree(tmp_path / "t1", extra={"usr/share/big": "b" * 5000}),
        f"{OSNAME}/c1",
        version="1",
    )
    pair.admin("deploy", OS, f"{OSNAME}/c1")
    pair.admin("deploy", OS, f"{OSNAME}/c0")
    for sr in (pair.a, pair.b):
        ostree(f"--repo={sr.repo}", "refs", "--delete", f"{OSNAME}/c1")
    _ra, rb = pair.admin("undeploy", "1")
    assert "Freed objects: " in rb.stdout.decode()
    assert rb.stdout.decode().splitlines()[-1].startswith("Deleted deployment ")
    pair.assert_same()
    for sr in (pair.a, pair.b):
        ostree(f"--repo={sr.repo}", "fsck")
    assert ostree.out(f"--repo={pair.b.repo}", "refs") == ostree.out(
        f"--repo={pair.a.repo}", "refs"
    )
