"""Automatic updates: what sysroot-auto-update.timer does, by the policy in
/etc/sysroot/updates.conf (rpm-ostree's AutomaticUpdatePolicy, bootc's
fetch-apply-updates):

    [Updates]
    Policy=none | check | stage | apply
    RandomizedDelaySec=0     # the timer's run waits up to this long first (a fleet
                             # does not hit its server at the same second)

- none (also: no file): nothing is done.
- check: the new commit object only (no content, no ref moved); the record says
  whether an update is available, for `admin status`.
- stage: the update is pulled and staged; the shutdown finalizes it. An update already
  staged is not staged again.
- apply: as stage, then the machine reboots into it (the CLI reboots; the library
  never does).

Each run leaves one record (updaterecord.py) in the stateroot's
/var/lib/sysroot/auto-update.json; `admin status` shows it. A
commit that boot counting recorded as failed is never staged automatically.
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass

from sysroot.deploy.admin import Sysroot
from sysroot.deploy.updaterecord import AutoUpdateRecord, Outcome, write_record
from sysroot.deploy.upgrade import Upgrader
from sysroot.errors import SysrootError
from sysroot.formats.keyfile import KeyFile

CONFIG_PATH = "/etc/sysroot/updates.conf"
GROUP = "Updates"
MAX_DELAY = 7 * 24 * 3600  # a week: beyond that a number is a mistake, not a policy
MAX_CONFIG_BYTES = 64 * 1024


class Policy(enum.Enum):
    NONE = "none"
    CHECK = "check"
    STAGE = "stage"
    APPLY = "apply"


@dataclass(frozen=True)
class UpdatesConfig:
    policy: Policy = Policy.NONE
    randomized_delay: int = 0  # seconds

    @classmethod
    def load(cls, path: str = CONFIG_PATH) -> UpdatesConfig:
        """The policy file; no file is policy none. A malformed one is one error line."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            return cls()
        except OSError as e:
            raise SysrootError(f"{path}: {e.strerror or e}") from None
        if len(data) > MAX_CONFIG_BYTES:
            raise SysrootError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
        try:
            kf = KeyFile.parse(data.decode(), source=path)
        except UnicodeDecodeError:
            raise SysrootError(f"{path}: not UTF-8 text") from None
        word = (kf.get(GROUP, "Policy") or "none").strip().lower()
        try:
            policy = Policy(word)
        except ValueError:
            raise SysrootError(
                f"{path}: Policy={word}: expected one of none, check, stage, apply"
            ) from None
        delay = kf.get_int(GROUP, "RandomizedDelaySec", 0)
        if not 0 <= delay <= MAX_DELAY:
            raise SysrootError(f"{path}: RandomizedDelaySec={delay}: expected 0 to {MAX_DELAY}")
        return cls(policy, delay)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def auto_update(
    sysroot: Sysroot,
    config: UpdatesConfig,
    osname: str | None = None,
    *,
    delay: bool = False,
) -> AutoUpdateRecord:
    """One run of the policy (delay: first wait a random time up to the configured
    delay, as the timer's run does). Returns the record it wrote (policy none writes
    none). Errors are recorded, then raised."""
    if config.policy is Policy.NONE:
        return AutoUpdateRecord(Policy.NONE.value, Outcome.DISABLED.value, _now(), osname or "")
    if delay and config.randomized_delay:
        time.sleep(random.uniform(0, config.randomized_delay))
    policy = config.policy.value
    with Upgrader(sysroot, osname) as up:
        name = up.osname
        deployed = up.merge.csum
        try:
            result = up.pull(peek=config.policy is Policy.CHECK, allow_failed=False)
            record = _after_pull(up, config.policy, result.changed, deployed)
        except SysrootError as e:
            write_record(
                sysroot.layout,
                AutoUpdateRecord(
                    policy, Outcome.FAILED.value, _now(), name, deployed, error=str(e)
                ),
            )
            raise
    write_record(sysroot.layout, record)
    return record


def _after_pull(up: Upgrader, policy: Policy, changed: bool, deployed: str) -> AutoUpdateRecord:
    name = up.osname
    if not changed:
        return AutoUpdateRecord(policy.value, Outcome.NO_UPDATE.value, _now(), name, deployed)
    new = up.new_revision
    assert new is not None
    version = up.repo.load_commit(new).version
    if policy is Policy.CHECK:
        return AutoUpdateRecord(
            policy.value, Outcome.AVAILABLE.value, _now(), name, deployed, new, version
        )
    staged = up.sysroot.load().staged
    if staged is None or staged.csum != new or staged.osname != name:
        up.deploy(stage=True)
    return AutoUpdateRecord(
        policy.value, Outcome.STAGED.value, _now(), name, deployed, new, version
    )
