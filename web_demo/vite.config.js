import { defineConfig } from 'vite';

// base './': the build works from any folder (a static host, or tests/test_web_demo.py's server on 127.0.0.1).
// public/ (models/ and the LiteRT.js WASM copied there by scripts/copy_wasm.mjs) is copied into dist/ as is.
export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' },
});
