// From a definition to the problems a job file is told: ajv checks DEFINITION_SCHEMA, each of its errors becomes the
// `problem` of the nearest schema node that has one (at that node's field), and the problems are put in the order a user
// reads them, one per section (a field: its first problem is enough; the other fields are still reported).
import { Ajv, type ErrorObject } from 'ajv';
import { DEFINITION_SCHEMA } from './definition-schema.ts';

/** One problem at a path into the definition (`['then', 0, 'data']`, shown as `then[0].data`). */
export interface Problem {
  path: (string | number)[];
  problem: string;
}

interface SchemaNode {
  problem?: string;
  sections?: boolean;
  properties?: Record<string, SchemaNode>;
  [keyword: string]: unknown;
}

const ROOT = DEFINITION_SCHEMA as SchemaNode;

const ajv = new Ajv({
  allErrors: true,
  strict: true,
  allowUnionTypes: true,
  keywords: [
    // Annotations: the message of a node's failure; a node whose fields are reported each on its own.
    { keyword: 'problem', schemaType: 'string' },
    { keyword: 'sections', schemaType: 'boolean' },
    // `run` and `then[].data` are functions, which JSON Schema has no type for (ajv-keywords' `typeof`).
    { keyword: 'typeof', schemaType: 'string', validate: (type: string, data: unknown) => typeof data === type, errors: false },
  ],
});
const validateDefinition = ajv.compile(DEFINITION_SCHEMA);

/**
 * The order problems are listed in: what a job needs to run at all (run, token), then when it runs, then how; fields
 * missing here go last. Unknown fields come first, as written.
 */
const REPORT_ORDER = [
  'run',
  'description',
  'token',
  'schedule',
  'params',
  'attempts',
  'concurrency',
  'concurrencyPerWorker',
  'rateLimit',
  'backoff',
  'timeout',
  'overlap',
  'misfire',
  'then',
  'shards',
  'group',
  'alert',
  'keep',
  'paused',
  'misfireGrace',
];

/** The failure summaries of keywords whose inner errors already say it. */
const SUMMARIES = new Set(['if', 'anyOf', 'propertyNames']);

const unescape = (s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~');

/** The problems DEFINITION_SCHEMA finds in an object (several per field possibly; `reportable` picks). */
export function schemaProblems(definition: object): Problem[] {
  if (validateDefinition(definition)) return [];
  return (validateDefinition.errors ?? []).filter((e) => !SUMMARIES.has(e.keyword)).map(problemOf);
}

/** Walks the error's schema path; the last node with a `problem` gives the message and, by its depth, the field. */
function problemOf(e: ErrorObject): Problem {
  const steps = e.schemaPath.split('/').slice(1, -1).map(unescape);
  const instance = e.instancePath.split('/').slice(1).map(unescape);
  let node = ROOT;
  if (e.keyword === 'required') {
    // A missing field fails as that field would: with its own problem.
    const missing = (e.params as { missingProperty: string }).missingProperty;
    steps.push('properties', missing);
    instance.push(missing);
  }
  const path: Problem['path'] = [];
  let found: Problem = { path: [], problem: e.message ?? 'is invalid' };
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    const next = node[step] as SchemaNode | SchemaNode[] | Record<string, SchemaNode> | undefined;
    if (step === 'properties') {
      const field = (next as Record<string, SchemaNode> | undefined)?.[steps[i + 1]!];
      if (!field) break; // a required field the node does not describe: the node's own problem
      node = field;
      i++;
      path.push(instance[path.length]!);
    } else if (step === 'additionalProperties' || step === 'items') {
      node = next as SchemaNode;
      path.push(step === 'items' ? Number(instance[path.length]) : instance[path.length]!);
    } else if (Array.isArray(next)) {
      node = next[Number(steps[++i])]!;
    } else {
      node = next as SchemaNode; // if, then, else, not, propertyNames: the same value
    }
    if (node.problem) found = { path: [...path], problem: node.problem };
  }
  return found;
}

/** The fields a node describes, in its order (those of its if/then/else branches too). */
function fieldsOf(node: SchemaNode | undefined): string[] {
  if (!node) return [];
  const branches = [node.then, node.else] as (SchemaNode | undefined)[];
  return [...new Set([...Object.keys(node.properties ?? {}), ...branches.flatMap(fieldsOf)])];
}

function fieldNode(node: SchemaNode | undefined, key: string | number): SchemaNode | undefined {
  if (!node) return undefined;
  if (typeof key === 'number') return node.items as SchemaNode | undefined;
  const branches = [node.then, node.else] as (SchemaNode | undefined)[];
  return node.properties?.[key] ?? branches.map((b) => fieldNode(b, key)).find(Boolean);
}

/** Where a path sorts: by field order at each level, unknown fields first, an object's own problem before its fields'. */
function rankOf(path: Problem['path']): number[] {
  let node: SchemaNode | undefined = ROOT;
  return path.map((key, depth) => {
    const order = depth === 0 ? REPORT_ORDER : fieldsOf(node);
    let rank = typeof key === 'number' ? key : order.indexOf(key);
    if (rank === -1 && fieldsOf(node).includes(key as string)) rank = order.length;
    node = fieldNode(node, key);
    return rank;
  });
}

function compareRanks(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** The field a problem is reported in: a top-level field, or one field of a node with `sections` (token.audience). */
function sectionOf(path: Problem['path']): string {
  const [top, field] = path;
  const node = fieldNode(ROOT, top!);
  return node?.sections && typeof field === 'string' && fieldsOf(node).includes(field) ? `${top}.${field}` : String(top);
}

/** The first problem of each section, in report order (stable: at one place, the schema's problems before later checks'). */
export function reportable(problems: Problem[]): Problem[] {
  const ranked = problems.map((p) => ({ p, rank: rankOf(p.path) })).sort((a, b) => compareRanks(a.rank, b.rank));
  const seen = new Set<string>();
  return ranked
    .map(({ p }) => p)
    .filter((p) => {
      const section = sectionOf(p.path);
      if (seen.has(section)) return false;
      seen.add(section);
      return true;
    });
}

/** `['then', 0, 'data']` -> `then[0].data`. */
export function fieldName(path: Problem['path']): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}
