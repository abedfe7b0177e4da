"""Trust paths: however a commit becomes a ref of a remote or a deployment, the remote's
signature policy holds, also when the commit object is already in the repository.

A matrix of (way in) x (policy of the remote "signed") x (what is served) x (how the
commit got into the repository before, if it did):

- ways in, repository level: pull over http, pull over file://, pull
  --commit-metadata-only, pull-local --remote; sysroot level: admin upgrade, upgrade
  --override-commit, admin switch, admin deploy REMOTE:REF, upgrade --deploy-only
  (staged deployments: test_deploy_stage_refused at the end, in a faked booted system);
- policies: gpg-verify (trusting "vendor"), gpg-verify-summary alone, sign-verify
  ed25519 (trusting one key);
- served: an unsigned commit, a wrongly signed one (mallory's GPG key, another ed25519
  key; for gpg-verify-summary: no summary.sig, or one by mallory), and a good one, which
  must go through (so that a refusal is not the setup's);
- before: nothing, the commit pulled through the unverified remote "unv" (same URL), or
  copied with pull-local (no --remote).

ostree 2022.7 runs on the same input where it has it (Debian's has no ed25519) and must
refuse what we refuse, except where we are stricter on purpose: pull-local --remote
(ostree checks only with --gpg-verify: that is what it is compared with), admin deploy
REMOTE:REF and --deploy-only (ostree deploys any local ref; the ref is made here with
`refs --create`, and we check the stored signatures against the remote's policy), and
upgrade --override-commit from a gpg-verify-summary remote (ostree fetches no summary
for a commit checksum; we still require it signed).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sysroot.sign import ed25519
from sysroot.sign.commit import ed25519_sign_commit
from sysroot.store.repo import Repo
from tests.conftest import one_error_line
from tests.deploy.conftest import make_sysroot  # noqa: F401 (a fixture)
from tests.deploy.test_staged import make_booted  # noqa: F401 (a fixture)
from tests.deploy.test_upgrade import ours
from tests.helpers.keys import GpgKey, make_gpg_key, new_ed25519_key, stop_gpg_agents
from tests.helpers.sysroots import OSNAME, clear_immutable_under, make_os_tree
from tests.pull.serve_helpers import RepoServer, refs_of

OS = f"--os={OSNAME}"
BASE = f"{OSNAME}/base"  # the deployed commit: signed by every trusted key
KINDS = {
    "gpg": ("unsigned", "wrong", "good"),
    "gpgsum": ("unsigned", "wrong", "good"),
    "ed": ("unsigned", "wrong", "good"),
}
PRESEED = (None, "unv", "pull-local")
MATRIX_SIZE: dict[str, int] = {}


@dataclass
class World:
    base: Path
    ostree: object
    vendor: GpgKey
    mallory: GpgKey
    ed_public: bytes
    servers: dict[str, RepoServer]  # "plain" (no summary.sig), "badsum", "goodsum"
    dirs: dict[str, Path]
    commits: dict[str, str]  # branch suffix -> checksum
    templates: dict = field(default_factory=dict)

    def from_template(self, key: tuple, make, dest: Path) -> Path:
        """dest: a copy (cp -a: hard links kept) of what make(path) built once for key,
        so that each case does not pay for the same setup again."""
        template = self.templates.get(key)
        if template is None:
            template = self.base / f"template-{len(self.templates)}"
            make(template)
            self.templates[key] = template
        subprocess.run(["cp", "-a", str(template), str(dest)], check=True)
        return dest

    def served(self, policy: str, kind: str) -> tuple[str, str]:
        """(served repository name, branch) of a case."""
        if policy == "gpgsum":
            return {"unsigned": "plain", "wrong": "badsum", "good": "goodsum"}[
                kind
            ], f"{OSNAME}/unsigned"
        return "plain", f"{OSNAME}/{kind}"

    def url(self, name: str, scheme: str = "http") -> str:
        return self.servers[name].url if scheme == "http" else f"file://{self.dirs[name]}"

    def add_remotes(self, repo: Path, policy: str, url: str) -> None:
        """The remote under test ("signed") and the unverified one ("unv"): setup, by
        ostree for both tools' repositories."""
        o = self.ostree
        sets = {
            "gpg": ["--set=gpg-verify=true"],
            "gpgsum": ["--set=gpg-verify=false", "--set=gpg-verify-summary=true"],
            "ed": [
                "--set=gpg-verify=false",
                "--set=sign-verify=ed25519",
                f"--set=verification-ed25519-key={ed25519.encode_key(self.ed_public)}",
            ],
        }
        o("remote", "add", f"--repo={repo}", *sets[policy], "signed", url)
        if policy != "ed":
            o("remote", "gpg-import", f"--repo={repo}", "signed", "-k", str(self.vendor.keyring))
        o("remote", "add", f"--repo={repo}", "--no-gpg-verify", "unv", url)

    def preseed(self, repo: Path, how: str | None, source: str, branch: str) -> None:
        if how == "unv":
            self.ostree("pull", f"--repo={repo}", "unv", branch)
        elif how == "pull-local":
            self.ostree("pull-local", f"--repo={repo}", str(self.dirs[source]), branch)


