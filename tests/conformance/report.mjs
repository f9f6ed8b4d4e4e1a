// Reads the results of one scripts/conformance run and compares them with baseline.json.
//
//   node report.mjs --mode gateway|direct --results DIR --baseline FILE [--strict] [--partial]
//
// DIR holds one folder per scenario: `exit` (the suite's exit code, 124 on timeout),
// `output.txt`, and the suite's own `server-<scenario>-<time>/checks.json`. A scenario passes
// when every check is SUCCESS or INFO; a FAILURE or a WARNING fails it (the suite's own
// --expected-failures logic counts warnings the same way), and so does a run without checks.
// Exit 1 when a scenario fails that the baseline does not list (or, with --strict, when a
// listed scenario passes); 0 otherwise. --partial: only some scenarios ran (--scenario).
import fs from 'node:fs';
import path from 'node:path';

function parseArgs(argv) {
  const args = { strict: false, partial: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--strict') args.strict = true;
    else if (a === '--partial') args.partial = true;
    else if (a.startsWith('--')) args[a.slice(2)] = argv[++i];
  }
  for (const k of ['mode', 'results', 'baseline']) {
    if (!args[k]) throw new Error(`missing --${k}`);
  }
  return args;
}

function findChecks(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      const f = path.join(dir, entry.name, 'checks.json');
      if (fs.existsSync(f)) return JSON.parse(fs.readFileSync(f, 'utf8'));
    }
  }
  return null;
}

function readScenario(dir, name) {
  const exitFile = path.join(dir, 'exit');
  const exit = fs.existsSync(exitFile) ? Number(fs.readFileSync(exitFile, 'utf8').trim()) : null;
  const checks = findChecks(dir);
  if (!checks) {
    const out = path.join(dir, 'output.txt');
    const said = fs.existsSync(out) ? fs.readFileSync(out, 'utf8').trim().split('\n').pop() : '';
    const why =
      exit === null
        ? `not run${said ? ` (${said})` : ''}`
        : exit === 124 || exit === 137
          ? 'timed out'
          : `suite exited ${exit} without results: ${said}`;
    return { name, pass: false, problems: [why], checks: [] };
  }
  const bad = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
  const problems = bad.map((c) => `${c.status} ${c.id}: ${c.errorMessage ?? c.description ?? ''}`.trim());
  if (checks.length === 0) problems.push('no checks ran');
  return { name, pass: problems.length === 0, problems, checks };
}

const args = parseArgs(process.argv.slice(2));
const baselineFile = JSON.parse(fs.readFileSync(args.baseline, 'utf8'));
const baseline = baselineFile[args.mode] ?? {};
const order = fs.existsSync(path.join(args.results, 'scenarios.txt'))
  ? fs.readFileSync(path.join(args.results, 'scenarios.txt'), 'utf8').split('\n').filter(Boolean)
  : fs.readdirSync(args.results).filter((d) => fs.statSync(path.join(args.results, d)).isDirectory());
const results = order.map((name) => readScenario(path.join(args.results, name), name));

const passed = [];
const unexpected = [];
const expected = [];
const stale = [];
for (const r of results) {
  const reason = baseline[r.name];
  if (r.pass) {
    passed.push(r);
    if (reason !== undefined) stale.push(r);
  } else if (reason !== undefined) {
    expected.push(r);
  } else {
    unexpected.push(r);
  }
}
const unknown = Object.keys(baseline).filter((name) => !order.includes(name));

console.log(`\n== conformance results (${args.mode})`);
for (const r of results) {
  const reason = baseline[r.name];
  if (r.pass && reason === undefined) console.log(`  pass      ${r.name}`);
  else if (r.pass) console.log(`  FIXED     ${r.name}  (baseline says: ${reason})`);
  else if (reason !== undefined) console.log(`  known     ${r.name}  (${reason})`);
  else console.log(`  FAIL      ${r.name}`);
  if (!r.pass) {
    for (const p of r.problems.slice(0, 3)) console.log(`              ${p.slice(0, 300)}`);
  }
}
if (stale.length > 0) {
  console.log(`\nThese scenarios now pass: remove them from ${args.baseline} ("${args.mode}"):`);
  for (const r of stale) console.log(`  ${r.name}`);
}
if (unknown.length > 0 && !args.partial) {
  console.log(`\nBaseline entries for scenarios that did not run (renamed or removed?):`);
  for (const name of unknown) console.log(`  ${name}`);
}
if (unexpected.length > 0) {
  console.log(
    `\nUnexpected failures: fix them, or list them in ${args.baseline} ("${args.mode}") with the reason.`,
  );
  console.log(`Details: ${args.results}/<scenario>/ (output.txt and checks.json)`);
}
console.log(
  `(${expected.length} known failure${expected.length === 1 ? '' : 's'} from the baseline counted as skipped)`,
);
// The plain closing line CI reads: known failures are "skipped".
console.log(`conformance: ${passed.length} passed, ${unexpected.length} failed, ${expected.length} skipped`);
const failed = unexpected.length > 0 || (args.strict && stale.length > 0);
process.exit(failed ? 1 : 0);
