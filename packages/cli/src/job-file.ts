// Job and workflow files (`crystalmath submit --file job.yaml`, `crystalmath workflow submit
// dag.yaml`): their schema, parsing, and translation into the queue's types. Everything is
// validated (zod for shape, core's validateJobSpec for content) before the queue is touched.

import { type Stats, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import {
  isCrystalMathError,
  type JobSpec,
  type JsonValue,
  ValidationError,
  validateJobSpec,
} from '@crystalmath/core';
import type {
  Dependency,
  EnqueueOptions,
  Metadata,
  WorkflowDefinition,
  WorkflowJobDefinition,
} from '@crystalmath/queue';
import { type SlurmResources, validateSlurmResources } from '@crystalmath/runner-slurm';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { CliError } from './cli-error.js';
import { describeZodIssue, resourcesSchema } from './config/config-schema.js';

const argv = z.array(z.string()).min(1);
const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([
    z.string(),
    z.number(),
    z.boolean(),
    z.null(),
    z.array(jsonValue),
    z.record(z.string(), jsonValue),
  ]),
);
const dependency = z.union([
  z.string().min(1),
  z.strictObject({
    job: z.string().min(1),
    condition: z.enum(['afterok', 'afterany', 'afternotok']).optional(),
  }),
]);

const specFields = {
  argv: argv.optional(),
  script: z.string().min(1).optional(),
  workdir: z.string().optional(),
  inputs: z
    .array(
      z.union([
        z.strictObject({ from: z.string().min(1), to: z.string().min(1) }),
        z.strictObject({ content: z.string(), to: z.string().min(1) }),
        // another job's collected output: a workflow key in a workflow file, a job id otherwise
        z.strictObject({
          fromJob: z.union([z.string().min(1), z.number().int().positive()]).transform(String),
          path: z.string().min(1),
          to: z.string().min(1),
        }),
      ]),
    )
    .optional(),
  outputs: z
    .array(
      z.union([
        z.string(),
        z.strictObject({
          glob: z.string().min(1),
          required: z.boolean().optional(),
          when: z.enum(['success', 'always']).optional(),
        }),
      ]),
    )
    .optional(),
  env: z.record(z.string(), z.string()).optional(),
  modules: z.array(z.string()).optional(),
  pre: z.array(argv).optional(),
  post: z.array(argv).optional(),
  resources: resourcesSchema.optional(),
};

const enqueueFields = {
  target: z.string().min(1).optional(),
  priority: z.number().int().optional(),
  maxAttempts: z.number().int().min(1).max(1000).optional(),
  tags: z.array(z.string()).optional(),
  metadata: z.record(z.string(), jsonValue).optional(),
  dependsOn: z.array(dependency).optional(),
};

export const jobFileSchema = z.strictObject({
  name: z.string().min(1),
  ...specFields,
  ...enqueueFields,
  idempotencyKey: z.string().min(1).optional(),
});

export const workflowFileSchema = z.strictObject({
  name: z.string().min(1),
  target: z.string().min(1).optional(),
  onFailure: z.enum(['skip-dependents', 'continue']).optional(),
  idempotencyKey: z.string().min(1).optional(),
  metadata: z.record(z.string(), jsonValue).optional(),
  jobs: z
    .record(
      z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'job keys are letters, digits and ._-'),
      z.strictObject({ name: z.string().min(1).optional(), ...specFields, ...enqueueFields }),
    )
    .refine((jobs) => Object.keys(jobs).length > 0, 'a workflow needs at least one job'),
});

export type JobFile = z.output<typeof jobFileSchema>;
export type WorkflowFile = z.output<typeof workflowFileSchema>;

/** Reads a YAML or JSON file into a plain value; a CliError (E_VALIDATION) names file and line. */
export async function readDataFile(file: string): Promise<unknown> {
  const label = basename(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_VALIDATION',
      `${label}: cannot read ${file} (${code ?? 'error'})`,
      { cause: err },
    );
  }
  try {
    if (file.endsWith('.json')) return JSON.parse(text) as unknown;
    return parseYaml(text, { prettyErrors: false, uniqueKeys: true }) as unknown;
  } catch (err) {
    const where = err instanceof YAMLParseError ? ` at line ${yamlLine(text, err.pos[0])}` : '';
    const msg = (err as Error).message.split('\n', 1)[0];
    throw new CliError(
      'E_VALIDATION',
      `${label}: invalid ${file.endsWith('.json') ? 'JSON' : 'YAML'}${where}: ${msg}`,
      {
        cause: err,
      },
    );
  }
}

type SpecFields = { [K in keyof typeof specFields]?: z.output<(typeof specFields)[K]> };

/**
 * A local input is read only when the job is submitted, perhaps hours later: a path that is
 * missing (or neither a regular file nor a folder, which is staged recursively) now is
 * refused at enqueue, naming the field.
 */
function assertLocalInputsExist(spec: JobSpec, field: string): void {
  spec.inputs?.forEach((input, i) => {
    if (!('from' in input)) return;
    let stat: Stats | undefined;
    try {
      stat = statSync(input.from, { throwIfNoEntry: false });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new ValidationError(
        `${field}.inputs[${i}].from`,
        `cannot read ${input.from} (${code})`,
      );
    }
    if (stat === undefined) {
      throw new ValidationError(`${field}.inputs[${i}].from`, `${input.from} does not exist`);
    }
    if (!stat.isFile() && !stat.isDirectory()) {
      throw new ValidationError(
        `${field}.inputs[${i}].from`,
        `${input.from} is not a regular file or a folder`,
      );
    }
  });
}

