// The chart of a run: one panel per figure, one horizontal bar per system, SQLite class and
// PostgreSQL class in two colours, ours darker with its ratio to the best peer of its class. A
// plain SVG string written by the bench itself (no dependency), next to the JSON.

const WIDTH = 1000;
const COLUMNS = 2;
const PANEL_W = WIDTH / COLUMNS;
const LABEL_W = 190;
const BAR_H = 16;
const ROW_H = 20;
const COLOURS = {
  sqlite: { ours: '#1f5fa8', peer: '#9cc0e8' },
  postgres: { ours: '#b3541e', peer: '#f2b98f' },
};

const escapeXml = (text) =>
  String(text).replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c],
  );

function valueText(entry) {
  const v = entry.value;
  if (entry.unit === 'ms') return `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`;
  let text = `${Math.round(v).toLocaleString('en-US')}/s`;
  if (entry.slowdown !== undefined) {
    const pct = entry.slowdown * 100;
    text += ` (${pct >= 0 ? '-' : '+'}${Math.abs(pct).toFixed(1)}%)`;
  }
  return text;
}

function panel(metric, x, y) {
  const rows = metric.systems;
  const values = rows.map((r) => r.value).filter((v) => typeof v === 'number' && v > 0);
  const max = values.length > 0 ? Math.max(...values) : 1;
  const barMax = PANEL_W - LABEL_W - 150;
  const out = [];
  const hint = metric.better === 'lower' ? 'lower is better' : 'higher is better';
  out.push(
    `<text x="${x + 8}" y="${y + 16}" class="t">${escapeXml(metric.title)}</text>`,
    `<text x="${x + PANEL_W - 8}" y="${y + 16}" class="h" text-anchor="end">${hint}${metric.target ? `, target ${escapeXml(metric.target)}` : ''}</text>`,
  );
  rows.forEach((r, i) => {
    const ry = y + 26 + i * ROW_H;
    const colour = COLOURS[r.group] ?? COLOURS.sqlite;
    out.push(
      `<text x="${x + LABEL_W - 6}" y="${ry + 12}" class="${r.ours ? 'o' : 'l'}" text-anchor="end">${escapeXml(r.label)}</text>`,
    );
    if (typeof r.value === 'number' && Number.isFinite(r.value)) {
      const w = Math.max(1, (r.value / max) * barMax);
      const ratio =
        r.ours && r.ratioToBestPeer !== undefined ? `  ${r.ratioToBestPeer.toFixed(2)}x` : '';
      out.push(
        `<rect x="${x + LABEL_W}" y="${ry}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${r.ours ? colour.ours : colour.peer}"/>`,
        `<text x="${x + LABEL_W + w + 4}" y="${ry + 12}" class="${r.ours ? 'o' : 'v'}">${escapeXml(valueText(r))}${ratio}</text>`,
      );
    } else {
      const why = r.notRun
        ? `not run: ${r.notRun}`
        : (r.na ?? (r.error ? `error: ${r.error}` : ''));
      out.push(
        `<text x="${x + LABEL_W}" y="${ry + 12}" class="n">${escapeXml(why.slice(0, 52))}</text>`,
      );
    }
  });
  return { svg: out.join(''), height: 34 + rows.length * ROW_H };
}

/** The SVG of one run's JSON (as written to bench/results/latest.json). */
export function renderChart(json) {
  const panels = [];
  let height = 0;
  const top = 46;
  for (let i = 0; i < json.summary.length; i += COLUMNS) {
    const row = json.summary
      .slice(i, i + COLUMNS)
      .map((m, j) => panel(m, j * PANEL_W, top + height));
    panels.push(...row.map((p) => p.svg));
    height += Math.max(...row.map((p) => p.height)) + 8;
  }
  const load = json.load ? `, load average ${json.load.start[0]} -> ${json.load.end[0]}` : '';
  const title = `queue bench, ${json.mode} run, ${json.at.slice(0, 16).replace('T', ' ')} UTC, ${json.node}, ${json.cpus} CPUs${load}`;
  const legend =
    'darker bar = @crystalmath/queue with its ratio to the best peer of its class (> 1.00x is better); blue: SQLite class, orange: PostgreSQL class';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${top + height}" viewBox="0 0 ${WIDTH} ${top + height}" font-family="sans-serif">
<title>${escapeXml(title)}</title>
<style>.t{font-size:13px;font-weight:bold}.h,.n{font-size:11px;fill:#666}.l,.v{font-size:11px}.o{font-size:11px;font-weight:bold}.s{font-size:12px}</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="18" class="s">${escapeXml(title)}</text>
<text x="8" y="36" class="h">${escapeXml(legend)}</text>
${panels.join('\n')}
</svg>
`;
}
