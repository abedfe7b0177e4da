def import_tarball(tx, mtree, path, modifier):
    raise NotImplementedError
