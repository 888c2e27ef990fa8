"""Writes or patches a synthetic Python environment, deterministically.

write ROOT SCALE: SCALE x 150,000 files in SCALE x 1,500 packages of 100
  modules (about 6 KiB of Python each, about 0.9 GB) and SCALE x 24 shared
  objects of 48 MiB of random bytes (about 1.1 GiB): about 2 GB in all.
patch ROOT SCALE: rewrites SCALE x 300 modules, as an upgrade of a few
  packages would.
"""
import os
import random
import sys

MODULES_PER_PACKAGE = 100
PACKAGES = 1500
SHARED_OBJECTS = 24
SO_MIB = 48


def module_text(pkg, mod, version):
    lines = [f'"""Package {pkg}, module {mod}, version {version}."""', ""]
    for f in range(100):
        lines.append(f"def function_{f}(x, y={f}):")
        lines.append(f"    return (x * {pkg + 1} + y * {mod + 1}) % {f + 7}")
        lines.append("")
    return "\n".join(lines) + "\n"


def write(root, scale):
    sp = os.path.join(root, "site-packages")
    for p in range(PACKAGES * scale):
        d = os.path.join(sp, f"pkg{p:05d}")
        os.makedirs(d)
        for m in range(MODULES_PER_PACKAGE):
            with open(os.path.join(d, f"mod{m:03d}.py"), "w") as f:
                f.write(module_text(p, m, 1))
    libs = os.path.join(root, "lib")
    os.makedirs(libs)
    rng = random.Random(1)
    for s in range(SHARED_OBJECTS * scale):
        with open(os.path.join(libs, f"lib{s:03d}.so"), "wb") as f:
            for _ in range(SO_MIB):
                f.write(rng.randbytes(1 << 20))


def patch(root, scale):
    sp = os.path.join(root, "site-packages")
    for p in range(3 * scale):
        for m in range(MODULES_PER_PACKAGE):
            with open(os.path.join(sp, f"pkg{p:05d}", f"mod{m:03d}.py"), "w") as f:
                f.write(module_text(p, m, 2))


if __name__ == "__main__":
    what, root, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"write": write, "patch": patch}[what](root, scale)
