"""sysroot admin: deployments, spelled like `ostree admin`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sysroot.cli.common import add_sysroot_options, say_change
from sysroot.cli.refusals import REFUSED, refusal
from sysroot.deploy.state import SysrootState, options_without_ostree
from sysroot.deploy.updaterecord import AutoUpdateRecord, read_record
from sysroot.errors import SysrootError, UsageError
from sysroot.formats.keyfile import KeyFile

if TYPE_CHECKING:
    from sysroot.deploy.admin import Sysroot

STATUS_SCHEMA = "sysroot-status/v1"


def register(sub) -> argparse._SubParsersAction:
    """Adds `admin` and returns its subcommands: cli/main.py adds admin_upgrade.py's
    verbs to them (so that this module need not import that one)."""
    admin = sub.add_parser("admin", help="Manage deployments (like ostree admin)")
    asub = admin.add_subparsers(dest="admin_command", metavar="COMMAND", parser_class=type(admin))
    add_sysroot_options(admin, os_option=False)
    admin.add_argument(
        "--print-current-dir",
        action="store_true",
        help="Print the directory of the default (first) deployment",
    )
    admin.set_defaults(
        func=lambda a: run_print_current_dir(a) if a.print_current_dir else _usage(admin)
    )

    p = asub.add_parser("init-fs", help="Initialize a root filesystem")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--modern", action="store_true", help="Only boot/ and ostree/")
    p.add_argument("-E", "--epoch", type=int, default=0, help="Accepted for compatibility")
    p.set_defaults(func=run_init_fs)

    for name in ("os-init", "stateroot-init"):
        p = asub.add_parser(name, help="Initialize empty state for given operating system")
        add_sysroot_options(p, os_option=False)
        p.add_argument("osname", metavar="OSNAME")
        p.set_defaults(func=run_os_init)

    p = asub.add_parser("deploy", help="Checkout revision REFSPEC as the new default deployment")
    add_sysroot_options(p)
    p.add_argument("refspec", metavar="REFSPEC")
    p.add_argument("--origin-file", metavar="FILENAME", help="Specify origin file")
    p.add_argument(
        "--overlay-initrd",
        action="append",
        metavar="FILE",
        help="Refused: " + REFUSED["admin deploy --overlay-initrd"],
    )
    p.add_argument(
        "--karg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Set kernel argument, replacing any existing value of NAME",
    )
    p.add_argument(
        "--karg-append",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Append a kernel argument to the merge deployment's (may be repeated)",
    )
    p.add_argument(
        "--karg-delete",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Remove a kernel argument of the merge deployment if present (may be repeated)",
    )
    p.add_argument("--karg-proc-cmdline", action="store_true", help="Import current /proc/cmdline")
    p.add_argument("--karg-none", action="store_true", help="Start with no kernel arguments")
    p.add_argument("--retain", action="store_true", help="Do not delete previous deployments")
    p.add_argument("--retain-pending", action="store_true", help="Keep pending (newer) deployments")
    p.add_argument(
        "--retain-rollback", action="store_true", help="Keep rollback (older) deployments"
    )
    p.add_argument(
        "--not-as-default",
        action="store_true",
        help="Append rather than prepend the new deployment",
    )
    p.add_argument("--no-merge", action="store_true", help="Do not apply the /etc merge")
    p.add_argument("--no-prune", action="store_true", help="Do not prune the repository")
    p.add_argument(
        "--stage",
        action="store_true",
        help="Complete the deployment at shutdown (staged deployments)",
    )
    p.add_argument(
        "--lock-finalization",
        action="store_true",
        help="Stage, and do not finalize at shutdown until unlocked",
    )
    p.set_defaults(func=run_deploy)

    p = asub.add_parser(
        "finalize-staged", help="Make the staged deployment the default (run at shutdown)"
    )
    add_sysroot_options(p, os_option=False)
    p.add_argument(
        "--hold", action="store_true", help="Hold /boot open during finalization (until SIGTERM)"
    )
    p.set_defaults(func=run_finalize_staged)

    p = asub.add_parser(
        "lock-finalization", help="Prevent the staged deployment from being finalized at shutdown"
    )
    add_sysroot_options(p, os_option=False)
    p.add_argument("-u", "--unlock", action="store_true", help="Unlock finalization")
    p.set_defaults(func=run_lock_finalization)

    p = asub.add_parser("unlock", help="Refused: " + REFUSED["admin unlock"])
    add_sysroot_options(p, os_option=False)
    p.add_argument("--hotfix", action="store_true", help="Retain changes across reboots")
    p.add_argument("--transient", action="store_true", help="Mount overlayfs read-only")
    p.set_defaults(func=lambda args: _refuse("admin unlock"))

    p = asub.add_parser("status", help="List deployments")
    add_sysroot_options(p)
    p.add_argument("--json", "-J", action="store_true", help="Machine-readable output")
    p.add_argument(
        "-D",
        "--is-default",
        action="store_true",
        help="Print 'default' if booted deployment is the default, else 'not-default'",
    )
    p.add_argument(
        "-V", "--verify", action="store_true", help="Print the commit verification status"
    )
    p.set_defaults(func=run_status)

    p = asub.add_parser("undeploy", help="Delete deployment INDEX")
    add_sysroot_options(p)
    p.add_argument("index", metavar="INDEX")
    p.set_defaults(func=run_undeploy)

    p = asub.add_parser("cleanup", help="Delete untagged deployments and repository objects")
    add_sysroot_options(p)
    p.set_defaults(func=run_cleanup)

    p = asub.add_parser("config-diff", help="Diff current /etc configuration versus default")
    add_sysroot_options(p)
    p.set_defaults(func=run_config_diff)

    p = asub.add_parser("set-default", help="Make INDEX the default for the next boot")
    add_sysroot_options(p)
    p.add_argument("index", metavar="INDEX")
    p.set_defaults(func=run_set_default)

    p = asub.add_parser(
        "rollback", help="Make the previous deployment the default for the next boot"
    )
    add_sysroot_options(p)
    p.set_defaults(func=run_rollback)

    p = asub.add_parser("pin", help='Change the "pinning" state of a deployment')
    add_sysroot_options(p)
    p.add_argument("indexes", nargs="+", metavar="INDEX")
    p.add_argument("-u", "--unpin", action="store_true", help="Unset pin")
    p.set_defaults(func=run_pin)

    p = asub.add_parser("set-origin", help="Set origin refspec of a deployment")
    add_sysroot_options(p)
    p.add_argument("remote", metavar="REMOTENAME")
    p.add_argument("url", metavar="URL", nargs="?")
    p.add_argument("branch", metavar="BRANCH", nargs="?")
    p.add_argument(
        "--index", metavar="INDEX", help="Change the deployment at INDEX (default: the booted one)"
    )
    p.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Set an option of the new remote (may be repeated)",
    )
    p.set_defaults(func=run_set_origin)

    kargs = asub.add_parser("kargs", help="Change kernel arguments")
    ksub = kargs.add_subparsers(dest="kargs_command", metavar="COMMAND", parser_class=type(admin))
    p = ksub.add_parser("edit-in-place", help="Edit the arguments of every deployment in place")
    add_sysroot_options(p)
    p.add_argument(
        "--append-if-missing",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Append a kernel argument unless it is there already (may be repeated)",
    )
    p.add_argument(
        "--delete-if-present",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Remove a kernel argument where it is present (may be repeated)",
    )
    p.set_defaults(func=run_kargs_edit)

    # ostree's hidden "deprecated commands intended for installer programs"
    inst = asub.add_parser("instutil", help="Commands intended for installer programs")
    isub = inst.add_subparsers(dest="instutil_command", metavar="COMMAND", parser_class=type(admin))
    inst.set_defaults(func=lambda a: _usage(inst))
    p = isub.add_parser("set-kargs", help="Set the kernel arguments of the first deployment")
    add_sysroot_options(p, os_option=False)
    p.add_argument("--import-proc-cmdline", action="store_true", help="Import /proc/cmdline")
    p.add_argument("--merge", action="store_true", help="Merge with previous command line")
    p.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Replace the value of kernel argument NAME (may be repeated)",
    )
    p.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Append a kernel argument (may be repeated)",
    )
    p.add_argument("args", nargs="*", metavar="ARGS", help="Appended, after --append")
    p.set_defaults(func=run_instutil_set_kargs)
    p = isub.add_parser(
        "selinux-ensure-labeled",
        help="Nothing without an SELinux policy, as ostree; refused with one",
    )
    add_sysroot_options(p, os_option=False)
    p.add_argument("subpath", metavar="SUBPATH", nargs="?")
    p.add_argument("prefix", metavar="PREFIX", nargs="?")
    p.set_defaults(func=run_instutil_selinux_ensure_labeled)
    key = "admin instutil grub2-generate"
    p = isub.add_parser("grub2-generate", help="Refused: " + REFUSED[key])
    add_sysroot_options(p, os_option=False)
    p.add_argument("bootversion", metavar="BOOTVERSION", nargs="?")
    p.set_defaults(func=lambda args: _refuse("admin instutil grub2-generate"))
    return asub


def _sysroot(path: str) -> Sysroot:
    # deploy.admin brings all of deploy/ with it (checkout, boot-loader writers, cleanup):
    # imported when a verb runs, so that `admin status` and --help start without it
    # (start-up time, issue 21)
    from sysroot.deploy.admin import Sysroot

    return Sysroot(path)


def run_init_fs(args) -> int:
    if args.epoch not in (0, 1, 2):
        raise UsageError(f"Invalid epoch {args.epoch}: expected 0, 1 or 2")
    _sysroot(args.path).init_fs(modern=args.modern or args.epoch >= 1)
    return 0


def run_os_init(args) -> int:
    _sysroot(args.sysroot).os_init(args.osname)
    print(f"ostree/deploy/{args.osname} initialized as OSTree root")
    return 0


def run_deploy(args) -> int:
    if args.overlay_initrd:
        raise refusal("admin deploy --overlay-initrd")
    origin = None
    if args.origin_file:
        try:
            with open(args.origin_file, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise UsageError(f"--origin-file: {args.origin_file}: not valid UTF-8") from None
        except FileNotFoundError:
            raise UsageError(f"--origin-file: {args.origin_file}: No such file") from None
        # ostree loads it without G_KEY_FILE_KEEP_COMMENTS: comments and blank lines go
        kept = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        origin = KeyFile.parse("\n".join(kept), source=args.origin_file)
    from sysroot.deploy.deploy import DeployOptions, KargOptions

    options = DeployOptions(
        osname=args.os,
        origin=origin,
        kargs=KargOptions(
            tuple(args.karg),
            tuple(args.karg_append),
            tuple(args.karg_delete),
            args.karg_proc_cmdline,
            args.karg_none,
        ),
        no_merge=args.no_merge,
        retain=args.retain,
        retain_pending=args.retain_pending,
        retain_rollback=args.retain_rollback,
        not_as_default=args.not_as_default,
        prune=not args.no_prune,
        stage=args.stage or args.lock_finalization,
        lock_finalization=args.lock_finalization,
    )
    change = _sysroot(args.sysroot).deploy(args.refspec, options)
    if change.summary:  # a staged deployment changes no boot configuration: silent
        say_change(change)
    return 0


def run_finalize_staged(args) -> int:
    sr = _sysroot(args.sysroot)
    if args.hold:
        sr.hold_boot()
        return 0
    change = sr.finalize_staged()
    if change is not None:
        say_change(change)
    return 0


def run_lock_finalization(args) -> int:
    print(_sysroot(args.sysroot).lock_finalization(unlock=args.unlock))
    return 0


_UNLOCKED_STATES = ("hotfix", "development", "transient")


@dataclass(frozen=True)
class _CommitTexts:
    version: str | None
    source_title: str | None
    timestamp: str | None  # ISO 8601, UTC


def _commit_texts(repo, csum: str) -> _CommitTexts:
    """The commit's `version`, `ostree.source-title` and time; None when unreadable
    (ostree stumbles on too: a pruned commit only loses these lines)."""
    try:
        commit = repo.load_commit(csum)
    except SysrootError:
        return _CommitTexts(None, None, None)
    title = commit.metadata.get("ostree.source-title")
    source_title = title.value if title is not None and title.signature == "s" else None
    when = dt.datetime.fromtimestamp(commit.timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _CommitTexts(commit.version, source_title, when)


def status_json(state: SysrootState) -> dict:
    """The `admin status --json` document (schema documented in README.md)."""
    from sysroot.store.repo import Repo

    out = []
    with Repo.open(state.layout.repo) as repo:
        for d in state.deployments:
            booted = state.booted is not None and d.identity == state.booted.identity
            pending, rollback = state.pending_and_rollback(d.osname)
            texts = _commit_texts(repo, d.csum)
            unlocked = d.origin.get("origin", "unlocked") if d.origin is not None else None
            out.append(
                {
                    "index": d.index,
                    "stateroot": d.osname,
                    "checksum": d.csum,
                    "serial": d.deployserial,
                    "version": texts.version,
                    "timestamp": texts.timestamp,
                    "source_title": texts.source_title,
                    "origin_file": d.origin is not None,
                    "origin": d.origin_refspec,
                    "booted": booted,
                    "staged": d.staged,
                    "finalization_locked": d.finalization_locked,
                    "pending": pending is not None and d.identity == pending.identity,
                    "rollback": rollback is not None and d.identity == rollback.identity,
                    "pinned": d.pinned,
                    "unlocked": unlocked if unlocked in _UNLOCKED_STATES else "none",
                    "kargs": options_without_ostree(d.kargs),
                    "bootcsum": d.bootcsum,
                    "bootserial": d.bootserial,
                    "boot_entry": d.entry.filename if d.entry else None,
                    "path": state.deployment_path(d),
                }
            )
    return {
        "schema": STATUS_SCHEMA,
        "sysroot": state.layout.root,
        "bootversion": state.bootversion,
        "subbootversion": state.subbootversion,
        "deployments": out,
        "auto_updates": _auto_update_records(state),
    }


def _auto_update_records(state: SysrootState) -> list[dict]:
    """The last automatic-update run of each stateroot that has had one."""
    records = []
    for osname in sorted({d.osname for d in state.deployments}):
        record = read_record(state.layout, osname)
        if record is not None:
            records.append(asdict(record))
    return records


def format_status(data: dict) -> str:
    """The text `ostree admin status` prints, from the JSON document."""
    if not data["deployments"]:
        return "No deployments.\n"
    lines = []
    for d in data["deployments"]:
        mark = "*" if d["booted"] else " "
        extra = (
            " (staged)"
            if d["staged"]
            else " (pending)"
            if d["pending"]
            else " (rollback)"
            if d["rollback"]
            else ""
        )
        lines.append(f"{mark} {d['stateroot']} {d['checksum']}.{d['serial']}{extra}")
        if d["version"] is not None:
            lines.append(f"    Version: {d['version']}")
        if d["unlocked"] != "none":
            lines.append(f"    Unlocked: {d['unlocked']}")
        if d["pinned"]:
            lines.append("    Pinned: yes")
        if not d["origin_file"]:
            lines.append("    origin: none")
            continue
        if d["origin"] is None:
            lines.append("    origin: <unknown origin type>")
        else:
            lines.append(f"    origin refspec: {d['origin']}")
        if d["source_title"] is not None:
            lines.append(f"    `- {d['source_title']}")
    # not in ostree's output: only once a stateroot has had an automatic-update run
    for record in data.get("auto_updates", ()):
        lines.append(AutoUpdateRecord(**record).line())
    return "\n".join(lines) + "\n"


def _refuse(key: str) -> int:
    raise refusal(key)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_print_current_dir(args) -> int:
    """As ostree: the first deployment's directory, booted or not."""
    state = _sysroot(args.sysroot).load()
    if not state.deployments:
        raise SysrootError("Unable to find a deployment in sysroot")
    print(os.path.abspath(state.deployment_path(state.deployments[0])))
    return 0


