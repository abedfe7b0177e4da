"""GLib key files: round trips and GLib's parsing rules."""

from __future__ import annotations

from sysroot.formats.keyfile import KeyFile


def test_round_trip_keeps_comments_and_order():
    text = '# head\n[core]\nrepo_version=1\n# note\nmode=bare\n\n[remote "o"]\nurl=x\n'
    assert KeyFile.parse(text).to_text() == text


def test_repeated_group_merges_into_the_first_like_glib():
    kf = KeyFile.parse("[origin]\nrefspec=a\n\n[x]\nk=1\n\n[origin]\nrefspec=b\nother=c\n")
    assert kf.groups() == ["origin", "x"]
    assert kf.get("origin", "refspec") == "b"
    assert kf.get("origin", "other") == "c"


def test_set_and_escape():
    kf = KeyFile()
    kf.set("g", "k", " leading space\tand tab")
    again = KeyFile.parse(kf.to_text())
    assert again.get("g", "k") == " leading space\tand tab"
