// Hooks for the figures in BENCHMARKS.md (used by ui/tests/bench.mjs):
// render N series x M points with the app's own chart, and count frames.
import { h, render } from 'preact';
import { Chart } from './chart';

declare global {
  interface Window {
    __sonde: {
      renderChart(series: number, points: number): Promise<{ renderMs: number; firstFrameMs: number }>;
      frames(ms: number): Promise<{ fps: number; frames: number; longFrames: number; worstMs: number }>;
    };
  }
}

export function installBench() {
  window.__sonde = {
    async renderChart(series, points) {
      const now = Math.floor(Date.now() / 1000);
      const xs = Array.from({ length: points }, (_, i) => now - points + i);
      const data: (number | null)[][] = [xs];
      for (let s = 0; s < series; s++) {
        const ys = new Array(points);
        let v = 50 + s;
        for (let i = 0; i < points; i++) {
          v += Math.sin(i / 30 + s) + (Math.random() - 0.5) * 2;
          ys[i] = v;
        }
        data.push(ys);
      }
      const labels = Array.from({ length: series }, (_, i) => `series_${i}`);
      const host = document.createElement('div');
      host.style.cssText = 'position:fixed;left:0;top:0;width:1200px;background:var(--bg);z-index:99';
      document.body.appendChild(host);
      const t0 = performance.now();
      render(h(Chart, { labels, data, height: 400 }), host);
      host.getBoundingClientRect();
      const renderMs = performance.now() - t0;
      await new Promise((r) => requestAnimationFrame(() => r(null)));
      const firstFrameMs = performance.now() - t0;
      render(null, host);
      host.remove();
      return { renderMs, firstFrameMs };
    },
    frames(ms) {
      return new Promise((resolve) => {
        let frames = 0;
        let longFrames = 0;
        let worst = 0;
        let last = performance.now();
        const start = last;
        const step = (t: number) => {
          const dt = t - last;
          last = t;
          frames++;
          if (frames > 1) {
            worst = Math.max(worst, dt);
            if (dt > 1000 / 60 * 1.5 + 2) longFrames++;
          }
          if (t - start < ms) requestAnimationFrame(step);
          else resolve({ fps: (frames * 1000) / (t - start), frames, longFrames, worstMs: worst });
        };
        requestAnimationFrame(step);
      });
    },
  };
}