def run_status(args) -> int:
    # the state alone, not deploy.admin's Sysroot: reading needs none of deploy/'s
    # writers, and status is what scripts run most (start-up time, issue 21)
    path = os.path.abspath(args.sysroot)
    if not os.path.isdir(path):
        raise SysrootError(f"opendir({path}): No such file or directory")
    state = SysrootState.load(path)
    state.require_initialized()
    if state.staged_error is not None:  # the deployments are still worth showing
        print(f"warning: ignoring the staged deployment: {state.staged_error}", file=sys.stderr)
    if args.is_default:
        if state.booted is None:
            raise SysrootError("Not currently booted into an OSTree system")
        is_default = state.deployments and state.deployments[0].identity == state.booted.identity
        print("default" if is_default else "not-default")
        return 0
    data = status_json(state)
    if args.json:
        if args.verify:
            raise UsageError("--verify is not supported with --json")
        json.dump(data, sys.stdout, indent=2)
        print()
        return 0
    if args.verify and data["deployments"]:
        _status_verified(path, state, data)
        return 0
    sys.stdout.write(format_status(data))
    return 0


def _status_verified(sysroot: str, state: SysrootState, data: dict) -> None:
    """`status -V`, as ostree 2022.7: under each deployment the verification of its
    commit against its origin remote's policy; the first that does not verify stops
    the listing with an error (what was printed before stays)."""
    from functools import partial

    from sysroot.sign.verify import describe_deployment_signatures
    from sysroot.store.remotes import load_remote
    from sysroot.store.repo import Repo, parse_refspec
    from sysroot.store.timestamps import format_glib_time

    with Repo.open(state.layout.repo) as repo:
        for d in data["deployments"]:
            sys.stdout.write(format_status({**data, "deployments": [d]}))
            sys.stdout.flush()  # before an error on stderr, as ostree's output comes
            remote = parse_refspec(d["origin"])[0] if d["origin"] else None
            if remote is None:
                raise SysrootError("Cannot verify deployment without remote")
            lines = describe_deployment_signatures(
                repo,
                load_remote(repo, remote, sysroot=sysroot),
                d["checksum"],
                partial(format_glib_time, local=True),
            )
            print("\n".join(lines) + "\n")


