/**
 * The Prometheus text exposition format (version 0.0.4), the pure part: label escaping, number formatting and
 * one metric family (`# HELP`, `# TYPE`, then its samples). Here so that any layer that serves metrics (the
 * Fastify server's /metrics, the worker role's plain node:http one) writes the same text.
 * Reference: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A label value inside double quotes: backslash, newline and the quote are escaped. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Integers as written; other numbers to 12 significant digits (no float noise like 0.30000000000000004). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(12)));
}

export type Labels = Record<string, string | number>;

export interface Sample {
  labels?: Labels;
  value: number;
}

/** `name{a="x",b="y"}` (or the bare name without labels). */
export function sampleName(name: string, labels?: Labels): string {
  const pairs = Object.entries(labels ?? {}).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  return pairs.length ? `${name}{${pairs.join(',')}}` : name;
}

/** One metric family's lines: HELP, TYPE, then one line per sample. */
export function metricFamily(name: string, type: 'counter' | 'gauge' | 'histogram' | 'untyped', help: string, samples: readonly Sample[]): string[] {
  return [`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`, ...samples.map((s) => `${sampleName(name, s.labels)} ${formatValue(s.value)}`)];
}
