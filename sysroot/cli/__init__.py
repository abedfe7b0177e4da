"""The command line, spelled as `ostree` spells it: parse the words, call the library,
print. `main.py` dispatches lazily (start-up time), `common.py` holds what command modules
share, `commands/` has one module per command group.

May import every other package; nothing imports `cli`.
"""
