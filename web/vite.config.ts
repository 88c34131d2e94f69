import { defineConfig } from 'vitest/config';

// The bundle is committed (web/dist) and embedded in the server binary, so the build must be
// reproducible: no timestamps, hashed file names, no inline script (the server's CSP forbids it).
function proxy() {
  const target = process.env.LIVEPLAN_URL ?? 'http://127.0.0.1:8080';
  return {
    '/api': { target, changeOrigin: false },
    '/ws': { target: target.replace(/^http/, 'ws'), ws: true },
  };
}

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
  // `npm run dev` / `npm run preview` against a server on LIVEPLAN_URL (default :8080).
  server: { proxy: proxy() },
  preview: { proxy: proxy() },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
