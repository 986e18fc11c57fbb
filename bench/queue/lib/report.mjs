// Turns the measured figures into the printed table: each figure with its ratio to the best
// peer of its group (embedded/SQLite-class peers, or PostgreSQL peers) and a PASS/FAIL against
// the targets of issues 7 and 8.

/** The metrics, in print order, with their direction and target. */
export const METRICS = [
  { key: 'single', title: 'single enqueue', better: 'higher', target: { min: 10_000 } },
  { key: 'bulk', title: 'bulk enqueue', better: 'higher', target: { min: 100_000 } },
  { key: 'dispatch', title: 'dispatch (no-op worker)', better: 'higher', target: { min: 5_000 } },
  { key: 'latencyP50', title: 'enqueue-to-dispatch p50', better: 'lower', target: { max: 10 } },
  { key: 'latencyP99', title: 'enqueue-to-dispatch p99', better: 'lower' },
  { key: 'dependencyP50', title: 'dependency release p50', better: 'lower' },
  { key: 'dependencyP99', title: 'dependency release p99', better: 'lower' },
  {
    key: 'dispatchFinished',
    title: 'dispatch beside finished jobs',
    better: 'higher',
    target: { maxSlowdown: 0.1 },
  },
  {
    key: 'dispatchProducers',
    title: 'dispatch while producer processes enqueue',
    better: 'higher',
  },
  {
    key: 'dispatchSchedulers',
    title: 'dispatch by worker processes on one database',
    better: 'higher',
  },
];

const fmtNumber = (v, unit) => {
  if (!Number.isFinite(v)) return String(v);
  if (unit === 'ms') return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ms`;
  return `${Math.round(v).toLocaleString('en-US')} ${unit}`;
};

/** Target text of a metric, e.g. `>= 10,000 jobs/s`. */
export function targetText(metric) {
  const t = metric.target;
  if (!t) return '';
  if (t.min !== undefined) return `>= ${t.min.toLocaleString('en-US')} jobs/s`;
  if (t.max !== undefined) return `< ${t.max} ms`;
  return `<= ${t.maxSlowdown * 100}% slower`;
}

/** 'PASS' | 'FAIL' | '' for one figure. */
export function verdict(metric, fig) {
  const t = metric.target;
  if (!t || !fig) return '';
  if (fig.error) return 'FAIL';
  if (fig.na) return '';
  if (t.min !== undefined) return fig.value >= t.min ? 'PASS' : 'FAIL';
  if (t.max !== undefined) return fig.value < t.max ? 'PASS' : 'FAIL';
  if (fig.slowdown === undefined) return '';
  return fig.slowdown <= t.maxSlowdown ? 'PASS' : 'FAIL';
}

/**
 * Ratio of a figure to the best peer of its group: > 1 means better than that peer (faster,
 * or lower latency), < 1 worse. Peers are compared with the best of the other peers.
 */
export function ratioToBestPeer(metric, system, results) {
  const fig = results.get(system.id)?.figures?.[metric.key];
  if (!fig || fig.value === undefined) return undefined;
  const peers = [...results.values()].filter(
    (r) => r.system.group === system.group && !r.system.ours && r.system.id !== system.id,
  );
  const values = peers
    .map((r) => r.figures?.[metric.key]?.value)
    .filter((v) => typeof v === 'number' && Number.isFinite(v) && v > 0);
  if (values.length === 0) return undefined;
  if (metric.better === 'higher') return fig.value / Math.max(...values);
  return Math.min(...values) / fig.value;
}

function cell(fig) {
  if (!fig) return 'not measured';
  if (fig.na) return fig.na;
  if (fig.error) return `error: ${fig.error}`;
  let text = fmtNumber(fig.value, fig.unit);
  if (fig.slowdown !== undefined) {
    const pct = fig.slowdown * 100;
    text += ` (${pct >= 0 ? '-' : '+'}${Math.abs(pct).toFixed(1)}%)`;
  }
  if (fig.produced !== undefined) text += ` (enq ${fmtNumber(fig.produced, 'jobs/s')})`;
  if (fig.duplicates) text += ` (${fig.duplicates} twice)`;
  return text;
}

/** The printed report: one block per metric, one line per system. */
export function renderTable(results, meta) {
  const groupOrder = (s) => (s.group === 'sqlite' ? 0 : 1);
  const systems = [...results.values()]
    .filter((r) => r.figures)
    .map((r) => r.system)
    .sort((a, b) => groupOrder(a) - groupOrder(b));
  const labelWidth = Math.max(...systems.map((s) => s.label.length), 10);
  const lines = [];
  const hr = '-'.repeat(labelWidth + 72);
  lines.push(
    `queue bench: ${meta.mode} run, ${meta.node}, ${meta.cpus} CPUs, ${meta.counts}`,
    `load average (1/5/15 min): ${meta.load.start.join(' ')} at the start, ${meta.load.end.join(' ')} at the end`,
    'ratio = vs the best peer of the same store class (sqlite class: plainjob, liteque, BullMQ;',
    '        postgres class: pg-boss, graphile-worker); > 1.00x is better than that peer',
    hr,
  );
  for (const metric of METRICS) {
    const target = targetText(metric);
    lines.push(`${metric.title}${target ? `   [target ${target}]` : ''}`);
    for (const system of systems) {
      const fig = results.get(system.id).figures[metric.key];
      const ratio = ratioToBestPeer(metric, system, results);
      const ratioText = ratio === undefined ? '' : `${ratio.toFixed(2)}x`;
      const v = verdict(metric, fig);
      lines.push(
        `  ${system.label.padEnd(labelWidth)}  ${cell(fig).padEnd(44)} ${ratioText.padStart(8)}  ${v}`,
      );
    }
  }
  lines.push(hr);
  for (const r of results.values()) {
    if (r.skip)
      lines.push(`${r.system.ours ? 'system' : 'peer'} ${r.system.label}: not run: ${r.skip}`);
  }
  for (const system of systems) lines.push(`settings ${system.label}: ${system.settings}`);
  for (const note of meta.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

/**
 * The figures as data, one entry per metric: every system's value (or why it has none), its
 * ratio to the best peer of its class and its verdict. Written into the JSON and printed by
 * `--json`.
 */
export function summary(results) {
  const systems = [...results.values()];
  return METRICS.map((metric) => ({
    key: metric.key,
    title: metric.title,
    better: metric.better,
    target: targetText(metric) || null,
    systems: systems.map((r) => {
      const fig = r.figures?.[metric.key];
      const ratio = r.figures ? ratioToBestPeer(metric, r.system, results) : undefined;
      return {
        id: r.system.id,
        label: r.system.label,
        group: r.system.group,
        ours: Boolean(r.system.ours),
        ...(r.skip ? { notRun: r.skip } : {}),
        ...(fig ?? {}),
        ...(ratio !== undefined ? { ratioToBestPeer: Number(ratio.toFixed(3)) } : {}),
        ...(fig && verdict(metric, fig) ? { verdict: verdict(metric, fig) } : {}),
      };
    }),
  }));
}
