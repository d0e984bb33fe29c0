// Serval's Node.js runtime: runs a Lambda handler against the Runtime API 2018-06-01.
//
// Started by Serval as `node bootstrap.cjs` with a clean environment (see the crate docs).
// Speaks HTTP/1.1 by hand over one keep-alive TCP socket (`net`, not `http`: cheaper to load,
// and it lets us pipeline): after each result the POST .../response and the next GET .../next
// go out in one write, saving a round trip per invocation.
'use strict';

const net = require('net');
const fs = require('fs');
const path = require('path');
const util = require('util');

const env = process.env;
const API_PREFIX = '/2018-06-01/runtime/';
const REQUEST_ID_SYMBOL = Symbol.for('aws.lambda.runtime.requestId');

function die(message) {
  try {
    fs.writeSync(2, `serval-runtime: ${message}\n`);
  } catch (_) {
    /* nothing left to tell */
  }
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// console, as AWS's runtime patches it: `<iso time>\t<request id>\t<LEVEL>\t<message>`
// ---------------------------------------------------------------------------------------------

function patchConsole() {
  const levels = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
  const min = levels[(env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || 1;
  const nop = () => {};
  const make = (name) => {
    if (levels[name] < min) return nop;
    return (...args) => {
      const line = `${new Date().toISOString()}\t${global[REQUEST_ID_SYMBOL]}\t${name}\t${util.format(...args)}`;
      writeOut(line.replace(/\n/g, '\r') + '\n');
    };
  };
  console.trace = make('TRACE');
  console.debug = make('DEBUG');
  console.info = make('INFO');
  console.log = console.info;
  console.warn = make('WARN');
  console.error = make('ERROR');
  console.fatal = make('FATAL');
}

// One synchronous write per call, so lines never interleave and always precede the result.
function writeOut(text) {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off);
    } catch (e) {
      if (e.code !== 'EAGAIN') return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the Runtime API client
// ---------------------------------------------------------------------------------------------

class Client {
  constructor(address) {
    const i = address.lastIndexOf(':');
    const port = Number(address.slice(i + 1));
    if (i <= 0 || !Number.isInteger(port) || port <= 0) die(`AWS_LAMBDA_RUNTIME_API is not host:port: ${address}`);
    this.host = address.slice(0, i).replace(/^\[|\]$/g, '');
    this.port = port;
    this.hostHeader = `Host: ${address}\r\n`;
    this.waiters = []; // resolve functions, one per expected response, in order
    this.connect();
  }

  connect() {
    if (this.sock) this.sock.destroy();
    this.buf = null; // pending bytes of the current head, or null
    this.body = null; // body under construction
    this.waiters = [];
    const sock = net.connect({ host: this.host, port: this.port, noDelay: true });
    sock.on('data', (chunk) => this.onData(chunk));
    sock.on('error', (e) => die(`lost the Runtime API connection (${this.host}:${this.port}): ${e.message}`));
    sock.on('close', () => {
      if (this.sock === sock && this.waiters.length > 0) {
        die('Runtime API closed the connection with requests outstanding');
      }
    });
    this.sock = sock;
  }

  onData(chunk) {
    let data = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    this.buf = null;
    while (data.length > 0) {
      if (this.body) {
        const b = this.body;
        const n = Math.min(b.length - b.filled, data.length);
        data.copy(b.bytes, b.filled, 0, n);
        b.filled += n;
        data = data.subarray(n);
        if (b.filled === b.length) {
          this.body = null;
          this.deliver(b.response, b.bytes);
        }
        continue;
      }
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) {
        if (data.length > 65536) die('malformed Runtime API response: header section too large');
        this.buf = data;
        return;
      }
      const lines = data.toString('latin1', 0, end).split('\r\n');
      const m = /^HTTP\/1\.\d (\d{3})/.exec(lines[0]);
      if (!m) die(`malformed Runtime API response status line: ${JSON.stringify(lines[0].slice(0, 200))}`);
      const headers = {};
      for (let k = 1; k < lines.length; k++) {
        const c = lines[k].indexOf(':');
        if (c <= 0) die(`malformed Runtime API response header: ${JSON.stringify(lines[k].slice(0, 200))}`);
        headers[lines[k].slice(0, c).trim().toLowerCase()] = lines[k].slice(c + 1).trim();
      }
      const cl = headers['content-length'];
      if (cl === undefined && /chunked/i.test(headers['transfer-encoding'] || '')) {
        die('Runtime API sent a chunked response; only Content-Length is supported');
      }
      const length = cl === undefined ? 0 : Number(cl);
      if (!Number.isInteger(length) || length < 0) die(`malformed Runtime API Content-Length: ${cl}`);
      const response = { status: Number(m[1]), headers };
      data = data.subarray(end + 4);
      if (data.length >= length) {
        const body = data.subarray(0, length);
        data = data.subarray(length);
        this.deliver(response, body);
      } else {
        this.body = { response, bytes: Buffer.allocUnsafe(length), filled: 0, length };
      }
    }
  }

  deliver(response, body) {
    response.body = body;
    const w = this.waiters.shift();
    if (!w) die(`unexpected response from the Runtime API (status ${response.status})`);
    if ((response.headers.connection || '').toLowerCase() === 'close' && this.waiters.length === 0) {
      const sock = this.sock;
      this.sock = null;
      sock.destroy();
    }
    w(response);
  }

  request(method, p, body, extraHeaders) {
    if (body === undefined) return Buffer.from(`${method} ${API_PREFIX}${p} HTTP/1.1\r\n${this.hostHeader}${extraHeaders || ''}\r\n`, 'latin1');
    const head = `${method} ${API_PREFIX}${p} HTTP/1.1\r\n${this.hostHeader}${extraHeaders || ''}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  }

  // Sends the requests (already built) in one write; resolves with their responses, in order.
  send(requests) {
    if (!this.sock) this.connect();
    const promises = requests.map(() => new Promise((resolve) => this.waiters.push(resolve)));
    this.sock.write(requests.length === 1 ? requests[0] : Buffer.concat(requests));
    return promises;
  }

  async next(pending) {
    const reqs = pending ? [pending, this.request('GET', 'invocation/next')] : [this.request('GET', 'invocation/next')];
    const ps = this.send(reqs);
    if (pending) reportRejection(await ps[0]);
    const r = await ps[ps.length - 1];
    if (r.status !== 200) die(`Runtime API answered GET invocation/next with ${r.status}: ${r.body.toString('utf8', 0, 500)}`);
    return r;
  }

  async post(req) {
    const r = await this.send([req])[0];
    reportRejection(r);
    return r;
  }
}

function reportRejection(r) {
  if (r.status >= 300) {
    try {
      fs.writeSync(2, `serval-runtime: Runtime API rejected a report (${r.status}): ${r.body.toString('utf8', 0, 500)}\n`);
    } catch (_) {
      /* ignore */
    }
  }
}

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

function runtimeError(type, message) {
  const e = new Error(message);
  e.name = `Runtime.${type}`;
  return e;
}

function toErrorBody(error) {
  try {
    if (util.types.isNativeError(error) || (error && typeof error.name === 'string' && typeof error.message === 'string' && typeof error.stack === 'string')) {
      return { errorType: error.name, errorMessage: error.message, trace: String(error.stack).split('\n') };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_) {
    return { errorType: 'handled', errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack' };
  }
}

function errorRequest(client, p, error) {
  const body = toErrorBody(error);
  const type = String(body.errorType).replace(/[\r\n]/g, '');
  logError('Invoke Error', body);
  return client.request('POST', p, Buffer.from(JSON.stringify(body), 'utf8'), `Lambda-Runtime-Function-Error-Type: ${type}\r\n`);
}

function logError(what, body) {
  console.error(`${what} \t${JSON.stringify(body)}`);
}

// ---------------------------------------------------------------------------------------------
// loading the handler
// ---------------------------------------------------------------------------------------------

function isModulePackage(dir, root) {
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(d, 'package.json'), 'utf8'));
      return pkg && pkg.type === 'module';
    } catch (e) {
      if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') return false;
    }
    if (d === root || path.dirname(d) === d) return false;
  }
}

async function loadModule(root, moduleName) {
  const base = path.resolve(root, moduleName);
  const { pathToFileURL } = require('url');
  for (const ext of ['.js', '.mjs', '.cjs']) {
    const file = base + ext;
    if (!fs.existsSync(file)) continue;
    if (ext === '.mjs' || (ext === '.js' && isModulePackage(path.dirname(file), root))) {
      return import(pathToFileURL(file).href);
    }
    try {
      return require(file);
    } catch (e) {
      if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(file).href);
      throw e;
    }
  }
  // A directory with an index file or a package in node_modules, as `require` finds them.
  const { createRequire } = require('module');
  const req = createRequire(path.join(root, 'noop.js'));
  let resolved;
  try {
    resolved = req.resolve(moduleName.includes('/') ? base : moduleName, { paths: [root] });
  } catch (e) {
    const err = runtimeError('ImportModuleError', `Error: Cannot find module '${moduleName}'\nRequire stack:\n- ${__filename}`);
    throw err;
  }
  if (resolved.endsWith('.mjs')) return import(pathToFileURL(resolved).href);
  return req(resolved);
}

async function loadHandler(root, handlerString) {
  const slash = handlerString.lastIndexOf('/') + 1;
  const dot = handlerString.indexOf('.', slash);
  if (dot < 0) throw runtimeError('MalformedHandlerName', `Bad handler ${handlerString}`);
  const moduleName = handlerString.slice(0, dot);
  const fnPath = handlerString.slice(dot + 1);
  if (!moduleName || !fnPath || fnPath.split('.').some((s) => !s) || moduleName.split('/').some((s) => s === '..')) {
    throw runtimeError('MalformedHandlerName', `Bad handler ${handlerString}`);
  }
  let mod;
  try {
    mod = await loadModule(root, moduleName);
  } catch (e) {
    if (e && typeof e.name === 'string' && e.name.startsWith('Runtime.')) throw e;
    if (e instanceof SyntaxError) {
      const err = runtimeError('UserCodeSyntaxError', `${e.name}: ${e.message}`);
      err.stack = e.stack;
      throw err;
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      const err = runtimeError('ImportModuleError', `${e.name || 'Error'}: ${e.message}`);
      throw err;
    }
    throw e;
  }
  let fn = mod;
  for (const part of fnPath.split('.')) {
    fn = fn == null ? undefined : fn[part];
  }
  if (fn === undefined && mod && mod.default && typeof mod.default === 'object') {
    // an ES module importing CommonJS exposes it as `default`
    fn = mod.default;
    for (const part of fnPath.split('.')) fn = fn == null ? undefined : fn[part];
  }
  if (fn === undefined || fn === null) {
    throw runtimeError('HandlerNotFound', `${path.basename(moduleName)}.${fnPath} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw runtimeError('HandlerNotFound', `${path.basename(moduleName)}.${fnPath} is not a function`);
  }
  return fn;
}

// ---------------------------------------------------------------------------------------------
// invoking
// ---------------------------------------------------------------------------------------------

const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION;
const MEMORY = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;

function parseHeaderJson(value, what) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch (e) {
    throw runtimeError('LambdaContextUnmarshalError', `Unable to parse ${what} JSON: ${e.message}`);
  }
}

function makeContext(requestId, headers, state) {
  const deadlineHeader = Number(headers['lambda-runtime-deadline-ms']);
  const deadline = Number.isFinite(deadlineHeader) && deadlineHeader > 0 ? deadlineHeader : Date.now() + 3000;
  const ctx = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: FUNCTION_NAME,
    functionVersion: FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: MEMORY,
    awsRequestId: requestId,
    logGroupName: LOG_GROUP,
    logStreamName: LOG_STREAM,
    clientContext: parseHeaderJson(headers['lambda-runtime-client-context'], 'Client Context'),
    identity: parseHeaderJson(headers['lambda-runtime-cognito-identity'], 'Cognito Identity'),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    // legacy completion methods of the 0.10 era, still used by old code
    succeed: (result) => state.finish(null, result),
    fail: (err) => state.finish(err == null ? 'handled' : err),
    done: (err, result) => state.finish(err, result),
  };
  return ctx;
}

