// The merge logic of live charts (src/series.ts) on its own, in Node: a
// pushed update repeats the last step already sent, which replaces the
// values there instead of adding points; newer steps are appended and
// older ones dropped. Also the SSE parser the streams are read with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { UI } from './harness.mjs';

const src = readFileSync(join(UI, 'src', 'series.ts'), 'utf8');
const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
const { SeriesWindow, SseParser, streamResults, timeSpan } = await import('data:text/javascript;base64,' + Buffer.from(js).toString('base64'));

const matrix = (...series) => ({ resultType: 'matrix', result: series.map(([metric, values]) => ({ metric, values: values.map(([t, v]) => [t, String(v)]) })) });
const A = { __name__: 'q', job: 'a' };
const B = { __name__: 'q', job: 'b' };

/** What a stream sends: the snapshot of [100, 110] at step 1, then updates. */
function streamed() {
  const w = new SeriesWindow(1);
  w.reset(100, 110);
  w.put(matrix([A, [[105, 1], [106, 2], [107, 3], [108, 4], [109, 5], [110, 6]]], [B, [[110, 60]]]));
  return w;
}

test('a repeated step replaces the value at its time; newer steps are appended', () => {
  const w = streamed();
  assert.equal(w.points, 7);
  // the update repeats 110 (recomputed: a late sample changed it) and adds 111
  w.slideTo(111);
  w.replace(matrix([A, [[110, 6.5], [111, 7]]], [B, [[110, 61], [111, 70]]]));
  const d = w.snapshot();
  assert.equal(d.data[0].length, 11, 'the window keeps its length');
  assert.deepEqual(d.data[0], [101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111]);
  assert.equal(new Set(d.data[0]).size, d.data[0].length, 'no time twice');
  assert.deepEqual(d.data[1], [null, null, null, null, 1, 2, 3, 4, 5, 6.5, 7]);
  assert.deepEqual(d.data[2], [null, null, null, null, null, null, null, null, null, 61, 70]);
  assert.equal(w.points, 9, 'the repeated step is not counted again');
});

test('the same update twice changes nothing', () => {
  const w = streamed();
  const u = matrix([A, [[110, 6], [111, 7]]], [B, [[110, 60], [111, 70]]]);
  w.slideTo(111);
  w.replace(u);
  const once = JSON.stringify(w.snapshot());
  w.slideTo(111);
  w.replace(u);
  assert.equal(JSON.stringify(w.snapshot()), once);
});

test('a series without a value at the recomputed step loses it there; one left empty goes', () => {
  const w = streamed();
  w.slideTo(111);
  // recomputed, 110 has no value for B any more (and B none at 111)
  w.replace(matrix([A, [[110, 6], [111, 7]]]));
  const d = w.snapshot();
  assert.deepEqual(d.series.map((s) => s.key), ['q{job="a"}']);
  assert.equal(d.data.length, 2);
  assert.equal(w.points, 8, 'A@111 is new; B@110 was received, and A@110 is not new');
});

test('a late sample fills a step that was empty', () => {
  const w = new SeriesWindow(1);
  w.reset(100, 110);
  w.put(matrix([A, [[108, 1], [109, 2]]]));
  w.slideTo(111);
  w.replace(matrix([A, [[110, 3], [111, 4]]]));
  assert.deepEqual(w.snapshot().data[1].slice(-4), [1, 2, 3, 4]);
});

test('points older than the window are dropped, and a jump past it starts over on the grid', () => {
  const w = streamed();
  w.slideTo(115);
  w.replace(matrix([A, [[110, 6], [111, 7], [112, 8], [113, 9], [114, 10], [115, 11]]]));
  let d = w.snapshot();
  assert.deepEqual(d.data[0], [105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115]);
  assert.deepEqual(d.data[1], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  // an update for a time before the window is ignored
  w.replace(matrix([A, [[90, 99]]]));
  assert.deepEqual(w.snapshot().data[1], d.data[1]);
  w.slideTo(200);
  w.replace(matrix([A, [[199, 1], [200, 2]]]));
  d = w.snapshot();
  assert.deepEqual(d.data[0], Array.from({ length: 11 }, (_, i) => 190 + i));
  assert.deepEqual(d.data[1].slice(-2), [1, 2]);
});

test('steps larger than a second, and vectors and scalars', () => {
  const w = new SeriesWindow(10);
  w.reset(1000, 1090);
  w.put(matrix([A, [[1080, 1], [1090, 2]]]));
  w.slideTo(1100);
  w.replace(matrix([A, [[1090, 2.5], [1100, 3]]]));
  assert.deepEqual(w.snapshot().data[1].slice(-3), [1, 2.5, 3]);
  assert.equal(w.snapshot().data[0].at(-1), 1100);
  w.replace({ resultType: 'scalar', result: [1100, '4'] });
  assert.equal(w.snapshot().data.length, 3);
  assert.equal(w.snapshot().data[2].at(-1), 4);
});

test('series beyond maxSeries are counted as truncated', () => {
  const w = new SeriesWindow(1, 1);
  w.reset(0, 10);
  w.put(matrix([A, [[10, 1]]], [B, [[10, 2]]]));
  assert.equal(w.snapshot().series.length, 1);
  assert.equal(w.truncated, 1);
});

test('stream events: one query keeps the plain shape, several come as results', () => {
  const one = matrix([A, [[1, 1]]]);
  assert.deepEqual(streamResults(one, 1), [one]);
  assert.deepEqual(streamResults({ results: [one, one] }, 2), [one, one]);
  assert.deepEqual(timeSpan([one, matrix([B, [[5, 1]]])]), { min: 1, max: 5 });
  assert.equal(timeSpan([matrix()]), null);
});

test('the SSE parser handles chunks split anywhere, CRLF, comments and multi-line data', () => {
  const text = ': keep-alive\n\nevent: snapshot\ndata: {"a":\ndata: 1}\n\nevent:points\r\ndata:{"b":2}\r\n\r\nevent: error\ndata: boom\n\n';
  const want = [
    ['snapshot', '{"a":\n1}'],
    ['points', '{"b":2}'],
    ['error', 'boom'],
  ];
  for (const size of [1, 2, 3, 7, 1000]) {
    const got = [];
    const p = new SseParser((t, d) => got.push([t, d]));
    for (let i = 0; i < text.length; i += size) p.push(text.slice(i, i + size));
    assert.deepEqual(got, want, `chunks of ${size}`);
  }
});
