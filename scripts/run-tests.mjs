#!/usr/bin/env node
// Runs node's test runner (through tsx) over every *.test.ts below the given folder.
// Node 20's `--test` does not expand globs itself, so we list the files here.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const dir = process.argv[2];
if (!dir || !existsSync(dir)) {
  console.error(`run-tests: no such test folder: ${dir}`);
  process.exit(2);
}
const files = [];
(function walk(d) {
  for (const name of readdirSync(d).sort()) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.ts')) files.push(p);
  }
})(dir);
if (files.length === 0) {
  console.error(`run-tests: no *.test.ts files under ${dir}`);
  process.exit(2);
}
const reporter = process.env.CI ? ['--test-reporter=spec'] : [];
const extra = process.argv.slice(3);
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', ...reporter, ...extra, ...files], {
  stdio: 'inherit',
  env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
});
process.exit(r.status ?? 1);
