import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FeedArena, type ArenaRange } from '../../../src/engine/feed-arena.js';

test('first fit, 64-byte aligned, coalescing on release; a request that does not fit is refused', () => {
  const arena = new FeedArena(1024);
  assert.equal(arena.alloc(10), undefined, 'nothing reserved yet');
  arena.reserve(2000);
  assert.equal(arena.reservedBytes, 2048, 'whole chunks');
  const a = arena.alloc(10)!;
  const b = arena.alloc(100)!;
  const c = arena.alloc(64)!;
  assert.deepEqual([a.range.offset, b.range.offset, c.range.offset], [0, 64, 192]);
  assert.deepEqual([a.range.bytes, b.range.bytes, c.range.bytes], [64, 128, 64]);
  assert.equal(arena.usedBytes, 256);
  assert.equal(arena.alloc(1025), undefined, 'larger than a chunk');
  // free a and c, then b: one free run again, so a whole-chunk request fits the first chunk
  arena.release(a.range);
  arena.release(c.range);
  assert.throws(() => arena.release(c.range), /released twice/);
  arena.release(b.range);
  assert.equal(arena.usedBytes, 0);
  const whole = arena.alloc(1024)!;
  assert.deepEqual(whole.range, { chunk: 0, offset: 0, bytes: 1024 });
  const next = arena.alloc(1000)!;
  assert.equal(next.range.chunk, 1);
  assert.equal(arena.alloc(64), undefined);
});

test('random alloc/release keeps ranges disjoint and accounting exact', () => {
  const arena = new FeedArena(4096);
  arena.reserve(3 * 4096);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const live: ArenaRange[] = [];
  for (let i = 0; i < 2000; i++) {
    if (live.length && rnd() < 0.45) arena.release(live.splice(Math.floor(rnd() * live.length), 1)[0]);
    else {
      const got = arena.alloc(1 + Math.floor(rnd() * 900));
      if (got) live.push(got.range);
    }
    if (i % 100 === 0) {
      const sorted = [...live].sort((x, y) => x.chunk - y.chunk || x.offset - y.offset);
      for (let k = 1; k < sorted.length; k++) {
        const p = sorted[k - 1], q = sorted[k];
        assert.ok(p.chunk !== q.chunk || p.offset + p.bytes <= q.offset, 'no overlap');
      }
      assert.equal(arena.usedBytes, live.reduce((n, r) => n + r.bytes, 0));
    }
  }
  for (const r of live) arena.release(r);
  assert.equal(arena.usedBytes, 0);
  assert.equal(arena.alloc(4096)!.range.offset, 0, 'fully coalesced');
});
