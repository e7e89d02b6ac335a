// Shared helpers for the centrifuge-js conformance scenarios.
//
// A scenario reads its configuration (server URLs, tokens, channel names) as JSON from
// the SCENARIO environment variable, or from the first command line argument, runs
// against the server and prints one JSON object per line on stdout: {"event": ...}.
// The last line is {"event": "done"} on success, {"event": "failed", ...} on an
// exception and {"event": "timeout"} when the scenario deadline passed.
import WebSocket from 'ws';

export function config() {
  const raw = process.env.SCENARIO || process.argv[2];
  if (!raw) {
    throw new Error('scenario configuration missing: set SCENARIO or pass JSON as argv[2]');
  }
  return JSON.parse(raw);
}

export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

export async function loadCentrifuge(protobuf) {
  const mod = protobuf ? await import('centrifuge/build/protobuf') : await import('centrifuge');
  return mod.Centrifuge;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

// Payload codec: JSON values with the JSON protocol, JSON text in bytes with Protobuf.
export function codec(protobuf) {
  return {
    encode(value) {
      return protobuf ? textEncoder.encode(JSON.stringify(value)) : value;
    },
    decode(data) {
      if (data === undefined || data === null) {
        return null;
      }
      if (protobuf) {
        // Protobuf has no "absent" bytes: empty means none.
        return data.length === 0 ? null : JSON.parse(textDecoder.decode(data));
      }
      return data;
    },
  };
}

// A WebSocket class for the `websocket` option whose connections can be cut: while the
// gate is closed every new socket goes to a port nobody listens on, so the client keeps
// failing to reconnect until the gate opens again. It counts the sockets created.
export function gatedWebSocket() {
  const gate = { open: true, created: 0, sockets: new Set() };
  class GatedWebSocket extends WebSocket {
    constructor(url, protocols) {
      gate.created += 1;
      super(gate.open ? url : 'ws://127.0.0.1:1/', protocols);
      gate.sockets.add(this);
    }
  }
  gate.WebSocket = GatedWebSocket;
  return gate;
}

// Resolves with the first event `name` of `target` whose context satisfies `pred`.
export function nextEvent(target, name, pred = () => true, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.off(name, listener);
      reject(new Error(`no ${name} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (ctx) => {
      if (pred(ctx)) {
        clearTimeout(timer);
        target.off(name, listener);
        resolve(ctx);
      }
    };
    target.on(name, listener);
  });
}

// Polls `cond` until it is true or the deadline passes.
export async function until(cond, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(20);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Calls the server HTTP API: POST {api_url}/{method} with the API key.
export async function api(cfg, method, params) {
  const resp = await fetch(`${cfg.api_url}/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': cfg.api_key, 'Content-Type': 'application/json' },
    body: JSON.stringify(params),
  });
  if (resp.status !== 200) {
    throw new Error(`api ${method}: HTTP ${resp.status}`);
  }
  const body = await resp.json();
  if (body.error) {
    throw new Error(`api ${method}: error ${body.error.code} ${body.error.message}`);
  }
  return body.result;
}

// Turns a promise into {ok, value} or {ok: false, code, message} for printing.
export async function outcome(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (e) {
    return { ok: false, code: e && e.code, message: e && e.message };
  }
}

export function clientInfo(info, dec) {
  if (!info) {
    return null;
  }
  return {
    client: info.client,
    user: info.user,
    connInfo: info.connInfo === undefined ? null : dec(info.connInfo),
    chanInfo: info.chanInfo === undefined ? null : dec(info.chanInfo),
  };
}

export function publication(ctx, dec) {
  return {
    channel: ctx.channel,
    data: dec(ctx.data),
    offset: ctx.offset === undefined ? null : Number(ctx.offset),
    tags: ctx.tags && Object.keys(ctx.tags).length > 0 ? ctx.tags : null,
    info: clientInfo(ctx.info, dec),
  };
}

// Runs the scenario: prints "done", "failed" or "timeout" last, and exits.
export function run(main, timeoutMs = 30000) {
  const timer = setTimeout(() => {
    emit('timeout', { after_ms: timeoutMs });
    process.exit(2);
  }, timeoutMs);
  main(config())
    .then(() => {
      clearTimeout(timer);
      emit('done');
      process.exit(0);
    })
    .catch((e) => {
      clearTimeout(timer);
      emit('failed', { message: String(e && e.message), stack: String(e && e.stack) });
      process.exit(1);
    });
}
