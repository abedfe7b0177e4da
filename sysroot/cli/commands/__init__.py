"""One module per command group. Each imports the library and `cli.common`, never another
command module (a lint test checks)."""
