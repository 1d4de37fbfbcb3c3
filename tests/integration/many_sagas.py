#!/usr/bin/env python3
"""Writes many_sagas.proto: 101 one-step sagas, one more than a register may
define (DEFN_MAX_SAGAS_PER_SET). usage: many_sagas.py OUTPUT.proto"""
import sys

out = ['syntax = "proto3";', 'package many;', 'import "sagaspec.proto";',
       'message Req { string text = 1; }', 'message Res { string text = 1; }']
for i in range(101):
    out.append('service Saga%03d { rpc A(Req) returns (Res) {'
               ' option (sagaspec.step) = { participant: "pA" }; } }' % i)
with open(sys.argv[1], 'w', encoding='utf-8') as f:
    f.write('\n'.join(out) + '\n')
