// Connection scenarios. cfg.mode selects one:
//   token   - connect with cfg.token, call an RPC (no handler on the server), disconnect.
//   invalid - connect with an invalid cfg.token: the server closes with 3500, the client
//             must not reconnect (the sockets it created are counted after cfg.settle_ms).
//   expired - connect with an expired cfg.token: error 109, getToken gives cfg.fresh_token.
//   refresh - cfg.token expires soon: getToken gives cfg.fresh_token, the connection stays
//             up past cfg.hold_until_ms (epoch ms) and still receives a publication.
import {
  api, codec, emit, gatedWebSocket, loadCentrifuge, nextEvent, outcome, publication, run, sleep, until,
} from './lib.mjs';

run(async (cfg) => {
  const Centrifuge = await loadCentrifuge(cfg.protobuf);
  const { encode, decode } = codec(cfg.protobuf);
  const gate = gatedWebSocket();
  let tokenCalls = 0;
  const options = {
    websocket: gate.WebSocket,
    token: cfg.token,
    minReconnectDelay: 50,
    maxReconnectDelay: 200,
    timeout: 5000,
  };
  if (cfg.fresh_token) {
    options.getToken = async () => {
      tokenCalls += 1;
      emit('get_token', { calls: tokenCalls });
      return cfg.fresh_token;
    };
  }
  const client = new Centrifuge(cfg.url, options);
  const transitions = [];
  client.on('connecting', (ctx) => {
    transitions.push('connecting');
    emit('connecting', { code: ctx.code, reason: ctx.reason });
  });
  client.on('connected', (ctx) => {
    transitions.push('connected');
    emit('connected', { client: ctx.client, transport: ctx.transport });
  });
  client.on('disconnected', (ctx) => {
    transitions.push('disconnected');
    emit('disconnected', { code: ctx.code, reason: ctx.reason });
  });
  client.on('error', (ctx) => {
    emit('error', { type: ctx.type, code: ctx.error.code, message: ctx.error.message });
  });

  if (cfg.mode === 'token') {
    const connected = nextEvent(client, 'connected');
    client.connect();
    await connected;
    const rpc = await outcome(client.rpc('no_such_method', encode({ x: 1 })));
    emit('rpc', rpc);
    const disconnected = nextEvent(client, 'disconnected');
    client.disconnect();
    await disconnected;
  } else if (cfg.mode === 'invalid') {
    const disconnected = nextEvent(client, 'disconnected');
    client.connect();
    await disconnected;
    // A client that reconnects would do so within maxReconnectDelay.
    await sleep(cfg.settle_ms || 1000);
    emit('settled', { sockets: gate.created, state: client.state, transitions });
  } else if (cfg.mode === 'expired') {
    const connected = nextEvent(client, 'connected');
    client.connect();
    await connected;
    emit('settled', { token_calls: tokenCalls, state: client.state });
    client.disconnect();
  } else if (cfg.mode === 'refresh') {
    const connected = nextEvent(client, 'connected');
    client.connect();
    await connected;
    const sub = client.newSubscription(cfg.channel);
    const pubs = [];
    sub.on('publication', (ctx) => {
      pubs.push(publication(ctx, decode));
    });
    sub.subscribe();
    await sub.ready(5000);
    await until(() => tokenCalls > 0, 'the SDK to refresh the connection token', 15000);
    while (Date.now() < cfg.hold_until_ms) {
      await sleep(50);
    }
    await api(cfg, 'publish', { channel: cfg.channel, data: { after: 'refresh' } });
    await until(() => pubs.length > 0, 'a publication after the refresh');
    emit('settled', {
      token_calls: tokenCalls, state: client.state, sockets: gate.created, transitions, pubs,
    });
    client.disconnect();
  } else {
    throw new Error(`unknown mode ${cfg.mode}`);
  }
}, 40000);
