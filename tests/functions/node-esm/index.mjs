// Node.js ES module test function: `index.handler` resolves to index.mjs.
import { platform } from 'node:os';

const loadedAt = Date.now();

export const handler = async (event, context) => {
  return {
    style: 'esm',
    event,
    requestId: context.awsRequestId,
    moduleUrl: import.meta.url,
    platform: platform(),
    loadedAt,
  };
};
