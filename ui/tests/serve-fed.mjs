// A `sonde serve` with the test data, fed live, for looking at the UI by
// hand: `node tests/serve-fed.mjs` prints the URL; Ctrl+C stops it.
import { Sonde, feed } from './harness.mjs';

const sonde = await new Sonde().start();
const f = await feed(sonde, { seconds: Number(process.env.SECONDS_BACK || 600) });
console.log(JSON.stringify({ url: sonde.url, otlp: sonde.otlp, trace: f.sevenSpanTrace }));
const stop = async () => {
  await f.stop();
  await sonde.stop();
  sonde.cleanup();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