def _commit(ostree, repo: Path, base: Path, branch: str, n: int, ts: str) -> str:
    tree = make_os_tree(base / f"tree-{n}", extra={"usr/share/serial": f"{n}\n"})
    return ostree.out(
        "commit",
        f"--repo={repo}",
        f"--branch={branch}",
        "-s",
        f"c{n}",
        f"--timestamp={ts}",
        f"--tree=dir={tree}",
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, ostree):
    base = tmp_path_factory.mktemp("trust")
    vendor, mallory = make_gpg_key(base, "vendor"), make_gpg_key(base, "mallory")
    (good_ed, good_public), (bad_ed, _) = new_ed25519_key(), new_ed25519_key()
    plain = base / "plain"
    ostree("init", f"--repo={plain}", "--mode=archive")
    commits = {}
    for n, (name, ts) in enumerate(
        (
            ("base", "2023-01-01 00:00:00"),
            ("unsigned", "2023-02-01 00:00:00"),
            ("wrong", "2023-02-02 00:00:00"),
            ("good", "2023-02-03 00:00:00"),
        )
    ):
        commits[name] = _commit(ostree, plain, base, f"{OSNAME}/{name}", n, ts)

    def gpg_sign(key, checksum: str) -> None:
        ostree("gpg-sign", f"--repo={plain}", f"--gpg-homedir={key.home}", checksum, key.fpr)

    for name, key, ed in (
        ("base", vendor, good_ed),
        ("good", vendor, good_ed),
        ("wrong", mallory, bad_ed),
    ):
        gpg_sign(key, commits[name])
        with Repo.open(plain) as r:
            ed25519_sign_commit(r, commits[name], [ed])
    ostree("summary", f"--repo={plain}", "-u")
    dirs = {"plain": plain}
    for name, key in (("badsum", mallory), ("goodsum", vendor)):
        dirs[name] = base / name
        shutil.copytree(plain, dirs[name], symlinks=True)
        ostree(
            "summary",
            f"--repo={dirs[name]}",
            "-u",
            f"--gpg-sign={key.fpr}",
            f"--gpg-homedir={key.home}",
        )
    servers = {name: RepoServer(d).__enter__() for name, d in dirs.items()}
    try:
        yield World(base, ostree, vendor, mallory, good_public, servers, dirs, commits)
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)
        stop_gpg_agents(vendor, mallory)
        clear_immutable_under(base)


def _cases(ways, preseeds) -> list:
    out = []
    for way in ways:
        for policy, kinds in KINDS.items():
            for kind in kinds:
                for how in preseeds(way):
                    out.append(
                        pytest.param(way, policy, kind, how, id=f"{way}-{policy}-{kind}-{how}")
                    )
    return out


@pytest.fixture(autouse=True)
def _mutable_afterwards(tmp_path):
    yield
    clear_immutable_under(tmp_path)  # deployment roots are immutable


def _in_process(argv: list[str]) -> subprocess.CompletedProcess:
    rc, out, err = ours(*argv)
    return subprocess.CompletedProcess(argv, rc, out.encode(), err.encode())


def _same_refusal(ra, rb) -> None:
    """Both refused; ours on one line, saying what ostree says (we also name the remote)."""
    line = one_error_line(rb).replace(' from remote "signed"', "")
    assert ra.returncode != 0, ra.stdout
    theirs = ra.stderr.decode().strip().splitlines()[-1]
    for phrase in (
        "no signatures found",
        "none are in trusted keyring",
        "Signature verification enabled",
    ):
        if phrase.lower() in theirs.lower():
            assert phrase.lower() in line.lower(), (line, theirs)
            return
    assert "signature" in line.lower() or "gpg" in line.lower(), (line, theirs)


