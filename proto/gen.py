#!/usr/bin/env python3
"""Run protoc-c and write its outputs flat into the build directory.

usage: gen.py PROTOC_C OUTDIR PROTO_PATH... -- FILE.proto
meson 1.0 custom targets cannot output into subdirectories, while protoc-c
mirrors the proto's path (google/protobuf/descriptor.pb-c.h). This wrapper
generates into a scratch directory, then writes <base>.pb-c.{c,h} into
OUTDIR with includes of other generated headers made flat.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    protoc_c, outdir = sys.argv[1], sys.argv[2]
    sep = sys.argv.index('--')
    paths, proto = sys.argv[3:sep], sys.argv[sep + 1]
    with tempfile.TemporaryDirectory() as tmp:
        args = [protoc_c] + ['--proto_path=' + p for p in paths] + ['--c_out=' + tmp]
        # Name the proto relative to the proto_path that contains it.
        rel = None
        for p in paths:
            ap = os.path.abspath(p)
            if os.path.abspath(proto).startswith(ap + os.sep):
                rel = os.path.relpath(os.path.abspath(proto), ap)
                break
        if rel is None:
            sys.exit('gen.py: %s is not under any proto path' % proto)
        subprocess.run(args + [rel], check=True)
        base = rel[:-len('.proto')]
        for ext in ('.pb-c.c', '.pb-c.h'):
            with open(os.path.join(tmp, base + ext), encoding='utf-8') as f:
                text = f.read()
            text = re.sub(r'#include "(?:[^"/]+/)+([^"/]+\.pb-c\.h)"', r'#include "\1"', text)
            with open(os.path.join(outdir, os.path.basename(base) + ext), 'w', encoding='utf-8') as f:
                f.write(text)


if __name__ == '__main__':
    main()