def run_undeploy(args) -> int:
    target, change = _sysroot(args.sysroot).undeploy(args.index)
    if change.summary:  # empty when only a staged deployment went: no boot change
        say_change(change)
    print(f"Deleted deployment {target.name}")
    return 0


def run_cleanup(args) -> int:
    result = _sysroot(args.sysroot).cleanup()
    if result.freed_bytes:
        from sysroot.util.units import format_size

        print(f"Freed objects: {format_size(result.freed_bytes)}")
    return 0


def run_config_diff(args) -> int:
    from sysroot.deploy.etcmerge import diff_etc, format_config_diff

    sr = _sysroot(args.sysroot)
    state = sr.load()
    state.require_initialized()
    osname = args.os or state.default_osname()
    d = state.merge_deployment(osname)
    if d is None:
        raise SysrootError(f"No deployment of stateroot '{osname}'")
    root = state.deployment_path(d)
    fds = [os.open(os.path.join(root, p), os.O_RDONLY | os.O_DIRECTORY) for p in ("usr/etc", "etc")]
    try:
        sys.stdout.write(format_config_diff(diff_etc(*fds)))
    finally:
        for fd in fds:
            os.close(fd)
    return 0


def run_set_default(args) -> int:
    change = _sysroot(args.sysroot).set_default(args.index)
    if change.count_change or change.summary != "already the default":
        say_change(change)
    return 0