# ---------------------------------------------------------------- repository level
REPO_WAYS = ("http", "file", "metadata-only", "pull-local")


@pytest.mark.parametrize(
    ("way", "policy", "kind", "preseed"), _cases(REPO_WAYS, lambda way: PRESEED)
)
def test_repo_paths(world: World, tmp_path, way, policy, kind, preseed):
    MATRIX_SIZE["repo"] = MATRIX_SIZE.get("repo", 0) + 1
    source, branch = world.served(policy, kind)
    url = world.url(source, "file" if way == "file" else "http")
    repos = {}

    def make(repo: Path) -> None:
        world.ostree("init", f"--repo={repo}", "--mode=bare-user")
        world.add_remotes(repo, policy, url)

    for tool in ("ostree", "sysroot"):
        repo = world.from_template(("repo", policy, url), make, tmp_path / tool)
        world.preseed(repo, preseed, source, branch)
        repos[tool] = repo
    before = refs_of(repos["sysroot"])
    if way == "pull-local":
        args = ["pull-local", "--remote=signed", str(world.dirs[source]), branch]
        oracle = args[:2] + ["--gpg-verify"] + args[2:]  # ostree checks only when asked
    else:
        args = [
            "pull",
            *(["--commit-metadata-only"] if way == "metadata-only" else []),
            "signed",
            branch,
        ]
        oracle = args
    rb = _in_process([args[0], f"--repo={repos['sysroot']}", *args[1:]])
    ra = None
    if policy != "ed" and not (way == "pull-local" and policy == "gpgsum"):
        ra = world.ostree(oracle[0], f"--repo={repos['ostree']}", *oracle[1:], check=False)
    checksum = world.commits[branch.split("/")[1]]
    ref = f"refs/remotes/signed/{branch}"
    if kind == "good":
        assert rb.returncode == 0, rb.stderr
        assert refs_of(repos["sysroot"])[ref] == checksum
        if ra is not None:
            assert ra.returncode == 0, ra.stderr
            assert refs_of(repos["ostree"])[ref] == checksum
        return
    if ra is not None:
        _same_refusal(ra, rb)
        assert ref not in refs_of(repos["ostree"])
    else:
        one_error_line(rb)
    assert refs_of(repos["sysroot"]) == before


def test_present_commit_refetches_commitmeta(world: World, tmp_path):
    """As ostree: for a commit already here, a verifying remote's .commitmeta is asked
    for again; when the remote has none, the detached metadata here is what is checked
    (a commit signed locally by the vendor's key goes through). A remote that asks for
    no signature costs us no request for it."""
    branch = f"{OSNAME}/unsigned"
    c = world.commits["unsigned"]
    commitmeta = f"objects/{c[:2]}/{c[2:]}.commitmeta"
    server = world.servers["plain"]
    results = {}
    for tool in ("ostree", "sysroot"):
        repo = tmp_path / tool
        world.ostree("init", f"--repo={repo}", "--mode=bare-user")
        world.add_remotes(repo, "gpg", server.url)
        world.preseed(repo, "unv", "plain", branch)
        server.requests.clear()
        pull = ["pull", f"--repo={repo}", "unv", branch]
        rc = world.ostree(*pull).returncode if tool == "ostree" else _in_process(pull).returncode
        results[tool, "unv"] = (rc, commitmeta in server.requests)
        world.ostree(
            "gpg-sign",
            f"--repo={repo}",
            f"--gpg-homedir={world.vendor.home}",
            world.commits["unsigned"],
            world.vendor.fpr,
        )
        server.requests.clear()
        pull = ["pull", f"--repo={repo}", "signed", branch]
        rc = (
            world.ostree(*pull, check=False).returncode
            if tool == "ostree"
            else _in_process(pull).returncode
        )
        results[tool, "signed"] = (rc, commitmeta in server.requests)
        assert refs_of(repo).get(f"refs/remotes/signed/{branch}") == world.commits["unsigned"]
    # ostree asks for it through the unverifying remote too; we save that round trip
    assert results == {
        ("ostree", "unv"): (0, True),
        ("sysroot", "unv"): (0, False),
        ("ostree", "signed"): (0, True),
        ("sysroot", "signed"): (0, True),
    }


