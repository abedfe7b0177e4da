#!/bin/bash
# dracut module "sysroot": boot the deployment named by the ostree= kernel argument.
# Installed as /usr/lib/dracut/modules.d/50sysroot/ (see dracut-module/install).

check() {
    # dracut's "only when asked for": a machine that merely has the module installed
    # does not get it in every initramfs; an OS image asks for it with
    # dracut.conf.d/50-sysroot.conf (installed beside it) or `--add sysroot`.
    return 255
}

depends() {
    # The service below is a systemd unit in the initrd.
    echo systemd
}

# moddir, initdir and systemdsystemunitdir are set by dracut, which sources this file
# and then calls install(); they are not assigned here on purpose.
# shellcheck disable=SC2154
install() {
    inst_multiple mount readlink mkdir sed grep cat
    inst_script "$moddir/sysroot-prepare-root.sh" /usr/lib/sysroot/sysroot-prepare-root
    inst_simple "$moddir/sysroot-prepare-root.service" \
        "$systemdsystemunitdir/sysroot-prepare-root.service"
    # Required by initrd-root-fs.target: if preparing the root fails, the initrd
    # stops there (emergency) instead of switching into the wrong tree.
    mkdir -p "$initdir$systemdsystemunitdir/initrd-root-fs.target.requires"
    ln_r "$systemdsystemunitdir/sysroot-prepare-root.service" \
        "$systemdsystemunitdir/initrd-root-fs.target.requires/sysroot-prepare-root.service"
}
