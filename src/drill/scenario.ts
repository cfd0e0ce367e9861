/**
 * Drill scenario files: YAML, parsed with `yaml` (which keeps source positions) and validated strictly. Every
 * error names the YAML path and line ("steps[3].switchover.to (line 21): no node named 'b'") and is a USAGE
 * error (exit 2). The format, by example (scenarios/*.yaml are the reference):
 *
 *   name: switchover                      # default: the file name
 *   description: one paragraph for the report
 *   vars: { load: 4s, rate: 200 }         # used as $load anywhere below; --set load=10s overrides
 *   short: { load: 1s }                   # --short (CI) uses these values instead
 *   nodes:                                # each node is a site: <name>/<name>.db and <name>/arch, a free port
 *     a: { role: primary }
 *     b: { role: standby, from: a, delay: 0s, proxy: true }   # proxy: the link from a runs through a proxy
 *     c: { role: standby, from: b, db: false }                # archive only; from a standby: a cascade
 *     d: { role: none }                                       # made by a step (restore)
 *   workload: { rate: $rate, mix: small, dbs: [a, b] }        # the application; dbs: where it may write
 *   steps: [ ... ]                        # one key each: see STEPS below
 *   checks: [ ... ]                       # one key each: see CHECKS below; also allowed as `- check:` steps
 *
 * Durations are like 250ms, 4s, 2m; `wait` durations are multiplied by --scale.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { LineCounter, parseDocument, isSeq, type Document } from 'yaml';
import { RedoshipError } from '../error/index.js';

export type FieldType = 'node' | 'nodes' | 'duration' | 'string' | 'int' | 'bool' | 'time' | 'name' | 'size' | `enum:${string}`;
interface Field {
  readonly type: FieldType;
  readonly required?: boolean;
  readonly doc: string;
}
interface Spec {
  /** The field a scalar (or list) value fills: `kill: a` is `kill: { node: a }`. */
  readonly scalar?: string;
  readonly doc: string;
  readonly fields: Readonly<Record<string, Field>>;
}

const node = (doc: string, required = true): Field => ({ type: 'node', required, doc });