def test_local_source_ref_must_match_signed_summary(world: World, tmp_path):
    """A local source (file:// remote, pull-local --remote) for a gpg-verify-summary
    remote: a ref of the source that is not the commit its signed summary names is
    refused (the signature vouches for the summary's commits, not for refs/heads)."""
    src = tmp_path / "src"
    subprocess.run(["cp", "-a", str(world.dirs["goodsum"]), str(src)], check=True)
    (src / f"refs/heads/{OSNAME}/unsigned").write_text(world.commits["wrong"] + "\n")
    repo = tmp_path / "repo"
    world.ostree("init", f"--repo={repo}", "--mode=bare-user")
    world.add_remotes(repo, "gpgsum", f"file://{src}")
    for argv in (
        ["pull-local", f"--repo={repo}", "--remote=signed", str(src)],
        ["pull", f"--repo={repo}", "signed"],
    ):
        rb = _in_process([*argv, f"{OSNAME}/unsigned"])
        assert "is not the commit its signed summary names" in one_error_line(rb)
        assert refs_of(repo) == {}
    # ostree resolves the ref through the signed summary instead: the summary's commit
    world.ostree("pull", f"--repo={repo}", "signed", f"{OSNAME}/unsigned")
    assert refs_of(repo) == {f"refs/remotes/signed/{OSNAME}/unsigned": world.commits["unsigned"]}


@pytest.mark.parametrize("flag", ["--gpg-verify", "--gpg-verify-summary"])
def test_pull_local_gpg_flags_like_ostree(world: World, tmp_path, flag):
    """pull-local --gpg-verify / --gpg-verify-summary, as ostree: they need --remote, and
    they turn the check on even for a remote that does not ask for it ("unv"). A good
    commit (with a good summary) still goes through."""
    src = world.dirs["plain"]
    branch = f"{OSNAME}/unsigned"
    for tool in ("ostree", "sysroot"):
        repo = tmp_path / tool
        world.ostree("init", f"--repo={repo}", "--mode=bare-user")
        world.add_remotes(repo, "gpg", world.url("plain"))
        run = (
            (lambda *a: world.ostree(*a, check=False))
            if tool == "ostree"
            else (lambda *a: _in_process(list(a)))
        )
        r = run("pull-local", f"--repo={repo}", flag, str(src), branch)
        assert "Must specify remote name to enable gpg verification" in one_error_line(r)
        r = run("pull-local", f"--repo={repo}", "--remote=unv", flag, str(src), branch)
        line = one_error_line(r)
        assert ("no signatures found" if flag == "--gpg-verify" else "summary") in line.lower()
        assert refs_of(repo) == {}
        good = world.dirs["goodsum"]
        r = run(
            "pull-local", f"--repo={repo}", "--remote=signed", flag, str(good), f"{OSNAME}/good"
        )
        assert r.returncode == 0, r.stderr
        assert refs_of(repo) == {f"refs/remotes/signed/{OSNAME}/good": world.commits["good"]}


# ---------------------------------------------------------------- sysroot level
SYSROOT_WAYS = ("upgrade", "override-commit", "switch", "deploy", "deploy-only")


def _make_sysroot(world: World, path: Path, policy: str, source: str) -> Path:
    """A sysroot with the base commit deployed (origin signed:BASE): setup, by ostree."""
    o = world.ostree
    path.mkdir()
    o("admin", "init-fs", str(path))
    o("admin", "os-init", f"--sysroot={path}", OSNAME)
    repo = path / "ostree/repo"
    world.add_remotes(repo, policy, world.url(source))
    o("pull-local", f"--repo={repo}", "--remote=signed", str(world.dirs[source]), BASE)
    o("admin", "deploy", f"--sysroot={path}", OS, f"signed:{BASE}")
    return path


def _deployments(path: Path) -> list[str]:
    d = path / "ostree/deploy" / OSNAME / "deploy"
    return sorted(p.name for p in d.iterdir())


def _set_origin(path: Path, refspec: str) -> None:
    (origin,) = (path / "ostree/deploy" / OSNAME / "deploy").glob("*.origin")
    origin.write_text(f"[origin]\nrefspec={refspec}\n")