// Runs the handler; resolves with {error} or {result} (never rejects).
function invoke(handler, event, ctx, state) {
  return new Promise((resolve) => {
    let settled = false;
    state.finish = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) resolve({ error: err });
      else resolve({ result });
    };
    const callback = (err, result) => {
      if (settled) return;
      if (ctx.callbackWaitsForEmptyEventLoop) {
        // As AWS: answer once the event loop has nothing left to do (our socket does not count).
        state.client.sock.unref();
        process.once('beforeExit', () => {
          state.client.sock.ref();
          state.finish(err, result);
        });
      } else {
        state.finish(err, result);
      }
    };
    let ret;
    try {
      ret = handler(event, ctx, callback);
    } catch (e) {
      state.finish(e);
      return;
    }
    if (ret && typeof ret.then === 'function') {
      ret.then(
        (v) => state.finish(null, v),
        (e) => state.finish(e == null ? new Error(String(e)) : e),
      );
    } else if (handler.length < 3) {
      state.finish(null, ret);
    }
    // else: a callback handler; wait for the callback
  });
}

async function main() {
  const address = env.AWS_LAMBDA_RUNTIME_API;
  if (!address) die('AWS_LAMBDA_RUNTIME_API is not set');
  patchConsole();
  const client = new Client(address);
  const state = { client, finish: null, requestId: null };

  // An exception nobody caught, or a rejection nobody handled: report it, then exit.
  let fatal = false;
  const onFatal = (error, code) => {
    if (fatal) return;
    fatal = true;
    const rid = state.requestId;
    const req = rid ? errorRequest(client, `invocation/${rid}/error`, error) : errorRequest(client, 'init/error', error);
    client.post(req).then(() => process.exit(code));
  };
  process.on('uncaughtException', (error) => onFatal(error, 129));
  process.on('unhandledRejection', (reason, promise) => {
    const msg = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
    const err = runtimeError('UnhandledPromiseRejection', msg);
    err.reason = reason;
    err.promise = promise;
    if (reason instanceof Error && reason.stack) err.stack = `Runtime.UnhandledPromiseRejection: ${msg}\n${reason.stack.split('\n').slice(1).join('\n')}`;
    onFatal(err, 128);
  });

  let handler;
  try {
    handler = await loadHandler(env.LAMBDA_TASK_ROOT || process.cwd(), env._HANDLER || '');
  } catch (e) {
    await client.post(errorRequest(client, 'init/error', e));
    process.exit(1);
  }

  let pending;
  for (;;) {
    const r = await client.next(pending);
    pending = undefined;
    const headers = r.headers;
    const requestId = headers['lambda-runtime-aws-request-id'];
    if (!requestId) die('Runtime API sent an invocation without Lambda-Runtime-Aws-Request-Id');
    state.requestId = requestId;
    global[REQUEST_ID_SYMBOL] = requestId;
    const trace = headers['lambda-runtime-trace-id'];
    if (trace) env._X_AMZN_TRACE_ID = trace;
    else delete env._X_AMZN_TRACE_ID;

    let outcome;
    try {
      const ctx = makeContext(requestId, headers, state);
      let event;
      try {
        event = JSON.parse(r.body.length ? r.body.toString('utf8') : 'null');
      } catch (e) {
        throw runtimeError('UnmarshalError', `Unable to unmarshal input: ${e.message}`);
      }
      outcome = await invoke(handler, event, ctx, state);
    } catch (e) {
      outcome = { error: e };
    }
    state.finish = null;
    if (fatal) return;
    if (outcome.error === undefined) {
      let body;
      try {
        const json = JSON.stringify(outcome.result);
        body = Buffer.from(json === undefined ? 'null' : json, 'utf8');
      } catch (e) {
        pending = errorRequest(client, `invocation/${requestId}/error`, runtimeError('MarshalError', `Unable to stringify response body: ${e.message}`));
        continue;
      }
      pending = client.request('POST', `invocation/${requestId}/response`, body);
    } else {
      pending = errorRequest(client, `invocation/${requestId}/error`, outcome.error);
    }
  }
}

main().catch((e) => die(`runtime failed: ${e && e.stack ? e.stack : e}`));
