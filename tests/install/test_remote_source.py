"""install to-disk from a remote: the commit's signature is checked before the disk is
touched, the remote stays in the installed repository and the deployment tracks
REMOTE:REF (the installed system upgrades from where it came); progress by phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sysroot.boot.backends import BootloaderKind
from sysroot.install.attach import attached_image
from sysroot.install.todisk import InstallOptions, RemoteSource, install_to_disk
from tests.conftest import one_error_line
from tests.helpers.keys import b64, new_ed25519_key
from tests.install.conftest import Loops, Source, edge_digest, install_cli, make_image, sh
from tests.pull.serve_helpers import RepoServer


@pytest.fixture(scope="module")
def signed(source: Source, ostree, sysroot) -> tuple[Source, str, str]:
    """The source repository with its commit signed (ed25519: ours, Debian's ostree is
    built without it) and a summary; (source, public key, another public key)."""
    secret, public = new_ed25519_key()
    _, other = new_ed25519_key()
    sysroot("sign", f"--repo={source.repo}", source.commit, b64(secret))
    ostree("summary", "-u", f"--repo={source.repo}")
    return source, b64(public), b64(other)


def _cli(device: Path, url: str, ref: str, *extra: str):
    return install_cli(device, f"--source-url={url}", f"--ref={ref}", "--bootloader=grub2", *extra)


def test_a_wrong_key_or_ref_fails_before_the_disk_is_touched(tmp_path, signed):
    source, _, other = signed
    image = make_image(tmp_path / "disk.img")
    before = edge_digest(str(image))
    with RepoServer(source.repo) as server:
        for ref, extra in (
            (
                source.ref,
                [
                    "--no-gpg-verify",
                    "--set=sign-verify=ed25519",
                    f"--set=verification-ed25519-key={other}",
                ],
            ),
            ("no/such/ref", ["--no-gpg-verify"]),
        ):
            proc = _cli(image, server.url, ref, *extra)
            one_error_line(proc)
            assert edge_digest(str(image)) == before
        # only the commit was fetched for the check: no content object
        assert not [r for r in server.requests if r.endswith(".filez")]


def test_install_from_a_remote_tracks_it(tmp_path, loops: Loops, signed, ostree):
    source, public, _ = signed
    image = make_image(tmp_path / "disk.img")
    phases: list[str] = []
    with RepoServer(source.repo) as server, attached_image(str(image)) as dev:
        remote = RemoteSource(
            "upstream",
            server.url,
            (
                ("gpg-verify", "false"),
                ("sign-verify", "ed25519"),
                ("verification-ed25519-key", public),
            ),
        )
        options = InstallOptions(
            dev,
            "",
            source.ref,
            bootloader=BootloaderKind.GRUB2,
            remote=remote,
            progress=phases.append,
        )
        result = install_to_disk(options)
    assert result.deployment.csum == source.commit
    assert phases == [
        "Partitioning",
        "Creating file systems",
        "Deploying",
        "Syncing",
        "Writing the EFI system partition",
        "Syncing",
        "Done",
    ]
    dev = loops.attach(image, read_only=True)
    parts = json.loads(sh("sfdisk", "--json", dev).stdout)["partitiontable"]["partitions"]
    mnt = loops.mount(f"{dev}p{len(parts)}", tmp_path / "mnt", "-o", "ro")
    loops.mount(f"{dev}p2", mnt / "boot", "-o", "ro")
    config = ostree.out("config", f"--repo={mnt}/ostree/repo", "get", 'remote "upstream".url')
    assert config == server.url
    assert ostree.out("rev-parse", f"--repo={mnt}/ostree/repo", f"upstream:{source.ref}") == (
        source.commit
    )
    status = ostree("admin", "status", f"--sysroot={mnt}").stdout.decode()
    assert f"origin refspec: upstream:{source.ref}" in status
    ostree("fsck", f"--repo={mnt}/ostree/repo")


def test_remote_options_need_a_url(tmp_path, source):
    proc = install_cli(
        tmp_path / "x.img", f"--source-repo={source.repo}", f"--ref={source.ref}", "--no-gpg-verify"
    )
    assert "go with --source-url" in one_error_line(proc)