def _sysroot_preseeds(way: str) -> tuple:
    # a ref made locally (deploy, --deploy-only) needs the commit there already
    return ("unv",) if way in ("deploy", "deploy-only") else (None, "unv")


@pytest.mark.parametrize(
    ("way", "policy", "kind", "preseed"), _cases(SYSROOT_WAYS, _sysroot_preseeds)
)
def test_sysroot_paths(world: World, tmp_path, way, policy, kind, preseed):
    source, branch = world.served(policy, kind)
    checksum = world.commits[branch.split("/")[1]]
    local_ref = way in ("deploy", "deploy-only")  # the ref is made locally: no pull
    MATRIX_SIZE["sysroot"] = MATRIX_SIZE.get("sysroot", 0) + 1
    roots = {
        tool: world.from_template(
            ("sysroot", policy, source),
            lambda p: _make_sysroot(world, p, policy, source),
            tmp_path / tool,
        )
        for tool in ("ostree", "sysroot")
    }
    for root in roots.values():
        repo = root / "ostree/repo"
        world.preseed(repo, preseed, source, branch)
        if local_ref:
            world.ostree("refs", f"--repo={repo}", f"--create=signed:{branch}", checksum)
        if way in ("upgrade", "deploy-only"):
            _set_origin(root, f"signed:{branch}")
    args = {
        "upgrade": ["upgrade", OS],
        "override-commit": ["upgrade", OS, f"--override-commit={checksum}"],
        "switch": ["switch", OS, f"signed:{branch}"],
        "deploy": ["deploy", OS, f"signed:{branch}"],
        "deploy-only": ["upgrade", OS, "--deploy-only"],
    }[way]
    before = {t: (_deployments(r), refs_of(r / "ostree/repo")) for t, r in roots.items()}
    rb = _in_process(["admin", args[0], f"--sysroot={roots['sysroot']}", *args[1:]])
    ra = (
        world.ostree("admin", args[0], f"--sysroot={roots['ostree']}", *args[1:], check=False)
        if policy != "ed"
        else None
    )
    after = _deployments(roots["sysroot"])
    # a ref made locally for a remote whose only check is its signed summary: nothing
    # stored can vouch for the commit or against it, so neither tool refuses (a limit)
    if kind == "good" or (local_ref and policy == "gpgsum"):
        assert rb.returncode == 0, rb.stderr
        assert any(n.startswith(checksum) for n in after)
        if ra is not None:
            assert ra.returncode == 0, ra.stderr
        return
    one_error_line(rb)
    assert after == before["sysroot"][0]  # no deployment
    refs = refs_of(roots["sysroot"] / "ostree/repo")
    if not local_ref:
        assert refs == before["sysroot"][1]
        assert checksum not in [c for r, c in refs.items() if "/signed/" in r]
    if ra is None:
        return
    if local_ref or (way == "override-commit" and policy == "gpgsum"):
        # Stricter on purpose, recorded: ostree deploys any local ref; and it fetches no
        # summary at all for a pull of a commit checksum, where we still require the
        # remote's summary to be signed as configured
        assert ra.returncode == 0, ra.stderr
        assert any(n.startswith(checksum) for n in _deployments(roots["ostree"]))
    else:
        _same_refusal(ra, rb)
        assert _deployments(roots["ostree"]) == before["ostree"][0]


def test_matrix_size_reported():
    """Runs last in this module (pytest keeps file order): prints what the matrix ran."""
    print(f"\ntrust matrix: {MATRIX_SIZE}")
    expected_repo = len(REPO_WAYS) * sum(len(k) for k in KINDS.values()) * len(PRESEED)
    if MATRIX_SIZE.get("repo") not in (None, expected_repo):
        pytest.fail(f"repo cases run: {MATRIX_SIZE['repo']} of {expected_repo}")


# ---------------------------------------------------------------- admin status -V
def _origins(root: Path, refspec: str) -> None:
    for origin in (root / "ostree/deploy" / OSNAME / "deploy").glob("*.origin"):
        origin.write_text(f"[origin]\nrefspec={refspec}\n")


