#!/bin/sh
# sysroot-prepare-root PHYSROOT: make the deployment named by ostree= the root to
# switch into. Before: the physical root file system is mounted at PHYSROOT.
# After:  PHYSROOT is the deployment (a bind mount of
#         ostree/deploy/$stateroot/deploy/$checksum.$serial), with
#           /sysroot  the physical root,
#           /var      the stateroot's shared ostree/deploy/$stateroot/var,
#           /usr      read-only (a read-only bind mount of itself),
#           /etc      writable (part of the deployment),
#           /boot     the physical /boot when it lives on the root file system,
#         and /run/ostree-booted marks the boot as a deployment boot.
# ostree= is either a boot link (/ostree/boot.N/$os/$bootcsum/$serial, relative
# symlinks on the physical root) or the deployment path itself.
# Any inconsistency stops the boot with one line saying what is wrong: booting a
# different tree than the one asked for is worse than not booting.
set -eu

physroot=${1:-/sysroot}

die() {
    echo "sysroot-prepare-root: error: $*" >&2
    exit 1
}

target=
cmdline=$(cat /proc/cmdline)
# Split the command line into words, but never glob-expand them: an argument such as
# "*" or "foo=*" must not turn into names of files (possibly "ostree=...") of the
# current directory.
set -f
for word in $cmdline; do
    case $word in
        ostree=*) target=${word#ostree=} ;;
    esac
done
set +f
[ -n "$target" ] || die "no ostree= argument on the kernel command line"
case $target in
    /*) ;;
    *) die "ostree=$target is not an absolute path" ;;
esac

# Links under the physical root are relative, so resolving them with the physical
# root as prefix stays inside it; anything that leads elsewhere is refused below.
if [ ! -e "$physroot$target" ]; then
    die "ostree=$target does not exist on the root file system ($physroot$target)"
fi
deploy=$(readlink -f "$physroot$target")
case $deploy in
    "$physroot"/ostree/deploy/*/deploy/*) ;;
    *) die "ostree=$target leads to $deploy, which is not a deployment under $physroot/ostree/deploy" ;;
esac
name=${deploy##*/}
case $name in
    *[!0-9a-f.]* | *.*.* | .* | *.) die "ostree=$target leads to $deploy, which is not named CHECKSUM.SERIAL" ;;
    *.*) ;;
    *) die "ostree=$target leads to $deploy, which is not named CHECKSUM.SERIAL" ;;
esac
[ -d "$deploy/usr" ] || die "deployment $deploy has no /usr"
stateroot=${deploy%/deploy/*}
[ -d "$stateroot/var" ] || die "stateroot $stateroot has no var directory"
[ -d "$deploy/sysroot" ] || die "deployment $deploy has no /sysroot directory to hold the physical root"

readonly_sysroot=false
if [ -f "$physroot/ostree/repo/config" ] && \
        sed -n '/^\[sysroot\]/,/^\[/p' "$physroot/ostree/repo/config" |
        grep -Eq '^[[:space:]]*readonly[[:space:]]*=[[:space:]]*true[[:space:]]*$'; then
    readonly_sysroot=true
fi

# Moving mounts needs private propagation (systemd makes / shared).
mount --make-rprivate /

# Assemble the new root at a place outside the physical root, so that the physical
# root can then be moved underneath it.
newroot=/run/sysroot-deploy
mkdir -p "$newroot"
mount --bind "$deploy" "$newroot"
mount --bind "$stateroot/var" "$newroot/var"
mount --bind "$newroot/usr" "$newroot/usr"
mount -o remount,bind,ro "$newroot/usr"
if [ -L "$physroot/boot/loader" ] && [ -d "$newroot/boot" ]; then
    mount --bind "$physroot/boot" "$newroot/boot"
fi
mount --move "$physroot" "$newroot/sysroot"
if [ "$readonly_sysroot" = true ]; then
    mount -o remount,bind,ro "$newroot/sysroot"
fi
mount --move "$newroot" "$physroot"
: > /run/ostree-booted
echo "sysroot-prepare-root: booting deployment ${deploy#"$physroot"}"
