/**
 * Where a model's external data may live: in the model's folder, nowhere else. A model file
 * is data from anywhere, and its `location` fields name files to read; `../../etc/passwd`,
 * an absolute path or a symbolic link out of the folder would make the loader read (or
 * report the size of) files the model has no business with (the ONNX CVE class
 * CVE-2022-25882 / CVE-2024-27318). Locations are checked by their text first, then link by
 * link inside the folder, and nothing outside the folder is ever stat-ed or read; the
 * refusals quote the location the model gave and never say what is at its target.
 */
import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { UserError } from '../../common/errors';

/** Symbolic links followed inside the folder before giving up (as the kernel's ELOOP limit). */
const MAX_LINK_HOPS = 40;

/** Path components of a location, split on both separators (models are written on Windows too). */
function components(location: string): string[] {
  return location.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
}

/**
 * Refuses, by its text alone, a location that is empty, absolute, climbs out with `..`, or
 * holds a NUL byte. `modelPath` and `tensor` name the model and tensor in the message.
 */
export function checkLocationText(location: string, modelPath: string, tensor: string): void {
  const refuse = (why: string): never => {
    throw new UserError(
      `${modelPath}: external data of tensor "${tensor}" ${why}; ONNX external data must sit in the model's folder, named by a relative path`,
    );
  };
  if (location === '') refuse('has no location');
  if (location.includes('\0')) refuse('has a location with a NUL byte');
  if (isAbsolute(location) || /^[A-Za-z]:/.test(location) || location.startsWith('\\') || location.startsWith('/')) {
    refuse(`is at an absolute path ("${location}")`);
  }
  if (components(location).includes('..')) refuse(`climbs out of the model's folder ("${location}")`);
}

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** What {@link resolveInsideFolder} found. */
export type ExternalTarget = { kind: 'file'; path: string; size: number } | { kind: 'missing' };

/**
 * Resolves `location` (already passed {@link checkLocationText}) inside `modelDir`, following
 * symbolic links one component at a time and refusing any that leads out of the folder
 * before looking at its target. The target must be a regular file.
 */
export function resolveInsideFolder(modelDir: string, location: string, modelPath: string, tensor: string): ExternalTarget {
  const refuse = (why: string): never => {
    throw new UserError(`${modelPath}: external data of tensor "${tensor}" ("${location}") ${why}; keep the data files themselves in the model's folder`);
  };
  let root: string;
  try {
    root = realpathSync(resolve(modelDir));
  } catch {
    return { kind: 'missing' };
  }
  let parts = components(location);
  let cur = root;
  let hops = 0;
  while (parts.length > 0) {
    const p = parts.shift()!;
    if (p === '..') {
      // Only a link's target can bring `..` here; it may not climb above the folder.
      if (cur === root) refuse("goes through a link out of the model's folder");
      cur = resolve(cur, '..');
      continue;
    }
    const next = join(cur, p);
    let st;
    try {
      st = lstatSync(next);
    } catch {
      return { kind: 'missing' };
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_LINK_HOPS) refuse('goes through too many links');
      const target = readlinkSync(next);
      if (isAbsolute(target)) {
        if (!inside(root, target)) refuse("is a link out of the model's folder");
        cur = root;
        parts = [...components(relative(root, target)), ...parts];
      } else {
        parts = [...components(target), ...parts];
      }
      continue;
    }
    if (parts.length > 0 && !st.isDirectory()) return { kind: 'missing' };
    cur = next;
  }
  const st = lstatSync(cur);
  if (!st.isFile()) refuse('is not a regular file (a folder, pipe or device)');
  return { kind: 'file', path: cur, size: st.size };
}
