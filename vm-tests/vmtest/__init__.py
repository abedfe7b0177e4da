"""The VM test harness: build a bootable OS from Debian packages, make disks, boot them."""
