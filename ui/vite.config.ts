import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The bundle goes straight into the server crate, where `ui.rs` embeds it
// (scripts/dist.mjs adds gzip variants, the manifest and the Rust table).
// `npm run dev` proxies the API to a local `sonde serve` on :7070.
export default defineConfig({
  plugins: [preact()],
  base: '/',
  build: {
    outDir: '../crates/server/ui-dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 300,
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:7070',
      '/health': 'http://127.0.0.1:7070',
      '/ready': 'http://127.0.0.1:7070',
    },
  },
});