/** Every step kind: what it does and its fields. The runner implements exactly these. */
export const STEPS = {
  start: { scalar: 'nodes', doc: 'start the daemons of these nodes in their roles (primary or standby), wait until they run', fields: { nodes: { type: 'nodes', required: true, doc: 'nodes' } } },
  stop: { scalar: 'node', doc: 'stop a daemon with SIGTERM and wait for it', fields: { node: node('node') } },
  kill: { scalar: 'node', doc: "kill -9 a daemon; when it is the primary its site dies: the application there can no longer write (its file is locked)", fields: { node: node('node') } },
  workload: { scalar: 'action', doc: 'start or stop the workload (the application)', fields: { action: { type: 'enum:start|stop', required: true, doc: 'start or stop' } } },
  wait: { scalar: 'for', doc: 'let time pass (multiplied by --scale)', fields: { for: { type: 'duration', required: true, doc: 'how long' } } },
  'catch-up': { scalar: 'nodes', doc: "wait until standbys hold and apply the primary's last LSN", fields: { nodes: { type: 'nodes', required: true, doc: 'standbys' }, timeout: { type: 'duration', doc: 'default 30s' } } },
  switchover: { scalar: 'to', doc: 'redoship switchover to this standby: it becomes the primary, the old primary its standby', fields: { to: node('the standby') } },
  promote: { scalar: 'node', doc: 'redoship promote (failover) on this standby', fields: { node: node('the standby'), 'until-time': { type: 'time', doc: 'stop at this time (@mark or ISO)' }, 'until-lsn': { type: 'int', doc: 'stop at this LSN' } } },
  reinstate: { scalar: 'node', doc: 'redoship reinstate: the failed old primary becomes a standby of the current primary', fields: { node: node('the old primary') } },
  repoint: { doc: 'restart a standby with --from another node', fields: { node: node('the standby'), from: node('its new upstream') } },
  pause: { scalar: 'node', doc: 'redoship standby pause', fields: { node: node('the standby') } },
  resume: { scalar: 'node', doc: 'redoship standby resume', fields: { node: node('the standby') } },
  'apply-until': { doc: 'redoship standby apply --until-time/--until-lsn', fields: { node: node('the standby'), time: { type: 'time', doc: '@mark or ISO' }, lsn: { type: 'int', doc: 'LSN' } } },
  restore: {
    doc: "redoship restore from a node's archive into another node's database",
    fields: { from: node('the node whose archive'), to: node('the node to create'), 'until-time': { type: 'time', doc: '@mark or ISO' }, 'until-lsn': { type: 'int', doc: 'LSN' }, as: { type: 'enum:primary', doc: 'then start it as the primary' } },
  },
  sql: { doc: 'run SQL on a node as the application would', fields: { node: node('node'), sql: { type: 'string', required: true, doc: 'statements' } } },
  'drop-table': { doc: 'fault: DROP TABLE on a node (a mistake by the application)', fields: { node: node('node'), table: { type: 'name', required: true, doc: 'table' } } },
  'hash-table': { doc: "remember a table's content hash under a name (for table-hash checks)", fields: { node: node('node'), table: { type: 'name', required: true, doc: 'table' }, as: { type: 'name', required: true, doc: 'the name' } } },
  'copy-table': { doc: 'copy a table from one node (a standby) into another (the primary)', fields: { from: node('source'), to: node('destination'), table: { type: 'name', required: true, doc: 'table' } } },
  'cut-link': { scalar: 'node', doc: "fault: the proxy in front of this node's upstream link drops every connection and refuses new ones", fields: { node: node('a node with proxy: true') } },
  'stall-link': { scalar: 'node', doc: 'fault: the proxy stops forwarding bytes (connections stay open)', fields: { node: node('a node with proxy: true') } },
  'heal-link': { scalar: 'node', doc: 'the proxy forwards again', fields: { node: node('a node with proxy: true') } },
  'fill-disk': { scalar: 'node', doc: "fault: fill the node's disk (a tmpfs: needs root and disk: in the node; else skipped)", fields: { node: node('a node with disk:') } },
  'free-disk': { scalar: 'node', doc: 'free the filled disk', fields: { node: node('a node with disk:') } },
  'corrupt-page': { doc: "fault: overwrite one page of a node's database file with garbage", fields: { node: node('node'), page: { type: 'int', required: true, doc: 'page number (1-based)' } } },
  mark: { scalar: 'name', doc: 'remember this moment under a name (use as @name in until-time)', fields: { name: { type: 'name', required: true, doc: 'the name' } } },
  check: { doc: 'run a check now (see checks)', fields: {} },
} as const satisfies Record<string, Spec>;

/** Every check kind. */
export const CHECKS = {
  loss: { doc: 'transactions lost (RPO), from the workload log and the final database, at most max', fields: { max: { type: 'int', doc: 'default 0' } } },
  outage: { doc: 'every outage (first refused write to first accepted write) at most max', fields: { max: { type: 'duration', required: true, doc: 'bound' } } },
  equal: { scalar: 'nodes', doc: 'databases equal the primary page for page, integrity_check ok, same content hash (after catching up)', fields: { nodes: { type: 'nodes', required: true, doc: 'nodes' }, timeout: { type: 'duration', doc: 'catch-up wait, default 30s' } } },
  integrity: { scalar: 'node', doc: 'PRAGMA integrity_check is ok', fields: { node: node('node') } },
  lag: { doc: 'apply lag beyond the delay, sampled while the workload ran, at most max', fields: { node: node('standby'), max: { type: 'duration', required: true, doc: 'bound' } } },
  'table-hash': { doc: 'a table has the content remembered by hash-table', fields: { node: node('node'), table: { type: 'name', required: true, doc: 'table' }, equals: { type: 'name', required: true, doc: 'the hash-table name' } } },
  rows: { doc: 'a query returns this single value', fields: { node: node('node'), sql: { type: 'string', required: true, doc: 'query' }, equals: { type: 'string', required: true, doc: 'expected value' } } },
} as const satisfies Record<string, Spec>;

export type StepKind = keyof typeof STEPS;
export type CheckKind = keyof typeof CHECKS;
export type TimeRef = { readonly mark: string } | { readonly iso: string };

