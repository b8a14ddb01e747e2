// Checks of a persisted update state beyond its shape: an install past its backup step must
// have that backup, or nothing could undo what it changed and finishing it would report an
// install that may never have happened. Such a state is not resumed (update-store sets the
// file aside and reconciles from the box) and says that the box needs attention (the words
// the update machine looks for to keep it in lastResult).
import { ATTENTION, statePath, tagsOfValue } from '../../machines/update.machine.ts';

interface InstallContext {
  job?: unknown;
  backup?: unknown;
  versions?: unknown;
  startup?: { imported?: unknown } | null;
}

export function installProblems(value: unknown, context: InstallContext): string[] {
  const tags = tagsOfValue(value);
  if (!tags.has('installStep') || context.job !== 'install') return [];
  const step = statePath(value);
  const problems: string[] = [];
  if (Array.isArray(context.versions) && context.versions.length === 0)
    problems.push(`${step} with no version to install: there is nothing to finish; ${ATTENTION}`);
  // The switch-over from the Python tool finishes its install without a backup, by design
  // (docs/lifecycle.md §3.4).
  const switchOver = context.startup?.imported === 'SELF_UPDATE_COMPLETE';
  if (tags.has('afterBackup') && context.backup === null && !switchOver)
    problems.push(
      `${step} without the pre-update backup it must have taken: what the install changed cannot be undone and it is not finished; ${ATTENTION}`,
    );
  return problems;
}
