"""sysroot admin upgrade / switch, spelled like ostree 2022.7's.

Beyond ostree: `upgrade --check` (fetch the new commit object only, move no ref, say
whether there is an update) and `upgrade --preview` (fetch the update as --pull-only
does and also show how its files differ from the merge deployment's). Both exit 77
when there is no update, as `rpm-ostree upgrade --check` does, so scripts can tell
"nothing to do" from a failure; 0 when there is one. `--json` prints their report as
one object (UpdateReport: `schema-version` 1, `update-available`, the commit, version,
timestamp, deployed commit, and for --preview the file counts). `--unchanged-exit-77`
(rpm-ostree's) makes a plain upgrade exit 77 too when there was nothing to deploy.

Also beyond ostree: a commit that boot counting recorded as failed in the stateroot
(deploy/failedcommits.py) is not deployed again unless `--allow-failed` is given: with
a remote it is refused before its content is fetched and before the ref moves;
`--check` and `--preview` say it failed, `--pull-only` fetches it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass

from sysroot.cli.common import add_sysroot_options, say_change
from sysroot.errors import SysrootError, UsageError
from sysroot.util.run import run

EXIT_NO_UPDATE = 77


def register(sub) -> None:
    """Nothing at the top level: `upgrade` and `switch` are admin verbs, which
    register_verbs() adds (cli/main.py calls it with admin's subcommands)."""


def register_verbs(asub) -> None:
    """Adds `upgrade` and `switch` to the admin subcommands."""
    p = asub.add_parser(
        "upgrade", help="Construct new tree from current origin and deploy it, if it changed"
    )
    add_sysroot_options(p)
    p.add_argument("-r", "--reboot", action="store_true", help="Reboot after a successful upgrade")
    p.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="Permit deployment of chronologically older trees",
    )
    p.add_argument(
        "--override-commit", metavar="CHECKSUM", help="Deploy CHECKSUM instead of the latest tree"
    )
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="Permit deployment of a commit that failed to boot before (boot counting)",
    )
    p.add_argument(
        "--pull-only", action="store_true", help="Do not create a deployment, just download"
    )
    p.add_argument("--deploy-only", action="store_true", help="Do not pull, only deploy")
    p.add_argument(
        "--stage", action="store_true", help="Enable staging (finalization at reboot time)"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="Only check whether an update is available (exit 77 if not)",
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="Download the update and show what it changes (exit 77 if none)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="With --check or --preview: the report as one JSON object",
    )
    p.add_argument(
        "--unchanged-exit-77",
        action="store_true",
        help="Exit 77 when there is no update (as rpm-ostree; a timer's script can tell)",
    )
    p.set_defaults(func=run_upgrade)

    p = asub.add_parser(
        "auto-update",
        help="Check for, stage or apply an update as /etc/sysroot/updates.conf says (the timer)",
    )
    add_sysroot_options(p)
    p.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="The policy file (default: /etc/sysroot/updates.conf)",
    )
    p.add_argument(
        "--policy",
        choices=("none", "check", "stage", "apply"),
        help="Use this policy instead of the file's",
    )
    p.add_argument(
        "--randomized-delay",
        action="store_true",
        help="First wait a random time up to the file's RandomizedDelaySec (the timer's run)",
    )
    p.set_defaults(func=run_auto_update)

    p = asub.add_parser("switch", help="Construct new tree from REFSPEC and deploy it")
    add_sysroot_options(p)
    p.add_argument("-r", "--reboot", action="store_true", help="Reboot after switching trees")
    p.add_argument("refspec", metavar="REFSPEC", nargs="?")
    p.set_defaults(func=run_switch)


def _check_options(args) -> None:
    """ostree's refusals, in its order; then ours for --check/--preview/--json."""
    if args.pull_only and args.deploy_only:
        raise UsageError("Cannot simultaneously specify --pull-only and --deploy-only")
    if args.pull_only and args.reboot:
        raise UsageError("Cannot simultaneously specify --pull-only and --reboot")
    for opt in ("check", "preview"):
        if not getattr(args, opt):
            continue
        for other in ("preview", "pull_only", "deploy_only", "stage", "reboot"):
            if other != opt and getattr(args, other):
                raise UsageError(
                    f"Cannot simultaneously specify --{opt} and --{other.replace('_', '-')}"
                )
    if args.json and not (args.check or args.preview):
        raise UsageError("--json needs --check or --preview")


def _reboot(sysroot_path: str) -> None:
    """As ostree: only when the sysroot is the running system's."""
    if os.path.realpath(sysroot_path) == "/":
        run(["systemctl", "reboot"], capture=False)


