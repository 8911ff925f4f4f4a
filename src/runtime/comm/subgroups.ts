/**
 * Sub-communicators: the groups of ranks a program's collectives run over that are smaller
 * than the whole run (each replica of a data × tensor hybrid all-reduces inside its own
 * tensor group). Each such group gets a communication group of its own, so its collectives
 * never wait on, or mix data with, ranks outside it; a rank's index in its sub-group is its
 * position in the group's rank list.
 */
import type { Program } from '../../profiler/program';

/** A group of ranks as a map key (the order as the program lists it). */
export function groupKey(group: readonly number[]): string {
  return group.join(',');
}

/**
 * The distinct proper sub-groups of the world that the program's collectives run over
 * (groups of one rank communicate nothing and are left out), each with the names of the
 * buffers its collectives work on.
 */
export function collectiveSubgroups(program: Program): { group: number[]; buffers: string[] }[] {
  const world = program.devices.length;
  const found = new Map<string, { group: number[]; buffers: Set<string> }>();
  for (const d of program.devices) {
    for (const ins of d.instructions) {
      if (ins.op !== 'collective' && ins.op !== 'collective-start') continue;
      if (ins.group.length < 2 || ins.group.length >= world) continue;
      const key = groupKey(ins.group);
      const g = found.get(key) ?? { group: [...ins.group], buffers: new Set<string>() };
      g.buffers.add(ins.buffer);
      found.set(key, g);
    }
  }
  return [...found.values()].map((g) => ({ group: g.group, buffers: [...g.buffers] }));
}
