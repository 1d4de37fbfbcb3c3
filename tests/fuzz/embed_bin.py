#!/usr/bin/env python3
"""Turns a binary file into a C header defining one byte array and its
length: embed_bin.py IN OUT.h NAME  ->  NAME[], NAME_LEN."""
import sys

src, out, name = sys.argv[1:4]
with open(src, 'rb') as f:
    data = f.read()
rows = []
for i in range(0, len(data), 16):
    rows.append('\t' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',')
with open(out, 'w', encoding='utf-8') as f:
    f.write('/* Generated from %s by embed_bin.py: do not edit. */\n' % src.split('/')[-1])
    f.write('static const unsigned char %s[] = {\n%s\n};\n' % (name, '\n'.join(rows)))
    f.write('#define %s_LEN %d\n' % (name, len(data)))
