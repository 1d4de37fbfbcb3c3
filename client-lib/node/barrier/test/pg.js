'use strict';
/*
 * A throw-away PostgreSQL cluster for the tests, like tests/lib/th_pg.c:
 * initdb into a temp directory, a unix socket there and no TCP
 * (listen_addresses=''), so parallel runs never clash over ports. As root
 * (CI) PostgreSQL runs as the OS user postgres (or $TH_PG_USER).
 */
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function findBindir() {
  const env = process.env.SAGAD_PG_BINDIR;
  if (env && fs.existsSync(path.join(env, 'initdb'))) return env;
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (fs.existsSync(path.join(d, 'initdb'))) return d;
  } catch {
    /* no pg_config */
  }
  const base = '/usr/lib/postgresql';
  const versions = fs.existsSync(base)
    ? fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error('cannot find initdb: install postgresql or set SAGAD_PG_BINDIR');
  return path.join(base, versions[0], 'bin');
}

function pgUser() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  return process.env.TH_PG_USER || 'postgres';
}

/* Runs a PostgreSQL program, as the PostgreSQL user when root. */
function runPg(bin, args, what) {
  const user = pgUser();
  const r = user === null ? spawnSync(bin, args, { encoding: 'utf8' }) : spawnSync('runuser', ['-u', user, '--', bin, ...args], { encoding: 'utf8' });
  if (r.error) throw new Error(`${what}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

class TestCluster {
  constructor() {
    this.bindir = findBindir();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saga-barrier-js-'));
    this.data = path.join(this.dir, 'data');
    this.log = path.join(this.dir, 'postgres.log');
    this.user = 'saga';
    this.started = false;
  }

  start() {
    const user = pgUser();
    if (user !== null) {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
      fs.chownSync(this.dir, uid, gid);
    }
    runPg(path.join(this.bindir, 'initdb'), ['-D', this.data, '-U', this.user, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--nosync'], 'initdb');
    runPg(
      path.join(this.bindir, 'pg_ctl'),
      ['-D', this.data, '-l', this.log, '-w', '-t', '60', '-o', `-k ${this.dir} -c listen_addresses='' -c fsync=off -c max_connections=50`, 'start'],
      'pg_ctl start'
    );
    this.started = true;
    return this;
  }

  /* pg connection settings for a database. */
  config(database = 'postgres') {
    return { host: this.dir, user: this.user, database };
  }

  /* libpq conninfo for a database (the C replica's). */
  conninfo(database = 'postgres') {
    return `host=${this.dir} user=${this.user} dbname=${database}`;
  }

  stop() {
    if (this.started) {
      try {
        runPg(path.join(this.bindir, 'pg_ctl'), ['-D', this.data, '-m', 'immediate', '-w', 'stop'], 'pg_ctl stop');
      } catch (e) {
        process.stderr.write(`${e.message}\n`);
      }
      this.started = false;
    }
    if (process.env.KEEP_PG) {
      process.stderr.write(`kept ${this.dir}\n`);
      return;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { TestCluster };