def _warn_endoflife(result) -> None:
    # ostree 2022.7 says nothing; a user about to stay on a dead stream should know
    if result.endoflife:
        print(
            f"warning: {result.rebased_from or result.refspec} is end-of-life: {result.endoflife}",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class UpdateReport:
    """What --check and --preview say of an available update; --json prints these
    fields under their JSON names (schema version 1)."""

    osname: str
    refspec: str
    commit: str
    version: str | None
    timestamp: str  # ISO 8601, UTC
    deployed: str
    rebased_from: str | None
    end_of_life: str | None
    failed_to_boot: str | None
    # --preview only: added, removed, modified file counts against the deployment
    files: dict[str, int] | None

    def as_json(self) -> dict[str, object]:
        fields = {k.replace("_", "-"): v for k, v in dataclasses.asdict(self).items()}
        return {"schema-version": 1, "update-available": True, **fields}


NO_UPDATE_JSON = {"schema-version": 1, "update-available": False}


def _report(up, result, *, diff: bool) -> UpdateReport:
    """The --check / --preview report of an available update."""
    commit = up.repo.load_commit(result.new_revision)
    when = dt.datetime.fromtimestamp(commit.timestamp, dt.UTC)
    files = None
    if diff:
        from sysroot.store.diff import diff_commits

        d = diff_commits(up.repo, result.from_revision, result.new_revision)
        files = {"added": len(d.added), "removed": len(d.removed), "modified": len(d.modified)}
    failed = up.failed_at(result.new_revision)
    return UpdateReport(
        up.osname,
        result.refspec,
        result.new_revision,
        commit.version,
        when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        result.from_revision,
        result.rebased_from,
        result.endoflife,
        failed,
        files,
    )


def _print_report(r: UpdateReport) -> None:
    print(f"Update available for {r.osname}: {r.refspec}")
    if r.rebased_from:
        print(f"  Rebased from: {r.rebased_from} (end of life)")
    print(f"  Commit: {r.commit}")
    if r.version is not None:
        print(f"  Version: {r.version}")
    print(f"  Timestamp: {r.timestamp}")
    if r.end_of_life:
        print(f"  End of life: {r.end_of_life}")
    print(f"  Deployed: {r.deployed}")
    if r.failed_to_boot is not None:
        print(f"  Failed to boot: {r.failed_to_boot} (upgrade refuses it without --allow-failed)")
    if r.files is not None:
        f = r.files
        print(f"  Files: {f['added']} added, {f['removed']} removed, {f['modified']} modified")


def run_upgrade(args) -> int:
    from sysroot.deploy.admin import Sysroot
    from sysroot.deploy.upgrade import Upgrader

    _check_options(args)
    sr = Sysroot(args.sysroot)
    with Upgrader(sr, args.os) as up:
        origin = up.dup_origin()
        origin.remove_transient_state()
        if args.override_commit is not None:
            origin.set("origin", "override-commit", args.override_commit)
        up.set_origin(origin)
        try:
            result = up.pull(
                allow_older=args.allow_downgrade,
                synthetic=args.deploy_only,
                peek=args.check,
                # only a pull to deploy refuses a failed commit (before fetching it)
                allow_failed=args.allow_failed or args.pull_only or args.check or args.preview,
            )
        except SysrootError:
            if args.pull_only:
                # as ostree: do not let partial intermediate commits pile up
                try:
                    sr.cleanup()
                except SysrootError:
                    pass
            raise
        _warn_endoflife(result)
        if not result.changed:
            if args.json:
                print(json.dumps(NO_UPDATE_JSON, indent=2))
            else:
                print("No update available.")
            unchanged_77 = args.check or args.preview or args.unchanged_exit_77
            return EXIT_NO_UPDATE if unchanged_77 else 0
        if args.check or args.preview:
            report = _report(up, result, diff=args.preview)
            if args.json:
                print(json.dumps(report.as_json(), indent=2))
            else:
                _print_report(report)
            return 0
        if not args.pull_only:
            change = up.deploy(stage=args.stage, allow_failed=args.allow_failed)
            if change.summary:  # a staged deployment changes no boot configuration yet
                say_change(change)
    if args.reboot:
        _reboot(args.sysroot)
    return 0


def run_switch(args) -> int:
    from sysroot.deploy.admin import Sysroot
    from sysroot.deploy.upgrade import switch

    if args.refspec is None:
        raise UsageError("REFSPEC must be specified")
    done = switch(Sysroot(args.sysroot), args.refspec, args.os)
    if done.change.summary:
        say_change(done.change)
    # ostree 2022.7 prints a local ref as '(null):REF'; the ref's real name is clearer
    print(f"Deleting ref '{done.old_refspec}'")
    _warn_endoflife(done.upgrade)
    if args.reboot:
        _reboot(args.sysroot)
    return 0


def run_auto_update(args) -> int:
    """One run of the automatic-update policy: prints the record's line; exit 77 when
    there was no update (as --check), 0 otherwise; `apply` reboots into a staged one."""
    from sysroot.deploy.admin import Sysroot
    from sysroot.deploy.autoupdate import CONFIG_PATH, Policy, UpdatesConfig, auto_update

    config = UpdatesConfig.load(args.config or CONFIG_PATH)
    if args.policy is not None:
        config = dataclasses.replace(config, policy=Policy(args.policy))
    record = auto_update(Sysroot(args.sysroot), config, args.os, delay=args.randomized_delay)
    print(record.line())
    if record.outcome == "no-update":
        return EXIT_NO_UPDATE
    if config.policy is Policy.APPLY and record.outcome == "staged":
        _reboot(args.sysroot)
    return 0