def test_status_verify_like_ostree(world: World, tmp_path):
    """-V prints each deployment's signatures as ostree does, and refuses (on one line,
    after the deployments listed before) where ostree does."""
    root = _make_sysroot(world, tmp_path / "sr", "gpg", "plain")
    repo = root / "ostree/repo"

    def both(expect_ok: bool = True, same_error: bool = True):
        ra = world.ostree("admin", "status", "-V", f"--sysroot={root}", check=False)
        rb = _in_process(["admin", "status", "-V", f"--sysroot={root}"])
        assert rb.stdout.decode() == ra.stdout.decode()
        assert (ra.returncode == 0) == (rb.returncode == 0) == expect_ok, (ra, rb)
        if not expect_ok:
            line = one_error_line(rb)
            if same_error:
                assert line == ra.stderr.decode().strip()
        return rb

    out = both().stdout.decode()
    assert 'GPG: Good signature from "vendor <vendor@example.com>"\n\n' in out
    # a second deployment whose commit has mallory's signature only: the listing stops
    # there (ostree's error takes two lines, ours one)
    world.ostree(
        "pull-local",
        f"--repo={repo}",
        str(world.dirs["plain"]),
        f"{OSNAME}/wrong",
        f"{OSNAME}/unsigned",
    )
    world.ostree("admin", "deploy", f"--sysroot={root}", OS, "--retain", world.commits["wrong"])
    _origins(root, f"signed:{BASE}")
    both(expect_ok=False, same_error=False)
    world.ostree("admin", "undeploy", f"--sysroot={root}", "0")
    world.ostree("admin", "deploy", f"--sysroot={root}", OS, "--retain", world.commits["unsigned"])
    _origins(root, f"signed:{BASE}")
    both(expect_ok=False)  # Can't verify commit without detached metadata
    world.ostree("admin", "undeploy", f"--sysroot={root}", "0")
    for refspec in (f"unv:{BASE}", BASE, f"gone:{BASE}"):  # no policy, no remote, no such
        _origins(root, refspec)
        both(expect_ok=False)
    # ed25519: Debian's ostree has none ("Requested signature type is not implemented");
    # ours prints the engine's message, and refuses a commit signed by another key
    key = ed25519.encode_key(world.ed_public)
    world.ostree(
        "remote",
        "add",
        f"--repo={repo}",
        "--set=gpg-verify=false",
        "--set=sign-verify=ed25519",
        f"--set=verification-ed25519-key={key}",
        "ed",
        world.url("plain"),
    )
    _origins(root, f"ed:{BASE}")
    rb = _in_process(["admin", "status", "-V", f"--sysroot={root}"])
    assert rb.returncode == 0, rb.stderr
    assert rb.stdout.decode().endswith(
        f"    origin refspec: ed:{BASE}\n"
        f"ed25519: Signature verified successfully with key '{key}'\n\n"
    )
    world.ostree("admin", "deploy", f"--sysroot={root}", OS, "--retain", world.commits["wrong"])
    _origins(root, f"ed:{BASE}")
    rb = _in_process(["admin", "status", "-V", f"--sysroot={root}"])
    assert "ed25519" in one_error_line(rb)
    assert rb.stdout.decode().count("origin refspec") == 1  # stopped at the first
    # not with --json: refused, not ignored
    rb = _in_process(["admin", "status", "-V", "--json", f"--sysroot={root}"])
    assert one_error_line(rb) == "error: --verify is not supported with --json"


# ---------------------------------------------------------------- staged deployments
def test_deploy_stage_refused(make_booted, ostree):  # noqa: F811 (the fixture)
    """`admin deploy --stage REMOTE:REF` (in a faked booted system) of an unsigned commit
    of a gpg-verify remote stages nothing; ostree stages any local ref (recorded)."""
    b = make_booted("sr", by="sysroot")
    repo = b.path / "ostree/repo"
    ostree(
        "remote", "add", f"--repo={repo}", "--set=gpg-verify=true", "signed", "http://127.0.0.1:9/"
    )  # never asked: the ref is made here
    ostree("refs", f"--repo={repo}", f"--create=signed:{OSNAME}/x", b.v2)
    before = b.deployments()
    rb = b("sysroot", "admin", "deploy", "--stage", OS, f"signed:{OSNAME}/x", check=False)
    assert "GPG verification enabled, but no signatures found" in one_error_line(rb)
    assert b.deployments() == before and not b.staged_file.exists()
    b("ostree", "admin", "deploy", "--stage", OS, f"signed:{OSNAME}/x")
    assert b.staged_file.exists()
