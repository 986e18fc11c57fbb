// A submission's files (inputs, job script, metadata) packed into one POSIX ustar stream, so
// they reach the cluster as the stdin of the same command that runs sbatch: one round trip for
// staging and submitting, whatever the number of files. `tar` is on every cluster; nothing here
// needs more than the ustar format of POSIX.1-1988 (regular files, names split into a prefix
// and a name, modes, sizes).

import { ValidationError } from '@crystalmath/core';

/** One regular file of the archive: a path relative to the job directory, its bytes and mode. */
export interface ArchiveFile {
  readonly path: string;
  readonly data: Uint8Array;
  readonly mode: number;
  /** Named in errors (`spec.inputs[2].to`). */
  readonly field: string;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  // width - 1 digits and a NUL, as ustar wants.
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** ustar keeps 100 bytes of name and 155 of prefix, split at a '/'. */
function splitName(path: string, field: string): { name: string; prefix: string } {
  const bytes = Buffer.byteLength(path);
  if (bytes <= 100) return { name: path, prefix: '' };
  for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) {
    const prefix = path.slice(0, at);
    const name = path.slice(at + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== '') {
      return { name, prefix };
    }
  }
  throw new ValidationError(
    field,
    `the path ${JSON.stringify(path)} is too long to stage in one stream (ustar: at most 100 bytes after the last '/' and 255 in all)`,
  );
}

function header(file: ArchiveFile): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  const { name, prefix } = splitName(file.path, file.field);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(file.mode & 0o7777, 8), 100, 8, 'latin1');
  h.write(octal(0, 8), 108, 8, 'latin1'); // uid
  h.write(octal(0, 8), 116, 8, 'latin1'); // gid
  h.write(octal(file.data.byteLength, 12), 124, 12, 'latin1');
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136, 12, 'latin1');
  h.write('        ', 148, 8, 'latin1'); // checksum: spaces while it is computed
  h.write('0', 156, 1, 'latin1'); // regular file
  h.write('ustar\x0000', 257, 8, 'latin1');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

/**
 * The ustar archive of `files`, ending with the two zero blocks. Throws `E_VALIDATION` naming the
 * file's field when its path cannot be written in ustar, or a file is 8 GiB or more.
 */
export function ustarArchive(files: readonly ArchiveFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    if (file.data.byteLength >= 8 * 1024 ** 3) {
      throw new ValidationError(file.field, 'is 8 GiB or more: too large to stage in one stream');
    }
    parts.push(header(file));
    parts.push(Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength));
    const pad = (BLOCK - (file.data.byteLength % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(2 * BLOCK, 0));
  return Buffer.concat(parts);
}
