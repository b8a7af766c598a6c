#!/usr/bin/env node
// loraserve command-line entry. The project runs its TypeScript through tsx (no build step).
import { register } from 'tsx/esm/api';

process.env.ONNXRUNTIME_NODE_INSTALL ??= 'skip';
register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
