/** A drill's result as text (the terminal), Markdown (--report) and JSON (--json). */
import type { DrillResult } from './runner.js';

const ms = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${Math.round(v)} ms`);
const at = (v: number) => `+${(v / 1000).toFixed(3)}s`;

function reported(r: Readonly<Record<string, unknown>>, skip: readonly string[] = []): string {
  const parts = Object.entries(r)
    .filter(([k, v]) => !skip.includes(k) && (typeof v !== 'object' || v === null))
    .map(([k, v]) => `${k} ${String(v)}`);
  for (const [k, v] of Object.entries(r)) if (Array.isArray(v) && !skip.includes(k)) parts.push(`${k}: ${v.length}`);
  return parts.join(', ');
}

/** The figures as lines (shared by text and Markdown). */
function figureLines(r: DrillResult): string[] {
  const f = r.figures;
  const out: string[] = [];
  if (f.workload) {
    out.push(`workload: ${f.workload.commits} commits, ${f.workload.switches} switch(es) of file`);
    out.push(
      `outages (RTO, first refused write to first accepted write): ${f.workload.outages.length === 0 ? 'none' : f.workload.outages.map((o) => `${o.ms === null ? 'NEVER ENDED' : ms(o.ms)} at ${at(o.atMs)} (${o.from} -> ${o.to ?? '?'}, during ${o.during})`).join('; ')}`,
    );
  }
  if (f.rpo) out.push(`transactions lost (RPO): ${f.rpo.lost} (${f.rpo.detail})`);
  for (const s of f.switchovers) out.push(`switchover ${s.from} -> ${s.to}: outage ${ms(s.outageMs)} as the workload saw it; command ${ms(s.commandMs)}${Object.keys(s.reported).length > 2 ? `; reported: ${reported(s.reported, ['from', 'to'])}` : ''}`);
  for (const x of f.failovers)
    out.push(
      `failover to ${x.node}: primary death to promotion ${ms(x.deathToPromotedMs)}; promote to first accepted write ${ms(x.promoteToFirstWriteMs)}; promote command ${ms(x.promoteCommandMs)}` +
        `${x.promoteMs !== null ? ` (reported promoteMs ${x.promoteMs})` : ''}${x.forkLsn !== null ? `; fork LSN ${x.forkLsn}` : ''}${x.incarnation !== null ? `, incarnation ${x.incarnation}` : ''}`,
    );
  for (const x of f.reinstates) out.push(`reinstate ${x.node}: command ${ms(x.commandMs)}; reported: ${reported(x.reported, ['node'])}`);
  for (const x of f.restores) out.push(`restore ${x.from} -> ${x.to}: command ${ms(x.commandMs)}; reported: ${reported(x.reported, ['from', 'to'])}`);
  for (const [n, l] of Object.entries(f.lags)) out.push(`lag ${n}${l.maxMs === null ? ' (archive only)' : ` (apply lag beyond its delay, while the workload ran): max ${ms(l.maxMs)}, median ${ms(l.p50Ms)}`}, at most ${l.maxRecordsBehind} records behind (${l.samples} samples)`);
  return out;
}

export function formatText(r: DrillResult): string {
  const lines = [`drill ${r.scenario} (${r.file}): ${r.passed ? 'PASS' : 'FAIL'} in ${(r.durationMs / 1000).toFixed(1)} s`];
  if (r.description) lines.push(`  ${r.description.replace(/\s+/g, ' ')}`);
  lines.push('timeline (since the start)');
  for (const e of r.timeline)
    lines.push(`  ${at(e.atMs).padStart(9)} ${e.status === 'ok' ? '  ' : e.status === 'failed' ? '!!' : '--'} ${e.label.padEnd(34)} ${String(e.ms).padStart(6)} ms${e.detail ? `  ${e.detail}` : ''}`);
  lines.push('figures');
  for (const l of figureLines(r)) lines.push(`  ${l}`);
  lines.push('checks');
  for (const c of r.checks) lines.push(`  ${c.passed ? 'PASS' : 'FAIL'} ${c.check}: ${c.detail}`);
  lines.push(`files: ${r.workDir}`);
  return lines.join('\n') + '\n';
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function formatMarkdown(r: DrillResult): string {
  const out = [
    `# Drill: ${r.scenario} — ${r.passed ? 'PASS' : 'FAIL'}`,
    '',
    ...(r.description ? [r.description.replace(/\s+/g, ' '), ''] : []),
    `Scenario \`${r.file}\`, started ${r.startedAt}, ${(r.durationMs / 1000).toFixed(1)} s. Variables: ${Object.entries(r.vars).map(([k, v]) => `\`${k}=${String(v)}\``).join(', ') || 'none'}.`,
    '',
    '## Checks',
    '',
    '| result | check | detail |',
    '| --- | --- | --- |',
    ...r.checks.map((c) => `| ${c.passed ? 'PASS' : '**FAIL**'} | ${cell(c.check)} | ${cell(c.detail)} |`),
    '',
    '## Figures',
    '',
    ...figureLines(r).map((l) => `- ${l}`),
    '',
    '## Timeline',
    '',
    '| at | step | took | result |',
    '| ---: | --- | ---: | --- |',
    ...r.timeline.map((e) => `| ${at(e.atMs)} | ${cell(e.label)} | ${e.ms} ms | ${e.status === 'ok' ? '' : `**${e.status}** `}${cell(e.detail)} |`),
    '',
    `Files (logs of every process): \`${r.workDir}\``,
    '',
  ];
  return out.join('\n');
}

export function formatJson(r: DrillResult): string {
  return JSON.stringify(r, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}
