#!/usr/bin/env python3
"""Write the man page of sagactl (section 1) or sagad (section 8) from the
program's own --help texts, so that the page never says something the
program does not.

usage: mkman.py sagactl|sagad PROGRAM OUTPUT VERSION
"""
import re
import subprocess
import sys


def run(argv):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=30, env={'PATH': '/usr/bin:/bin', 'LC_ALL': 'C'})
    return r.stdout


def esc(line):
    """roff-safe text: backslashes, and a leading dot or quote."""
    line = line.replace('\\', '\\e').replace('-', '\\-')
    if line.startswith(('.', "'")):
        line = '\\&' + line
    return line


def block(text):
    """Help text as it is printed: no filling, no adjusting."""
    out = ['.nf']
    out += [esc(l) for l in text.rstrip('\n').split('\n')]
    out.append('.fi')
    return out


def sagactl(prog, version):
    top = run([prog, '--help'])
    cmds = re.findall(r'^  ([a-z]+) ', top, re.M)
    page = ['.TH SAGACTL 1 "" "sagactl %s" "User Commands"' % version,
            '.SH NAME', 'sagactl \\- control sagad, the saga orchestrator',
            '.SH SYNOPSIS', '.B sagactl', '[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]',
            '.SH DESCRIPTION',
            'sagactl registers saga definitions with sagad, starts sagas, shows them and',
            'their history, and takes the operator actions (cancel, retry, skip, terminate,',
            'force, rerun). It is',
            'built on libsaga. The text below is what \\fBsagactl \\-\\-help\\fR and',
            '\\fBsagactl\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR print.',
            '.SH OVERVIEW']
    page += block(top)
    page.append('.SH COMMANDS')
    for c in cmds:
        page += ['.SS %s' % c]
        page += block(run([prog, c, '--help']))
    page += ['.SH ENVIRONMENT',
             '.TP', '.B SAGA_URL', 'sagad address(es), as \\fB\\-\\-url\\fR.',
             '.TP', '.B SAGA_CREDENTIAL_FILE\\fR, \\fBSAGA_CREDENTIAL',
             'the credential for a sagad with auth on.',
             '.TP', '.B SAGA_TLS_CA\\fR, \\fBSAGA_TLS_CERT\\fR, \\fBSAGA_TLS_KEY\\fR, \\fBSAGA_TLS_SERVER_NAME',
             'TLS settings, as the \\fB\\-\\-tls\\-*\\fR options.',
             '.TP', '.B NO_COLOR',
             'when set and not empty, \\fB\\-\\-color auto\\fR (the default) prints no colour.',
             '.SH SEE ALSO', '.BR sagad (8)']
    return page


def sagad(prog, version):
    text = run([prog, '--help'])
    return ['.TH SAGAD 8 "" "sagad %s" "System Administration"' % version,
            '.SH NAME', 'sagad \\- the saga orchestrator',
            '.SH SYNOPSIS', '.B sagad',
            '[\\fIrun\\fR|\\fImigrate\\fR|\\fIprint\\-config\\fR|\\fIversion\\fR] [\\fB\\-\\-setting\\fR=\\fIvalue\\fR]...',
            '.SH DESCRIPTION',
            'sagad keeps sagas and their outbox in PostgreSQL, dispatches their steps',
            'to participant services (libsaga) over nng, and runs compensations in',
            'reverse when a step fails. Without \\fB\\-\\-db\\fR it runs a private',
            'PostgreSQL cluster in its data directory. Every setting is a flag, a',
            '\\fBSAGAD_*\\fR environment variable and a line of the config file',
            '(\\fBsagad print\\-config\\fR writes one documenting all of them).',
            'The text below is what \\fBsagad \\-\\-help\\fR prints.',
            '.SH SETTINGS'] + block(text) + [
            '.SH SIGNALS',
            '.TP', '.B SIGTERM\\fR, \\fBSIGINT',
            'drain: new sagas are refused, steps in flight get their grace, then exit 0.',
            '.TP', '.B SIGHUP',
            'read the settings again and apply the live ones (TLS files included).',
            '.SH SEE ALSO', '.BR sagactl (1)']


def main():
    which, prog, output, version = sys.argv[1:5]
    page = sagactl(prog, version) if which == 'sagactl' else sagad(prog, version)
    with open(output, 'w', encoding='utf-8') as f:
        f.write('\n'.join(page) + '\n')


if __name__ == '__main__':
    main()
