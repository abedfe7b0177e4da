"""Remotes: `[remote "NAME"]` groups, stored exactly where ostree 2022.7 stores them.

Where remotes are read from:
* the repository's `config`, always;
* `remotes.d/*.conf` files (same group syntax, any number of remotes per file) when the
  repository is a system repository: opened through a sysroot (`--sysroot=S`:
  `S/etc/ostree/remotes.d`) or the host's `/ostree/repo` (`/etc/ostree/remotes.d`).

Where `remote add` writes a new remote: into `remotes.d/NAME.conf` only when the
sysroot is a deployment root rather than the physical root (libostree's test: a
`sysroot/` directory exists inside it, or it is the booted `/`) and
`core.add-remotes-config-dir` is not false; otherwise into the repository `config`.
An existing remote is always changed where it is defined.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sysroot.errors import FormatError, NotFoundError, SysrootError, UsageError
from sysroot.formats.keyfile import KeyFile
from sysroot.store.repo import Repo
from sysroot.util import fsutil

REMOTES_D = "etc/ostree/remotes.d"
SIGN_ENGINES = ("ed25519",)  # the signature engines this implementation has
_GROUP_RE = re.compile(r'^remote "(.+)"$', re.DOTALL)
_NAME_RE = re.compile(r"^[\w\d][-._\w\d]*$", re.ASCII)
_URL_SCHEMES = ("file://", "http://", "https://")
_TRUE, _FALSE = ("true", "1"), ("false", "0")


def group_name(name: str) -> str:
    return f'remote "{name}"'


def validate_remote_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise UsageError(f"Invalid remote name {name}")


def keyring_path(repo: Repo, name: str) -> str:
    """The per-remote GPG keyring `remote gpg-import` writes (libostree's name)."""
    return os.path.join(repo.path, f"{name}.trustedkeys.gpg")


@dataclass
class Remote:
    name: str
    url: str  # as configured (file://, http://, https://); "" for a metalink remote
    options: dict[str, str] = field(default_factory=dict)  # every other key, raw
    source: str = ""  # path of the file the remote is defined in

    def option(self, key: str, default: str | None = None) -> str | None:
        if key == "url":
            return self.url or default
        return self.options.get(key, default)

    def option_bool(self, key: str, default: bool) -> bool:
        value = self.option(key)
        if value is None:
            return default
        if value.strip() in _TRUE:
            return True
        if value.strip() in _FALSE:
            return False
        raise FormatError(
            f'Remote "{self.name}" ({self.source}): key "{key}" has value '
            f'"{value}" which is not a boolean'
        )

    def option_number(self, key: str, default: float, *, integer: bool = False) -> float:
        """A positive number option (`max-metadata-size`, `stall-timeout-secs`)."""
        value = self.option(key)
        if value is None:
            return default
        try:
            number = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            number = 0
        if not number > 0 or number == float("inf"):
            raise FormatError(
                f'Remote "{self.name}" ({self.source}): key "{key}" has value '
                f'"{value}" which is not a positive '
                f"{'integer' if integer else 'number'}"
            )
        return number

    @property
    def is_file_url_name(self) -> bool:
        """ostree's pull-by-URL: a 'remote' named by a file:// URL, never verified."""
        return self.name.startswith("file://")

    @property
    def gpg_verify(self) -> bool:
        return False if self.is_file_url_name else self.option_bool("gpg-verify", True)

    @property
    def gpg_verify_summary(self) -> bool:
        return self.option_bool("gpg-verify-summary", False)

    def _engines(self, key: str) -> list[str]:
        raw = self.option(key)
        if raw is None or raw.strip() in _FALSE or not raw.strip():
            return []
        if raw.strip() in _TRUE:
            return list(SIGN_ENGINES)  # "any compiled engine", as ostree
        # a GKeyFile list (`ed25519;`); `remote add --sign-verify` writes a comma list
        out: list[str] = []
        for item in re.split(r"[;,]", raw):
            item = item.strip()
            if item and item not in out:
                out.append(item)
        return out

    @property
    def sign_verify(self) -> list[str]:
        return self._engines("sign-verify")

    @property
    def sign_verify_summary(self) -> list[str]:
        return self._engines("sign-verify-summary")

    @property
    def sign_verify_is_list(self) -> bool:
        """True when sign-verify names engines explicitly: their keys are then required."""
        raw = (self.option("sign-verify") or "").strip()
        return bool(raw) and raw not in _TRUE + _FALSE

    @property
    def branches(self) -> list[str]:
        return [b for b in (self.option("branches") or "").split(";") if b]


# ------------------------------------------------------------------ where remotes live


def _is_host_system_repo(repo: Repo) -> bool:
    try:
        a, b = os.stat("/ostree/repo"), os.fstat(repo.dfd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def remotes_dirs(repo: Repo, sysroot: str | None = None) -> tuple[str | None, str | None]:
    """(directory remotes are read from, directory new remotes are written to)."""
    if sysroot is not None:
        root = os.fspath(sysroot)
        deployment_root = os.path.lexists(os.path.join(root, "sysroot"))
    elif _is_host_system_repo(repo):
        root, deployment_root = "/", True
    else:
        return None, None
    read = os.path.join(root, REMOTES_D)
    add_there = repo.config.get_bool("core", "add-remotes-config-dir", True)
    return read, (read if deployment_root and add_there else None)


def _config_path(repo: Repo) -> str:
    return os.path.join(repo.path, "config")


def _remotes_in(kf: KeyFile, source: str) -> list[Remote]:
    out = []
    for group in kf.groups():
        m = _GROUP_RE.match(group)
        if not m:
            continue
        options = {k: kf.get(group, k) or "" for k in kf.keys(group)}
        url = options.pop("url", "")
        out.append(Remote(m.group(1), url, options, source))
    return out


def _read_keyfile(path: str) -> KeyFile:
    try:
        with open(path, encoding="utf-8") as f:
            return KeyFile.parse(f.read(), source=path)
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not valid UTF-8") from None


def _scan(repo: Repo, sysroot: str | None) -> dict[str, Remote]:
    found: dict[str, Remote] = {}
    remotes = _remotes_in(repo.config, _config_path(repo))
    read_dir, _ = remotes_dirs(repo, sysroot)
    if read_dir is not None:
        try:
            entries = sorted(os.scandir(read_dir), key=lambda e: e.name)
        except FileNotFoundError:
            entries = []
        for e in entries:
            if e.name.endswith(".conf") and e.is_file():
                remotes += _remotes_in(_read_keyfile(e.path), e.path)
    for r in remotes:
        if r.name in found:
            raise FormatError(f'Multiple specifications found for remote "{r.name}"')
        found[r.name] = r
    return found


def list_remotes(repo: Repo, *, sysroot: str | None = None) -> list[Remote]:
    """Every configured remote, sorted by name (strcmp, as ostree)."""
    remotes = _scan(repo, sysroot)
    return [remotes[n] for n in sorted(remotes, key=lambda n: n.encode())]


def load_remote(repo: Repo, name: str, *, sysroot: str | None = None) -> Remote:
    if name.startswith("file://"):
        return Remote(name, name, {}, "")
    remote = _scan(repo, sysroot).get(name)
    if remote is None:
        raise NotFoundError(f'Remote "{name}" not found')
    return remote


# ------------------------------------------------------------------ changing remotes


def _validate_url(name: str, url: str) -> None:
    target = url
    for prefix in ("metalink=", "mirrorlist="):
        if url.startswith(prefix):
            target = url[len(prefix) :]
            break
    if (
        not target.startswith(_URL_SCHEMES)
        or len(target) <= len(target.split("//")[0]) + 2
        or any(c in target for c in "\n\r\t ")
        or not target.isprintable()
    ):
        raise UsageError(
            f"Invalid URL '{url}' for remote {name}: expected a file://, http:// or https:// URL"
        )


def validate_option_key(key: str) -> None:
    if not key or any(c in key for c in "=[]\n\r") or key != key.strip() or not key.isprintable():
        raise UsageError(f"Invalid remote option name '{key}'")


def _fill_group(
    kf: KeyFile, name: str, url: str, branches: Iterable[str], options: Mapping[str, str]
) -> None:
    """The keys ostree writes, in its order; a repeated key keeps its first position."""
    group = group_name(name)
    if url.startswith("metalink="):
        kf.set(group, "metalink", url[len("metalink=") :])
    else:
        kf.set(group, "url", url)
    branches = list(branches)
    if branches:
        kf.set_list(group, "branches", branches)
    for key, value in options.items():
        kf.set(group, key, value)


def _write_keyfile(repo: Repo, path: str, kf: KeyFile) -> None:
    fsutil.atomic_write(path, kf.to_text().encode(), mode=0o644, fsync=repo.fsync_enabled)


def add_remote(
    repo: Repo,
    name: str,
    url: str,
    *,
    options: Mapping[str, str],
    branches: Iterable[str] = (),
    if_not_exists: bool = False,
    force: bool = False,
    sysroot: str | None = None,
) -> Remote:
    """Add (or with force, replace) a remote; returns it as now configured."""
    validate_remote_name(name)
    if if_not_exists and force:
        raise UsageError("Can only specify one of --if-not-exists and --force")
    _validate_url(name, url)
    for key in options:
        validate_option_key(key)
    branches = list(branches)
    existing = _scan(repo, sysroot).get(name)
    if existing is not None and if_not_exists:
        return existing
    config_path = _config_path(repo)
    if existing is not None and not force:
        where = "(in config)" if existing.source == config_path else existing.source
        raise SysrootError(f'Remote configuration for "{name}" already exists: {where}')

    if existing is not None:
        path = existing.source
    else:
        _, write_dir = remotes_dirs(repo, sysroot)
        path = config_path if write_dir is None else os.path.join(write_dir, f"{name}.conf")

    if path == config_path:
        repo.config.remove_group(group_name(name))  # --force: the new group goes last
        _fill_group(repo.config, name, url, branches, options)
        repo.write_config()
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        kf = _read_keyfile(path) if os.path.exists(path) else KeyFile()
        kf.remove_group(group_name(name))
        _fill_group(kf, name, url, branches, options)
        _write_keyfile(repo, path, kf)
    return load_remote(repo, name, sysroot=sysroot)


def delete_remote(
    repo: Repo, name: str, *, if_exists: bool = False, sysroot: str | None = None
) -> None:
    """Remove a remote from where it is defined, and its imported GPG keyring."""
    validate_remote_name(name)
    remote = _scan(repo, sysroot).get(name)
    if remote is None:
        if if_exists:
            return
        raise NotFoundError(f'Remote "{name}" not found')
    if remote.source == _config_path(repo):
        repo.config.remove_group(group_name(name))
        repo.write_config()
    else:
        kf = _read_keyfile(remote.source)
        kf.remove_group(group_name(name))
        if kf.groups():
            # ostree unlinks the whole file; other remotes defined in it are kept here
            _write_keyfile(repo, remote.source, kf)
        else:
            os.unlink(remote.source)
            fsutil.fsync_dir(os.path.dirname(remote.source))
    try:
        os.unlink(keyring_path(repo, name))
    except FileNotFoundError:
        pass
