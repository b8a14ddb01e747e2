// Streams the statecharts to the Stately inspector (`--inspect ws://host:port`, developers
// only). Secrets in contexts and events are masked. The WebSocket adapter retries a missing
// listener every 5 s even after stop(), so the command that used it ends the process itself
// (see `releaseProcess`): an inspector must never keep boxkeeper alive.
import { createWebSocketInspector } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import { maskSecrets } from './secrets.ts';

export { maskSecrets };

export interface InspectorLink {
  inspect: (event: InspectionEvent) => void;
  close: () => void;
}

export function connectInspector(url: string): InspectorLink {
  if (!/^wss?:\/\//.test(url))
    throw new Error(`--inspect needs a ws:// or wss:// URL, got "${url}"`);
  const inspector = createWebSocketInspector({
    url,
    serialize: (event) => maskSecrets(JSON.parse(JSON.stringify(event))) as typeof event,
  });
  return {
    inspect: (event) => inspector.inspect.next?.(event),
    close: () => inspector.stop(),
  };
}

/** Ends the process shortly after the command returned, whatever the inspector left running. */
export function releaseProcess(): void {
  setTimeout(() => process.exit(), 200).unref();
}
