"""`admin upgrade` pulls through static deltas (sysroot.pull's library does), as
ostree 2022.7's does: same result in both sysroots, and sysroot fetched the delta's
superblock and part and no object the delta carries."""

from __future__ import annotations

from tests.deploy.test_upgrade import OS, T0, T1, Served, assert_same, served, track
from tests.helpers.twins import SysrootTwins

__all__ = ["served"]  # the fixture, shared with test_upgrade.py


def test_upgrade_uses_the_static_delta(pair: SysrootTwins, served: Served):
    first = served.commit(ts=T0, version="1")
    track(pair, served)
    second = served.commit(ts=T1, version="2")
    repo = f"--repo={served.repo}"
    served.ostree("static-delta", "generate", repo, f"--from={first}", f"--to={second}")
    served.ostree("summary", repo, "-u")
    ra = pair.a.oadmin("upgrade", OS)
    served.server.reset()
    rb = pair.b.admin("upgrade", OS)
    assert rb.stdout == ra.stdout
    requests = served.server.requests
    assert any(p.startswith("deltas/") and p.endswith("/superblock") for p in requests)
    assert any(p.startswith("deltas/") and p.endswith("/0") for p in requests)
    # the commit alone first (its timestamp is checked before any content is fetched),
    # then the delta makes everything else
    commit = f"objects/{second[:2]}/{second[2:]}.commit"
    assert set(served.server.object_requests()) <= {commit, commit + "meta"}
    assert_same(pair)
