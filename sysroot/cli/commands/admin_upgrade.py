"""sysroot admin upgrade / switch, spelled like ostree 2022.7's.

Beyond ostree: `upgrade --check` (fetch the new commit object only, move no ref, say
whether there is an update) and `upgrade --preview` (fetch the update as --pull-only
does and also show how its files differ from the merge deployment's). Both exit 77
when there is no update, as `rpm-ostree upgrade --check` does, so scripts can tell
"nothing to do" from a failure; 0 when there is one.

Also beyond ostree: a commit that boot counting recorded as failed in the stateroot
(deploy/failedcommits.py) is not deployed again unless `--allow-failed` is given: with
a remote it is refused before its content is fetched and before the ref moves;
`--check` and `--preview` say it failed, `--pull-only` fetches it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

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
    p.set_defaults(func=run_upgrade)

    p = asub.add_parser("switch", help="Construct new tree from REFSPEC and deploy it")
    add_sysroot_options(p)
    p.add_argument("-r", "--reboot", action="store_true", help="Reboot after switching trees")
    p.add_argument("refspec", metavar="REFSPEC", nargs="?")
    p.set_defaults(func=run_switch)


def _check_options(args) -> None:
    """ostree's refusals, in its order; then ours for --check/--preview."""
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


def _report(up, result, *, diff: bool) -> None:
    """The --check / --preview report of an available update."""
    commit = up.repo.load_commit(result.new_revision)
    when = dt.datetime.fromtimestamp(commit.timestamp, dt.UTC)
    print(f"Update available for {up.osname}: {result.refspec}")
    if result.rebased_from:
        print(f"  Rebased from: {result.rebased_from} (end of life)")
    print(f"  Commit: {result.new_revision}")
    if commit.version is not None:
        print(f"  Version: {commit.version}")
    print(f"  Timestamp: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if result.endoflife:
        print(f"  End of life: {result.endoflife}")
    print(f"  Deployed: {result.from_revision}")
    failed = up.failed_at(result.new_revision)
    if failed is not None:
        print(f"  Failed to boot: {failed} (upgrade refuses it without --allow-failed)")
    if diff:
        from sysroot.store.diff import diff_commits

        d = diff_commits(up.repo, result.from_revision, result.new_revision)
        print(
            f"  Files: {len(d.added)} added, {len(d.removed)} removed, {len(d.modified)} modified"
        )


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
            print("No update available.")
            return EXIT_NO_UPDATE if args.check or args.preview else 0
        if args.check or args.preview:
            _report(up, result, diff=args.preview)
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
