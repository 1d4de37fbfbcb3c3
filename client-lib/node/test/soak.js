'use strict';
// The addon's soak: STEPS steps (default 100,000) through one Node.js
// Worker, against a real sagad, printing the process's RSS every tenth of
// the way; for the leak check under AddressSanitizer (asan-leaks.sh beside
// this file; docs/PERFORMANCE.md, "Node.js participants"). Not a test of
// `node --test`: it takes minutes.
//
//   UV_THREADPOOL_SIZE=64 node test/soak.js [STEPS] [CONCURRENCY]
//
// The saga is nodetest.Busy (one step, participant "busy"); the driver is
// a Client in the same process running CONCURRENCY sagas at once (each
// run() holds a thread of libuv's pool: hence UV_THREADPOOL_SIZE).
// Every step returns a 64-byte result, so results, inputs and steps all
// go through the addon's allocations. Exit status 0 when every saga
// completed.

const { startSagad, saga } = require('./helpers');

const steps = Number(process.argv[2] || 100000);
const conc = Number(process.argv[3] || 64);

async function main() {
  const sagad = await startSagad();
  const w = new saga.Worker({ url: sagad.url, participant: 'busy', capacity: conc });
  const result = Buffer.alloc(64, 0x61);
  let handled = 0;
  w.handle('Task', (step) => {
    handled++;
    if (step.input.length !== 16) throw new Error('bad input');
    return result;
  });
  const running = w.run();
  const c = new saga.Client({ url: sagad.url, timeoutMs: 30000 });
  const mb = (n) => (n / 1048576).toFixed(1);
  const rss = () => {
    const m = process.memoryUsage();
    return `${mb(m.rss)} heap_mb ${mb(m.heapUsed)} external_mb ${mb(m.external)}`;
  };
  const t0 = Date.now();
  let next = 0;
  let done = 0;
  let bad = 0;
  const mark = Math.max(1, Math.floor(steps / 10));
  console.log(`steps 0 rss_mb ${rss()}`);
  async function driver() {
    while (next < steps) {
      next++;
      const r = await c.run('nodetest.Busy', Buffer.from('soak-input-00000'), { timeoutMs: 60000 });
      if (r.state !== 'completed') bad++;
      done++;
      if (done % mark === 0) {
        if (global.gc) global.gc();
        console.log(`steps ${done} rss_mb ${rss()} sagas_per_s ${(done / ((Date.now() - t0) / 1000)).toFixed(0)}`);
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: conc }, driver));
  } finally {
    await c.close();
    await w.close();
    await running.catch(() => {});
    await sagad.stop();
  }
  console.log(`done: ${done} sagas, ${handled} steps handled, ${bad} not completed, ` +
    `${((Date.now() - t0) / 1000).toFixed(0)} s`);
  process.exitCode = bad === 0 && done === steps ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
