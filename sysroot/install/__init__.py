"""Installing a commit onto a whole disk: `sysroot install to-disk`.

    disk = guard(DEVICE)                         # disks.py: refuses a disk in use
    layout = layout_for(kind, ids, root_size)    # partition.py: the GPT per boot loader
    with partitioned(DEVICE, layout) as parts:   # written with sfdisk; wiped on failure
        ...                                      # filesystems.py: ext4, the ESP via mtools
    install_to_disk(options)                     # todisk.py: the whole flow

Layering: beside health/; imports util, errors, formats, store, boot and deploy, never
health or cli. Only cli imports it.
"""