def run_rollback(args) -> int:
    target, change = _sysroot(args.sysroot).rollback()
    say_change(change)
    print(f"Next boot: {target.osname} {target.name}")
    return 0


def run_pin(args) -> int:
    sr = _sysroot(args.sysroot)
    for index in args.indexes:
        sr.pin(index, not args.unpin)
        print(f"Deployment {index} is now {'unpinned' if args.unpin else 'pinned'}")
    return 0


def run_set_origin(args) -> int:
    extra = {}
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not sep:
            raise UsageError(f"--set: expected KEY=VALUE, got '{kv}'")
        extra[k] = v
    if args.url is not None:
        # ostree's form: REMOTENAME URL [BRANCH] adds the remote (--set: its settings)
        # and tracks REMOTE:BRANCH
        _sysroot(args.sysroot).set_origin_remote(
            args.remote, args.url, args.branch, args.index, extra
        )
        return 0
    # our shorter form: set-origin REFSPEC (--set: origin keys, GROUP.KEY or KEY)
    _sysroot(args.sysroot).set_origin(args.remote, args.index, extra)
    return 0


def run_instutil_set_kargs(args) -> int:
    """As ostree: /proc/cmdline (BOOT_IMAGE= and initrd= left out) or, with --merge alone,
    the first deployment's arguments, else none; then each --replace, each --append,
    and the ARGS appended."""
    from sysroot.deploy.deploy import KargOptions

    kargs = KargOptions(
        replace=tuple(args.replace),
        append=(*args.append, *args.args),
        proc_cmdline=args.import_proc_cmdline,
        none=not args.import_proc_cmdline and not args.merge,
    )
    say_change(_sysroot(args.sysroot).set_kargs(kargs))
    return 0


def run_instutil_selinux_ensure_labeled(args) -> int:
    """ostree relabels the first deployment with its SELinux policy, and says so and does
    nothing when it has none; sysroot does no labelling, so it refuses the former."""
    state = _sysroot(args.sysroot).load()
    if not state.deployments:
        raise SysrootError("Unable to find a deployment in sysroot")
    path = os.path.abspath(state.deployment_path(state.deployments[0]))
    # where libostree looks for the policy's config: etc/selinux, else usr/etc/selinux
    if any(os.path.exists(os.path.join(path, d, "selinux/config")) for d in ("usr/etc", "etc")):
        raise SysrootError(f"selinux-ensure-labeled: {_NO_SELINUX_LABELLING}")
    print(f"No SELinux policy found in deployment '{path}'")
    return 0


_NO_SELINUX_LABELLING = REFUSED["commit --selinux-policy"]


def run_kargs_edit(args) -> int:
    _sysroot(args.sysroot).kargs_edit_in_place(args.append_if_missing, args.delete_if_present)
    return 0