export interface Action<K extends string> {
  readonly kind: K;
  /** Resolved field values: node names, ms for durations, TimeRef for times. */
  readonly args: Readonly<Record<string, unknown>>;
  /** Where it is in the file, for messages: steps[3] (line 21). */
  readonly where: string;
  /** One line for the timeline: `switchover to: b`. */
  readonly label: string;
  /** For `check` steps: the check. */
  readonly check?: Action<CheckKind>;
}
export type Step = Action<StepKind>;
export type Check = Action<CheckKind>;

export interface NodeSpec {
  readonly name: string;
  readonly role: 'primary' | 'standby' | 'none';
  readonly from: string | null;
  readonly delayMs: number;
  readonly proxy: boolean;
  readonly db: boolean;
  /** tmpfs size (mount -o size=...) when the node's directory is its own small disk. */
  readonly disk: string | null;
}

export interface WorkloadSpec {
  readonly dbs: readonly string[];
  readonly rate: number;
  readonly mix: 'small' | 'stress';
  readonly seed: number;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly file: string;
  readonly vars: Readonly<Record<string, string | number | boolean>>;
  readonly nodes: readonly NodeSpec[];
  readonly workload: WorkloadSpec | null;
  readonly steps: readonly Step[];
  readonly checks: readonly Check[];
}

