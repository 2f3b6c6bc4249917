// Copies LiteRT.js's WASM runtime from node_modules into public/litert/, so the build serves it itself (no CDN).
// Run by `npm run build` / `npm run dev`. Idempotent; each file is written to a temporary name and renamed.
import { copyFileSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'node_modules', '@litertjs', 'core', 'wasm');
const dest = join(root, 'public', 'litert');
let files;
try {
  files = readdirSync(src).filter((f) => /\.(js|wasm)$/.test(f));
} catch {
  console.error(`copy_wasm: ${src} not found; run \`npm install\` in web_demo first`);
  process.exit(2);
}
if (!files.length) {
  console.error(`copy_wasm: no .js/.wasm files in ${src}`);
  process.exit(2);
}
mkdirSync(dest, { recursive: true });
for (const f of files) {
  const tmp = join(dest, `.${f}.tmp`);
  copyFileSync(join(src, f), tmp);
  renameSync(tmp, join(dest, f));
}
console.log(`copy_wasm: ${files.length} LiteRT.js files → ${dest}`);
