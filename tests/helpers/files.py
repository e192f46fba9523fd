"""What is under a folder, to check that a refused or failed write changed nothing."""

import os


def snapshot(folder):
    """Every entry under `folder`, links not followed.

    Files map to their bytes, links to `"-> target"`, folders to `None`.
    """
    found = {}
    for base, folders, names in os.walk(folder):
        for name in folders + names:
            full = os.path.join(base, name)
            key = os.path.relpath(full, folder)
            if os.path.islink(full):
                found[key] = "-> " + os.readlink(full)
            elif os.path.isfile(full):
                with open(full, "rb") as file:
                    found[key] = file.read()
            else:
                found[key] = None
    return found