export interface LoadOptions {
  /** Use the scenario's `short:` values. */
  readonly short?: boolean;
  /** name=value overrides of vars. */
  readonly set?: Readonly<Record<string, string>>;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function parseDurationMs(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v; // plain numbers are ms
  if (typeof v !== 'string') return null;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(v.trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']);
}

/** Reads, substitutes vars and validates a scenario file; every problem is a USAGE error naming the YAML path. */
export function loadScenario(file: string, opts: LoadOptions = {}): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new RedoshipError('USAGE', `cannot read the scenario ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'give the path of a scenario file, e.g. scenarios/switchover.yaml');
  }
  return parseScenario(text, file, opts);
}

export function parseScenario(text: string, file: string, opts: LoadOptions = {}): Scenario {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(e.pos[0]);
    throw new RedoshipError('USAGE', `${file}: line ${pos.line}, column ${pos.col}: ${e.message.split('\n')[0]}`, 'fix the YAML syntax (scenarios/*.yaml are examples)');
  }
  return new Validator(doc, lineCounter, file, opts).scenario();
}

type Path = Array<string | number>;

class Validator {
  private vars: Record<string, string | number | boolean> = {};
  private nodeNames = new Set<string>();
  private marks = new Set<string>();
  private hashes = new Set<string>();

  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly file: string,
    private readonly opts: LoadOptions,
  ) {}

  private where(path: Path): string {
    let p = path;
    let n = this.doc.getIn(p, true) as { range?: [number, number, number] } | undefined;
    while ((!n || !n.range) && p.length > 0) {
      p = p.slice(0, -1);
      n = (p.length === 0 ? this.doc.contents : this.doc.getIn(p, true)) as { range?: [number, number, number] } | undefined;
    }
    const line = n?.range ? ` (line ${this.lines.linePos(n.range[0]).line})` : '';
    const s = path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
    return `${s || '(top)'}${line}`;
  }

  private fail(path: Path, msg: string, hint = 'see scenarios/*.yaml and `redoship drill --help` for the format'): never {
    throw new RedoshipError('USAGE', `${this.file}: ${this.where(path)}: ${msg}`, hint);
  }

  scenario(): Scenario {
    const top = this.doc.toJS() as unknown;
    if (!isObject(top)) this.fail([], 'a scenario is a mapping with nodes:, steps: and checks:');
    this.keys(top, [], ['name', 'description', 'vars', 'short', 'nodes', 'workload', 'steps', 'checks'], ['nodes', 'steps']);
    this.readVars(top);
    const name = top.name === undefined ? basename(this.file).replace(/\.ya?ml$/, '') : this.str(top.name, ['name']);
    const description = top.description === undefined ? '' : this.str(top.description, ['description']).trim();
    const nodes = this.nodes(top.nodes);
    const workload = top.workload === undefined ? null : this.workload(this.subst(top.workload, ['workload']), nodes);
    if (!isSeq(this.doc.get('steps', true)) || !Array.isArray(top.steps)) this.fail(['steps'], 'steps: must be a list');
    const steps = (top.steps as unknown[]).map((s, i) => this.step(s, ['steps', i], workload));
    if (top.checks !== undefined && !Array.isArray(top.checks)) this.fail(['checks'], 'checks: must be a list');
    const checks = ((top.checks as unknown[] | undefined) ?? []).map((c, i) => this.checkAction(c, ['checks', i]));
    return { name, description, file: this.file, vars: this.vars, nodes, workload, steps, checks };
  }

  private keys(o: Record<string, unknown>, path: Path, allowed: readonly string[], required: readonly string[] = []): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.fail([...path, k], `unknown key "${k}"`, `allowed here: ${allowed.join(', ')}`);
    for (const k of required) if (o[k] === undefined || o[k] === null) this.fail(path, `missing ${k}:`, `add ${k}: (allowed here: ${allowed.join(', ')})`);
  }

  private readVars(top: Record<string, unknown>): void {
    for (const section of ['vars', 'short'] as const) {
      const v = top[section];
      if (v === undefined) continue;
      if (!isObject(v)) this.fail([section], `${section}: must be a mapping of names to values`);
      for (const [k, x] of Object.entries(v)) {
        if (!NAME_RE.test(k)) this.fail([section, k], `"${k}" is not a variable name`);
        if (typeof x !== 'string' && typeof x !== 'number' && typeof x !== 'boolean') this.fail([section, k], 'a variable is a string, number or boolean');
        if (section === 'short' && !(k in this.vars)) this.fail([section, k], `short: sets "${k}", which vars: does not define`);
        if (section === 'vars' || this.opts.short) this.vars[k] = x;
      }
    }
    for (const [k, x] of Object.entries(this.opts.set ?? {})) {
      if (!(k in this.vars)) throw new RedoshipError('USAGE', `--set ${k}: the scenario has no variable "${k}"`, `its variables: ${Object.keys(this.vars).join(', ') || '(none)'}`);
      this.vars[k] = typeof this.vars[k] === 'number' && Number.isFinite(Number(x)) ? Number(x) : x;
    }
  }

  /** Replaces "$name" (whole value, keeps the var's type) and "${name}" (inside a string) everywhere. */
  private subst(v: unknown, path: Path): unknown {
    if (typeof v === 'string') {
      const whole = /^\$([A-Za-z_][A-Za-z0-9_-]*)$/.exec(v);
      const get = (k: string) => {
        if (!(k in this.vars)) this.fail(path, `unknown variable $${k}`, `define it under vars: (defined: ${Object.keys(this.vars).join(', ') || 'none'})`);
        return this.vars[k]!;
      };
      if (whole) return get(whole[1]!);
      return v.replace(/\$\{([A-Za-z_][A-Za-z0-9_-]*)\}/g, (_, k: string) => String(get(k)));
    }
    if (Array.isArray(v)) return v.map((x, i) => this.subst(x, [...path, i]));
    if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.subst(x, [...path, k])]));
    return v;
  }

  private str(v: unknown, path: Path): string {
    if (typeof v !== 'string') this.fail(path, 'must be a string');
    return v;
  }

  private nodes(raw: unknown): NodeSpec[] {
    if (!isObject(raw) || Object.keys(raw).length === 0) this.fail(['nodes'], 'nodes: must map node names to { role: ... }');
    for (const k of Object.keys(raw)) {
      if (!NAME_RE.test(k)) this.fail(['nodes', k], `"${k}" is not a node name (letters, digits, - and _)`);
      this.nodeNames.add(k);
    }
    const out: NodeSpec[] = [];
    for (const [name, v0] of Object.entries(raw)) {
      const path = ['nodes', name];
      const v = this.subst(v0, path);
      if (!isObject(v)) this.fail(path, 'a node is a mapping like { role: standby, from: a }');
      this.keys(v, path, ['role', 'from', 'delay', 'proxy', 'db', 'disk'], ['role']);
      const role = v.role;
      if (role !== 'primary' && role !== 'standby' && role !== 'none') this.fail([...path, 'role'], `role "${String(role)}": use primary, standby or none`);
      let from: string | null = null;
      if (role === 'standby') {
        if (v.from === undefined) this.fail(path, 'a standby needs from: (the node it receives redo from)');
        from = this.nodeRef(v.from, [...path, 'from']);
        if (from === name) this.fail([...path, 'from'], 'a node cannot receive from itself');
      } else if (v.from !== undefined) this.fail([...path, 'from'], `from: is only for standbys (this node's role is ${role})`);
      const delayMs = v.delay === undefined ? 0 : this.duration(v.delay, [...path, 'delay']);
      const proxy = v.proxy === undefined ? false : this.bool(v.proxy, [...path, 'proxy']);
      if (proxy && role !== 'standby') this.fail([...path, 'proxy'], 'proxy: puts a proxy on the link a standby receives on; this node is no standby');
      const db = v.db === undefined ? true : this.bool(v.db, [...path, 'db']);
      const disk = v.disk === undefined ? null : this.size(v.disk, [...path, 'disk']);
      out.push({ name, role, from, delayMs, proxy, db, disk });
    }
    const primaries = out.filter((n) => n.role === 'primary');
    if (primaries.length !== 1) this.fail(['nodes'], `exactly one node must have role: primary (found ${primaries.length})`);
    return out;
  }

  private workload(v: unknown, nodes: NodeSpec[]): WorkloadSpec {
    const path = ['workload'];
    if (!isObject(v)) this.fail(path, 'workload: is a mapping like { rate: 200, mix: small }');
    this.keys(v, path, ['dbs', 'rate', 'mix', 'seed']);
    const dbs = v.dbs === undefined ? nodes.filter((n) => n.db && n.role !== 'none').sort((a, b) => (a.role === 'primary' ? -1 : b.role === 'primary' ? 1 : 0)).map((n) => n.name) : this.nodeList(v.dbs, [...path, 'dbs']);
    dbs.forEach((d, i) => nodes.find((n) => n.name === d)!.db || this.fail([...path, 'dbs', i], `node ${d} has no database (db: false)`));
    const primary = nodes.find((n) => n.role === 'primary')!.name;
    if (dbs[0] !== primary) this.fail([...path, 'dbs'], `the first of dbs: must be the primary (${primary}): the workload starts there`);
    const rate = v.rate === undefined ? 200 : this.int(v.rate, [...path, 'rate']);
    const mix = v.mix === undefined ? 'small' : v.mix;
    if (mix !== 'small' && mix !== 'stress') this.fail([...path, 'mix'], `mix "${String(mix)}": use small or stress`);
    const seed = v.seed === undefined ? 1 : this.int(v.seed, [...path, 'seed']);
    return { dbs, rate, mix, seed };
  }

  private nodeRef(v: unknown, path: Path): string {
    if (typeof v !== 'string') this.fail(path, 'must be a node name');
    if (!this.nodeNames.has(v)) this.fail(path, `no node named "${v}"`, `nodes: ${[...this.nodeNames].join(', ')}`);
    return v;
  }
  private nodeList(v: unknown, path: Path): string[] {
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0) this.fail(path, 'needs at least one node');
    return list.map((x, i) => this.nodeRef(x, Array.isArray(v) ? [...path, i] : path));
  }
  private duration(v: unknown, path: Path): number {
    const ms = parseDurationMs(v);
    if (ms === null) this.fail(path, `"${String(v)}" is not a duration`, 'write it like 250ms, 4s or 2m');
    return ms;
  }
  private int(v: unknown, path: Path): number {
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) this.fail(path, `"${String(v)}" is not a whole number >= 0`);
    return n;
  }
  private bool(v: unknown, path: Path): boolean {
    if (typeof v !== 'boolean') this.fail(path, 'must be true or false');
    return v;
  }
  private size(v: unknown, path: Path): string {
    if (typeof v !== 'string' || !/^\d+[kmg]b?$/i.test(v)) this.fail(path, `"${String(v)}" is not a size`, 'write it like 4MB or 512kb');
    return v.replace(/b$/i, '').toLowerCase();
  }

  private step(raw: unknown, path: Path, workload: WorkloadSpec | null): Step {
    if (isObject(raw) && Object.keys(raw).length === 1 && 'check' in raw) {
      const check = this.checkAction(raw.check, [...path, 'check']);
      return { kind: 'check', args: {}, where: check.where, label: `check ${check.label}`, check };
    }
    const s = this.action(raw, path, STEPS, 'step') as Step;
    const a = s.args;
    if (s.kind === 'workload' && !workload) this.fail(path, 'a workload step needs a workload: section');
    if (s.kind === 'mark') this.marks.add(a.name as string);
    if (s.kind === 'hash-table') this.hashes.add(a.as as string);
    for (const k of ['until-time', 'time'])
      if (a[k] && 'mark' in (a[k] as TimeRef) && !this.marks.has((a[k] as { mark: string }).mark))
        this.fail([...path, s.kind, k], `no earlier mark step named "${(a[k] as { mark: string }).mark}"`, 'add `- mark: NAME` before this step');
    if ((s.kind === 'apply-until' || s.kind === 'promote' || s.kind === 'restore') && a.time !== undefined && a.lsn !== undefined) this.fail([...path, s.kind], 'give time or lsn, not both');
    if (s.kind === 'apply-until' && a.time === undefined && a.lsn === undefined) this.fail([...path, s.kind], 'apply-until needs time: or lsn:');
    return s;
  }

  private checkAction(raw: unknown, path: Path): Check {
    const c = this.action(raw, path, CHECKS, 'check') as Check;
    if (c.kind === 'table-hash' && !this.hashes.has(c.args.equals as string))
      this.fail([...path, 'table-hash', 'equals'], `no earlier hash-table step remembers "${String(c.args.equals)}"`, 'add `- hash-table: { node: N, table: T, as: NAME }` before it');
    return c;
  }

  private action(raw0: unknown, path: Path, specs: Readonly<Record<string, Spec>>, what: 'step' | 'check'): Action<string> {
    const kinds = Object.keys(specs).join(', ');
    if (!isObject(raw0) || Object.keys(raw0).length !== 1)
      this.fail(path, `a ${what} is a mapping with exactly one key, the ${what} kind`, `${what} kinds: ${kinds}`);
    const [kind, body0] = Object.entries(raw0)[0]!;
    const spec = specs[kind];
    if (!spec) this.fail([...path, kind], `unknown ${what} "${kind}"`, `${what} kinds: ${kinds}`);
    const bodyPath = [...path, kind];
    const body = this.subst(body0, bodyPath);
    let fields: Record<string, unknown>;
    if (isObject(body)) fields = body;
    else if (spec.scalar && body !== null && body !== undefined) fields = { [spec.scalar]: body };
    else this.fail(bodyPath, `${kind} needs ${spec.scalar ? `a value or ` : ''}a mapping of: ${Object.keys(spec.fields).join(', ')}`);
    const required = Object.entries(spec.fields).filter(([, f]) => f.required).map(([k]) => k);
    this.keys(fields, bodyPath, Object.keys(spec.fields), required);
    const args: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) args[k] = this.value(v, [...bodyPath, ...(isObject(body) ? [k] : [])], spec.fields[k]!.type);
    const full = `${kind} ${Object.entries(fields).map(([k, v]) => (spec.scalar === k ? fmt(v) : `${k}: ${fmt(v)}`)).join(', ')}`.trim().replace(/\s+/g, ' ');
    const label = full.length > 60 ? `${full.slice(0, 57)}...` : full;
    return { kind, args, where: this.where(path), label };
  }

  private value(v: unknown, path: Path, type: FieldType): unknown {
    switch (type) {
      case 'node':
        return this.nodeRef(v, path);
      case 'nodes':
        return this.nodeList(v, path);
      case 'duration':
        return this.duration(v, path);
      case 'int':
        return this.int(v, path);
      case 'bool':
        return this.bool(v, path);
      case 'size':
        return this.size(v, path);
      case 'string':
        if (typeof v !== 'string' && typeof v !== 'number') this.fail(path, 'must be a string');
        return String(v);
      case 'name':
        if (typeof v !== 'string' || !NAME_RE.test(v)) this.fail(path, `"${String(v)}" is not a name (letters, digits, - and _)`);
        return v;
      case 'time': {
        if (typeof v === 'string' && v.startsWith('@')) return { mark: v.slice(1) };
        if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return { iso: new Date(v).toISOString() };
        if (v instanceof Date) return { iso: v.toISOString() };
        return this.fail(path, `"${String(v)}" is not a time`, 'write @mark (a name from an earlier mark step) or an ISO time');
      }
      default: {
        const allowed = type.slice('enum:'.length).split('|');
        if (typeof v !== 'string' || !allowed.includes(v)) this.fail(path, `"${String(v)}": use ${allowed.join(' or ')}`);
        return v;
      }
    }
  }
}

function fmt(v: unknown): string {
  return Array.isArray(v) ? v.map(String).join(', ') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

