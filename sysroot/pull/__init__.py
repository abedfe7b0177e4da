"""Fetching from remote repositories: the HTTP(S) and file:// fetchers, `.filez` decoding,
the pull with its forked fetch workers, the progress line.

May import `util`, `formats`, `store` (where objects land; remote configuration lives in
`store.remotes`) and `sign` (each commit is verified before it is stored). Never `boot`,
`deploy`, `health` or `cli`.
"""
