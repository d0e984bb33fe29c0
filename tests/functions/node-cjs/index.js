// Node.js CommonJS test function for Serval's end-to-end suite.
'use strict';

const fs = require('fs');

let counter = 0;

// A process as the test can find it from the host (see `_process` in ../python/app.py): in a
// sandbox's pid namespace a bare pid says nothing, the runtime is pid 2 in every environment.
function processRecord(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
  return { pid, pid_ns: fs.readlinkSync('/proc/self/ns/pid'), start_ticks: Number(fields[19]) };
}

function describe(event, context, style) {
  counter += 1;
  return {
    style,
    event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    // AWS's runtime passes the environment's string through ('128'), not a number.
    memoryLimitInMB: context.memoryLimitInMB,
    memoryLimitType: typeof context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext || null,
    process: processRecord(process.pid),
    counter,
    userEnv: process.env.USER_GREETING || null,
  };
}

// Non-async handler that answers through the callback before returning.
exports.syncCallback = function (event, context, callback) {
  console.log('node sync handler ran');
  callback(null, describe(event, context, 'sync-callback'));
};

// Non-async handler that answers through the callback later, from a timer.
exports.callback = function (event, context, callback) {
  setTimeout(() => callback(null, describe(event, context, 'callback')), 50);
};

// async handler: the resolved value is the response.
exports.asyncHandler = async (event, context) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  console.log('node async handler ran');
  return describe(event, context, 'async');
};

// async handler that throws.
exports.throws = async (event) => {
  throw new TypeError(`node failure: ${event.why || 'no reason'}`);
};

// Callback with an error.
exports.callbackError = function (event, context, callback) {
  callback(new Error('callback failure'));
};

// The execution environment as the function sees it.
exports.envProbe = async (event, context) => {
  const keys = ['AWS_EXECUTION_ENV', 'AWS_DEFAULT_REGION', 'AWS_REGION', 'TZ', 'LAMBDA_TASK_ROOT',
    'LAMBDA_RUNTIME_DIR', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_LOG_STREAM_NAME', '_HANDLER'];
  const env = {};
  for (const k of keys) env[k] = process.env[k] === undefined ? null : process.env[k];
  return { env, logStreamName: context.logStreamName, requestId: context.awsRequestId };
};
