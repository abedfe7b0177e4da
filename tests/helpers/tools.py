"""The two command lines a test drives: the real `ostree` (the oracle) and ours."""

from __future__ import annotations

import subprocess

from sysroot.util.run import clean_env


def _run(argv, *, check, input=None, cwd=None, env=None):
    """env: variables to set, or to unset where the value is None."""
    environ = {k: v for k, v in clean_env(env).items() if v is not None}
    proc = subprocess.run(
        [str(a) for a in argv],
        input=input,
        capture_output=True,
        env=environ,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout.decode(errors='replace')}\n"
            f"stderr: {proc.stderr.decode(errors='replace')}"
        )
    return proc


class Tool:
    """Runs one of the two CLIs; .out() returns stripped stdout as text."""

    def __init__(self, argv0: list[str]):
        self.argv0 = argv0

    def __call__(
        self, *args, check=True, input=None, cwd=None, env=None
    ) -> subprocess.CompletedProcess:
        return _run([*self.argv0, *args], check=check, input=input, cwd=cwd, env=env)

    def out(self, *args, **kw) -> str:
        return self(*args, **kw).stdout.decode().strip()


def in_mount_namespace(script: str, *args: str, pid: bool = False) -> list[str]:
    """argv running the shell script (with args as $1...) in a private mount namespace
    of its own (and a PID namespace too when asked): its mounts vanish with it."""
    namespaces = ["--mount", "--pid", "--fork"] if pid else ["--mount"]
    return [
        "unshare",
        *namespaces,
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "harness",
        *args,
    ]
