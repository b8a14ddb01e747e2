// The box's Java application, as seen from outside: its local task API and its HTTP port.
import { connect } from 'node:net';
import { exchange } from './http-request.ts';
import { z } from 'zod';
import { BoxAppError, errorMessage } from './errors.ts';
import type { TaskNo } from './cloud-client.ts';

export interface BoxAppApi {
  listUnfinishedTasks(): Promise<TaskNo[]>;
  listPausedTasks(): Promise<TaskNo[]>;
  /** True once the app accepts HTTP on its port and answers anything. */
  isReady(): Promise<boolean>;
}

const taskList = z.object({
  code: z.number(),
  msg: z.string().nullish(),
  content: z.array(z.union([z.string(), z.number()])).nullish(),
});

/** The app's task lists are short; anything bigger is not the app answering. */
const ANSWER_CAP = 16 * 1024 * 1024;

export function createBoxAppClient(port: number, timeoutMs = 10_000): BoxAppApi {
  const base = `http://127.0.0.1:${port}`;

  async function list(path: string): Promise<TaskNo[]> {
    let res;
    try {
      const answer = await exchange({
        method: 'GET',
        url: `${base}${path}`,
        timeoutMs,
        maxBytes: ANSWER_CAP,
      });
      res = { statusCode: answer.statusCode, body: answer.body.toString('utf8') };
    } catch (err) {
      throw new BoxAppError(path, errorMessage(err), { cause: err });
    }
    if (res.statusCode !== 200) {
      throw new BoxAppError(path, `HTTP ${res.statusCode}`, { status: res.statusCode });
    }
    let body: unknown;
    try {
      body = JSON.parse(res.body);
    } catch {
      throw new BoxAppError(path, `expected JSON, got "${res.body.slice(0, 80)}"`, { status: 200 });
    }
    const parsed = taskList.safeParse(body);
    if (!parsed.success) {
      throw new BoxAppError(
        path,
        `unexpected answer: ${parsed.error.issues.map((i) => i.message).join('; ')}`,
      );
    }
    if (parsed.data.code !== 1)
      throw new BoxAppError(path, `code ${parsed.data.code}: ${parsed.data.msg ?? ''}`);
    return parsed.data.content ?? [];
  }

  return {
    listUnfinishedTasks: () => list('/task/listUnFinishTaskNos'),
    listPausedTasks: () => list('/task/listPauseTaskNos'),
    async isReady() {
      // A TCP accept alone can be the OS backlog of a half-started app: require an HTTP answer.
      const open = await new Promise<boolean>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, timeout: 2000 });
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
        socket.once('timeout', () => {
          socket.destroy();
          resolve(false);
        });
      });
      if (!open) return false;
      try {
        await exchange({ method: 'GET', url: `${base}/`, timeoutMs: 3000, maxBytes: ANSWER_CAP });
        return true;
      } catch {
        return false;
      }
    },
  };
}
