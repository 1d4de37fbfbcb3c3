'use strict';
// The package as users get it: `npm pack`, then `npm install` of the
// tarball into a fresh project, offline, building the addon with node-gyp
// against libsaga found by pkg-config (the in-tree build's uninstalled .pc
// under meson, SAGA_PKG_CONFIG_PATH; else an installed libsaga).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');

function env() {
  const e = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' };
  delete e.SAGA_NODE_ADDON; // the installed package must load its own build
  // npm and node-gyp run without a sanitizer preload (run.sh sets one for
  // a sanitizer build); only loading the addon needs it.
  delete e.LD_PRELOAD;
  if (process.env.SAGA_PKG_CONFIG_PATH) {
    e.PKG_CONFIG_PATH = [process.env.SAGA_PKG_CONFIG_PATH, process.env.PKG_CONFIG_PATH]
      .filter(Boolean).join(':');
  }
  if (process.env.SAGA_LIB_DIR) {
    e.LD_LIBRARY_PATH = [process.env.SAGA_LIB_DIR, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  }
  return e;
}

function haveLibsaga() {
  try {
    execFileSync('pkg-config', ['--exists', 'libsaga'], { env: env() });
    return true;
  } catch {
    return false;
  }
}

test('npm pack, then npm install of the tarball into a new project offline builds and loads the addon', { skip: !haveLibsaga() && 'libsaga is not found by pkg-config' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saga-npm-'));
  try {
    const e = env();
    const tgz = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: pkgDir, env: e })
      .toString().trim().split('\n').pop();
    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}\n');
    execFileSync('npm', ['install', '--offline', path.join(dir, tgz)], { cwd: app, env: e, stdio: ['ignore', 'ignore', 'pipe'] });
    assert.ok(fs.existsSync(path.join(app, 'node_modules', 'libsaga', 'build', 'Release', 'saga_node.node')));
    assert.ok(fs.existsSync(path.join(app, 'node_modules', 'libsaga', 'index.d.ts')));
    const out = execFileSync(process.execPath, ['-e', `
      const s = require('libsaga');
      const c = new s.Client({ url: 'tcp://127.0.0.1:1', timeoutMs: 2000 });
      c.get('00000000-0000-4000-8000-000000000000').catch((e) => {
        console.log(s.libsagaVersion, e instanceof s.SagaConnectionError, e.codeName);
      });`], { cwd: app, env: { ...e, LD_PRELOAD: process.env.LD_PRELOAD || '' } }).toString().trim();
    assert.equal(out, '0.1.0 true SAGA_ECONN');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
