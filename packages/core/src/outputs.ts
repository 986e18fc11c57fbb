// The one reading of a JobSpec's `outputs`: a plain glob, or a declaration with `required` and
// `when`. Runners only need the globs (`outputGlobs`); the queue's collection also needs which
// ones apply to an ending (`applicableOutputs`) and which must have matched something.

import { ValidationError } from './errors.js';
import { safeRelativePath } from './safe-path.js';

/** When a declared output is brought home: after a success only, or after any ending. */
export type OutputWhen = 'success' | 'always';

/**
 * An output declaration: a glob relative to the job directory (`*` and `?` within one segment,
 * `**` across segments), or an object saying whether it must exist and when it is collected.
 *
 * @example outputs: ['*.out', { glob: 'result.json', required: true }, { glob: '*.log', when: 'always' }]
 */
export type OutputSpec =
  | string
  | {
      readonly glob: string;
      /** A collection that matches no file fails the job, naming the glob. Default false. */
      readonly required?: boolean;
      /** `success` (default): collected after a success; `always`: after any ending (logs). */
      readonly when?: OutputWhen;
    };

/** An output declaration with its defaults filled in. */
export interface NormalizedOutput {
  readonly glob: string;
  readonly required: boolean;
  readonly when: OutputWhen;
}

/** Validates `outputs` (each glob confined, no `..`); throws a ValidationError naming the field. */
export function validateOutputs(outputs: unknown, field = 'spec.outputs'): void {
  if (outputs === undefined) return;
  if (!Array.isArray(outputs)) throw new ValidationError(field, 'must be an array');
  for (const [i, o] of outputs.entries()) {
    const f = `${field}[${i}]`;
    if (typeof o === 'string') {
      safeRelativePath(o, f);
      continue;
    }
    if (typeof o !== 'object' || o === null)
      throw new ValidationError(f, 'must be a glob or { glob, required?, when? }');
    const d = o as Record<string, unknown>;
    for (const k of Object.keys(d))
      if (!['glob', 'required', 'when'].includes(k))
        throw new ValidationError(`${f}.${k}`, 'is not a known field (glob, required, when)');
    safeRelativePath(d.glob as string, `${f}.glob`);
    if (d.required !== undefined && typeof d.required !== 'boolean')
      throw new ValidationError(`${f}.required`, 'must be a boolean');
    if (d.when !== undefined && d.when !== 'success' && d.when !== 'always')
      throw new ValidationError(`${f}.when`, "must be 'success' or 'always'");
  }
}

/** Every declaration with its defaults (`required: false`, `when: 'success'`). */
export function normalizeOutputs(outputs: readonly OutputSpec[] | undefined): NormalizedOutput[] {
  return (outputs ?? []).map((o) =>
    typeof o === 'string'
      ? { glob: o, required: false, when: 'success' }
      : { glob: o.glob, required: o.required ?? false, when: o.when ?? 'success' },
  );
}

/** The globs alone, in order: what a runner's `collect` matches by default. */
export function outputGlobs(outputs: readonly OutputSpec[] | undefined): string[] {
  return normalizeOutputs(outputs).map((o) => o.glob);
}

/** The declarations that apply to an ending: all after a success, `when: 'always'` ones otherwise. */
export function applicableOutputs(
  outputs: readonly OutputSpec[] | undefined,
  succeeded: boolean,
): NormalizedOutput[] {
  return normalizeOutputs(outputs).filter((o) => succeeded || o.when === 'always');
}
