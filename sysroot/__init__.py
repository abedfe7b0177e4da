"""sysroot: an image-based OS deployment manager, on-disk compatible with OSTree.

The library API is importable without the CLI::

    from sysroot import Repo, RepoMode
    repo = Repo.open("/ostree/repo")
    checksum = repo.resolve_rev("exampleos/x86_64/stable")
"""

from sysroot.errors import SysrootError

# typing.TYPE_CHECKING without importing typing, which costs `sysroot --version` a tenth
# of its start-up time (mypy reads a module constant of this name the same way)
TYPE_CHECKING = False
if TYPE_CHECKING:  # the real classes for type checkers; at run time __getattr__ loads them
    from sysroot.store.modes import RepoMode
    from sysroot.store.repo import Repo

__all__ = ["Repo", "RepoMode", "SysrootError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy so that `import sysroot.formats.gvariant` stays light.
    if name == "Repo":
        from sysroot.store.repo import Repo

        return Repo
    if name == "RepoMode":
        from sysroot.store.modes import RepoMode

        return RepoMode
    raise AttributeError(name)
