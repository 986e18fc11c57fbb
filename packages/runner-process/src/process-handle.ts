// What a process-runner handle holds, and its validation. Handles are JSON: they come back from
// a database, maybe edited, so every field the runner puts into a command is checked first.

import {
  CrystalMathError,
  isValidJobKey,
  type JsonValue,
  type RunnerHandle,
} from '@crystalmath/core';

/** The `data` of a process-runner handle. JSON only; enough to re-attach after a restart. */
export interface ProcessHandleData {
  /** The job directory on the target (`<root>/<jobKey>`, as the runner's root was given). */
  readonly jobDir: string;
  readonly name: string;
  /** Epoch ms of the submission. */
  readonly submittedAt: number;
  /** The spec's output globs, for `collect`. */
  readonly outputs?: readonly string[];
  /** The supervising wrapper's PID and `/proc/<pid>/stat` start time (clock ticks since boot). */
  readonly wrapperPid?: number;
  readonly wrapperStartTime?: number;
  /** The job's leader PID; it leads its own session, so it is also the process-group id. */
  readonly pid?: number;
  readonly pgid?: number;
  /** Start time of the job's leader in clock ticks since boot: a reused PID has another one. */
  readonly startTime?: number;
  /** `/proc/sys/kernel/random/boot_id` when the job started: after a reboot no PID is ours. */
  readonly bootId?: string;
  /** Epoch ms when the wrapper started. */
  readonly startedAt?: number;
}

/** A validated handle, ready for the runner's scripts. */
export interface ParsedHandle {
  readonly jobKey: string;
  readonly jobDir: string;
  readonly data: ProcessHandleData;
}

const BOOT_ID = /^[0-9a-fA-F-]{1,64}$/;

function bad(field: string, why: string): CrystalMathError {
  return new CrystalMathError('E_RUNNER_HANDLE', `[runner-process] ${field}: ${why}`, {
    details: { field },
  });
}

function optionalInt(d: Record<string, unknown>, name: string, field: string): number | undefined {
  const v = d[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw bad(`${field}.data.${name}`, 'must be a non-negative integer');
  }
  return v;
}

/**
 * Checks a handle against the runner that reads it: the kind, the key, a job directory that is
 * exactly `<root>/<jobKey>` (so no handle can point a command elsewhere), numeric identities.
 */
export function parseProcessHandle(
  handle: RunnerHandle,
  kind: string,
  jobDirOf: (key: string) => string,
  field = 'handle',
): ParsedHandle {
  if (typeof handle !== 'object' || handle === null || handle.kind !== kind) {
    throw bad(field, `is not a ${kind} handle`);
  }
  if (!isValidJobKey(handle.jobKey)) throw bad(`${field}.jobKey`, 'is not a valid job key');
  const d = handle.data as Record<string, unknown> | undefined;
  if (typeof d !== 'object' || d === null) throw bad(`${field}.data`, 'must be an object');
  const jobDir = jobDirOf(handle.jobKey);
  if (d.jobDir !== jobDir) throw bad(`${field}.data.jobDir`, `must be ${jobDir} for this runner`);
  const bootId = d.bootId;
  if (bootId !== undefined && (typeof bootId !== 'string' || !BOOT_ID.test(bootId))) {
    throw bad(`${field}.data.bootId`, 'must be a boot id');
  }
  const outputs = d.outputs;
  if (
    outputs !== undefined &&
    (!Array.isArray(outputs) || outputs.some((o) => typeof o !== 'string'))
  ) {
    throw bad(`${field}.data.outputs`, 'must be an array of strings');
  }
  const ints: Record<string, number | undefined> = {};
  for (const name of [
    'wrapperPid',
    'wrapperStartTime',
    'pid',
    'pgid',
    'startTime',
    'startedAt',
    'submittedAt',
  ]) {
    ints[name] = optionalInt(d, name, field);
  }
  const data: { -readonly [K in keyof ProcessHandleData]: ProcessHandleData[K] } = {
    jobDir,
    name: typeof d.name === 'string' ? d.name : handle.jobKey,
    submittedAt: ints.submittedAt ?? 0,
  };
  for (const [name, value] of Object.entries(ints)) {
    if (value !== undefined && name !== 'submittedAt') {
      (data as Record<string, JsonValue>)[name] = value;
    }
  }
  if (typeof bootId === 'string') data.bootId = bootId;
  if (outputs !== undefined) data.outputs = outputs as string[];
  return { jobKey: handle.jobKey, jobDir, data };
}

/** The handle's `data` as JSON values (drops undefined fields). */
export function handleData(data: ProcessHandleData): { readonly [key: string]: JsonValue } {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(data)) {
    if (v !== undefined) out[k] = v as JsonValue;
  }
  return out;
}
