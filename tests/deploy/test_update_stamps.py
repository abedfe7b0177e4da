"""A new deployment loses /etc/.updated and the stateroot's /var/.updated, as with
ostree 2022.7, so that systemd's ConditionNeedsUpdate= units run on its first boot
(the stamps of the old deployment would say the new /usr was handled)."""

from __future__ import annotations

import pytest

from tests.helpers.sysroots import OSNAME, make_os_tree


@pytest.mark.parametrize("by", ["ostree", "sysroot"])
def test_deploy_removes_the_update_stamps(make_sysroot, tmp_path, by):
    sr = make_sysroot(f"sr-{by}", by=by)
    tree = make_os_tree(tmp_path / f"tree-{by}", extra={"usr/etc/.updated": "", "var/.updated": ""})
    sr.commit(tree)
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    deploy_parent = sr.path / "ostree/deploy" / OSNAME / "deploy"
    var_stamp = sr.path / "ostree/deploy" / OSNAME / "var/.updated"
    (first,) = [p for p in deploy_parent.iterdir() if not p.name.endswith(".origin")]
    assert not (first / "etc/.updated").exists()  # the tree's own, copied from usr/etc
    assert (first / "usr/etc/.updated").exists()  # /usr is the commit's, untouched
    # the first boot's systemd-update-done wrote its stamps; the next deployment drops them
    (first / "etc/.updated").write_text("TIMESTAMP_NSEC=1\n")
    var_stamp.write_text("TIMESTAMP_NSEC=1\n")
    (first / "etc/local.conf").write_text("mine\n")
    sr.admin("deploy", f"--os={OSNAME}", f"{OSNAME}/x")
    (second,) = [p for p in deploy_parent.iterdir() if p.name.endswith(".1")]
    assert (second / "etc/local.conf").read_text() == "mine\n"  # the merge did run
    assert not (second / "etc/.updated").exists()
    assert not var_stamp.exists()
