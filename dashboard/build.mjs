// Bundle the console into dist/: one script, the page and its styles. config.js is not built:
// each deployment writes its own beside these files.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  target: ["es2020"],
  outfile: "dist/app.js",
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) copyFileSync(`src/${file}`, `dist/${file}`);
