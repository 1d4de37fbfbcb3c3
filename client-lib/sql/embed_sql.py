#!/usr/bin/env python3
"""Turns an SQL file into a C header defining one string: embed_sql.py IN.sql OUT.h NAME"""
import sys

src, out, name = sys.argv[1:4]
with open(src, encoding='utf-8') as f:
    text = f.read()
lines = []
for line in text.splitlines(True):
    esc = line.replace('\\', '\\\\').replace('"', '\\"').replace('\t', '\\t').replace('\n', '\\n')
    lines.append('\t"' + esc + '"')
with open(out, 'w', encoding='utf-8') as f:
    f.write('/* Generated from %s by embed_sql.py: do not edit. */\n' % src.split('/')[-1])
    f.write('static const char %s[] =\n%s;\n' % (name, '\n'.join(lines)))
