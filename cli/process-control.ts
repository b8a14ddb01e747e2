// The real processes of this machine, in a module of its own so that a light command (status)
// gets them without loading the composition root (cloud client, agent, logger, YAML, zod).
import { createProcessControl } from '../adapters/processes.ts';

/**
 * One instance per process, so that the heartbeat and the supervisors share its recent listings.
 */
export const nodeProcesses = createProcessControl();