function toSpec(
  name: string,
  f: SpecFields,
  baseDir: string,
  field: string,
  label: string,
): JobSpec {
  const spec: JobSpec = {
    name,
    ...(f.argv !== undefined ? { argv: f.argv } : {}),
    ...(f.script !== undefined ? { script: f.script } : {}),
    ...(f.workdir !== undefined ? { workdir: f.workdir } : {}),
    ...(f.inputs !== undefined
      ? {
          inputs: f.inputs.map((i) =>
            'from' in i
              ? { from: isAbsolute(i.from) ? i.from : resolve(baseDir, i.from), to: i.to }
              : i,
          ),
        }
      : {}),
    ...(f.outputs !== undefined
      ? {
          outputs: f.outputs.map((o) =>
            typeof o === 'string'
              ? o
              : {
                  glob: o.glob,
                  ...(o.required !== undefined ? { required: o.required } : {}),
                  ...(o.when !== undefined ? { when: o.when } : {}),
                },
          ),
        }
      : {}),
    ...(f.env !== undefined ? { env: f.env } : {}),
    ...(f.modules !== undefined ? { modules: f.modules } : {}),
    ...(f.pre !== undefined ? { pre: f.pre } : {}),
    ...(f.post !== undefined ? { post: f.post } : {}),
    ...(f.resources !== undefined ? { resources: f.resources as SlurmResources } : {}),
  };
  try {
    validateJobSpec(spec, field);
    validateSlurmResources(spec.resources, `${field}.resources`);
    assertLocalInputsExist(spec, field);
  } catch (err) {
    if (isCrystalMathError(err))
      throw new CliError(err.code, `${label}: ${err.message.replace(/^\[\w+\] /, '')}`, {
        cause: err,
      });
    throw err;
  }
  return spec;
}

function enqueueOptions(
  f: z.output<typeof jobFileSchema>,
  target: string,
): EnqueueOptions<Metadata> {
  return {
    target,
    ...(f.priority !== undefined ? { priority: f.priority } : {}),
    ...(f.maxAttempts !== undefined ? { maxAttempts: f.maxAttempts } : {}),
    ...(f.tags !== undefined ? { tags: f.tags } : {}),
    ...(f.metadata !== undefined ? { metadata: f.metadata } : {}),
    ...(f.dependsOn !== undefined ? { dependsOn: f.dependsOn as readonly Dependency[] } : {}),
    ...(f.idempotencyKey !== undefined ? { idempotencyKey: f.idempotencyKey } : {}),
  };
}

/** A parsed job file: the spec, and its enqueue options minus the target (chosen by the caller). */
export interface ParsedJobFile {
  readonly spec: JobSpec;
  readonly target: string | undefined;
  readonly options: (target: string) => EnqueueOptions<Metadata>;
}

/** Validates a job-file value. `file` names it in errors and anchors relative input paths. */
export function parseJobFile(value: unknown, file: string): ParsedJobFile {
  const label = basename(file);
  const parsed = jobFileSchema.safeParse(value);
  if (!parsed.success)
    throw new CliError('E_VALIDATION', `${label}: ${describeZodIssue(parsed.error)}`);
  const f = parsed.data;
  const spec = toSpec(f.name, f, dirname(resolve(file)), 'job', label);
  return { spec, target: f.target, options: (target) => enqueueOptions(f, target) };
}

/** Validates a workflow-file value into a `WorkflowDefinition` (targets still unresolved). */
export function parseWorkflowFile(value: unknown, file: string): WorkflowDefinition<Metadata> {
  const label = basename(file);
  const parsed = workflowFileSchema.safeParse(value);
  if (!parsed.success)
    throw new CliError('E_VALIDATION', `${label}: ${describeZodIssue(parsed.error)}`);
  const w = parsed.data;
  const baseDir = dirname(resolve(file));
  const jobs: Record<string, WorkflowJobDefinition<Metadata>> = {};
  for (const [key, j] of Object.entries(w.jobs)) {
    const spec = toSpec(j.name ?? key, j, baseDir, `jobs.${key}`, label);
    for (const [i, d] of (j.dependsOn ?? []).entries()) {
      const parent = typeof d === 'string' ? d : d.job;
      if (!(parent in w.jobs)) {
        throw new CliError(
          'E_QUEUE_UNKNOWN_DEPENDENCY',
          `${label}: jobs.${key}.dependsOn[${i}]: no job "${parent}" in this workflow`,
        );
      }
    }
    jobs[key] = {
      spec,
      ...(j.target !== undefined ? { target: j.target } : {}),
      ...(j.priority !== undefined ? { priority: j.priority } : {}),
      ...(j.maxAttempts !== undefined ? { maxAttempts: j.maxAttempts } : {}),
      ...(j.tags !== undefined ? { tags: j.tags } : {}),
      ...(j.metadata !== undefined ? { metadata: j.metadata } : {}),
      ...(j.dependsOn !== undefined ? { dependsOn: j.dependsOn as readonly Dependency[] } : {}),
    };
  }
  return {
    name: w.name,
    jobs,
    ...(w.target !== undefined ? { target: w.target } : {}),
    ...(w.onFailure !== undefined ? { onFailure: w.onFailure } : {}),
    ...(w.idempotencyKey !== undefined ? { idempotencyKey: w.idempotencyKey } : {}),
    ...(w.metadata !== undefined ? { metadata: w.metadata } : {}),
  };
}

/** 1-based line number of a character offset. */
function yamlLine(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === '\n') line++;
  return line;
}
