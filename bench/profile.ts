// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by package / file and by function, so BENCHMARKS.md can
// say where the time goes. `node --import tsx bench/profile.ts <file.cpuprofile> [--top 25]`
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a frame belongs: a package under node_modules, our src/ file, node internals, or the VM itself. */
export function areaOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const src = /\/(src|bench|packages\/verify\/src)\/(.*)$/.exec(url);
  if (src) return `${src[1]}/${src[2]}`;
  if (url.startsWith('node:')) return url;
  return url.split('/').slice(-2).join('/');
}

export function summarise(profile: Profile, top = 25) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${area}:${lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  // Inclusive: a sample counts once for every distinct function on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
      if (!functionName || functionName.startsWith('(')) continue;
      const fn = `${functionName} ${areaOf(url, functionName)}:${lineNumber + 1}`;
      if (seen.has(fn)) continue;
      seen.add(fn);
      inclusive.set(fn, (inclusive.get(fn) ?? 0) + us);
    }
  }
  const pct = (us: number) => `${((us / total) * 100).toFixed(1)}%`;
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    totalMs: total / 1000,
    areas: sorted(areas).map(([k, v]) => [k, pct(v)]),
    functions: sorted(fns).map(([k, v]) => [k, pct(v)]),
    inclusive: (match: RegExp) =>
      [...inclusive]
        .filter(([k]) => match.test(k))
        .sort((a, b) => b[1] - a[1])
        .slice(0, top)
        .map(([k, v]) => [k, pct(v)]),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  const top = Number(process.argv[process.argv.indexOf('--top') + 1]) || 25;
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, top);
  console.log(`${file}: ${s.totalMs.toFixed(0)} ms sampled`);
  console.log('\nself time by area:');
  for (const [k, v] of s.areas) console.log(`  ${v.padStart(6)}  ${k}`);
  console.log('\nself time by function:');
  for (const [k, v] of s.functions) console.log(`  ${v.padStart(6)}  ${k}`);
  const match = process.argv.indexOf('--inclusive');
  if (match > 0) {
    console.log(`\ninclusive time of functions matching ${process.argv[match + 1]}:`);
    for (const [k, v] of s.inclusive(new RegExp(process.argv[match + 1]))) console.log(`  ${v.padStart(6)}  ${k}`);
  }
}
